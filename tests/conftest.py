"""Shared test set-up: the repository root on sys.path (``trainers``/``datasets`` are imported from
there, as in CoOp) and the built-in backend unless a test asks for Dassl explicitly."""
import os
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

os.environ.setdefault("MUTUAL_PROMPT_BACKEND", "builtin")


@pytest.fixture(scope="session")
def repo_root() -> str:
    return REPO_ROOT
