"""Code that several test modules share (conftest.py puts this folder's parent on sys.path): generated
CLIP weights, dataset trees and image folders, runs in fresh interpreters, plain reference computations
and a tiny trainer. Fixtures that several test modules use are in tests/conftest.py."""
