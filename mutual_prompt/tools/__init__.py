"""The tooling layer: sweeps, results and figures, the drop-in kit, checkpoint conversion, the toy world.

Everything here uses the core (``clip``, ``method``, ``data``, ``runtime``, ``run``); the core never
imports it.
"""
import os

# The checkout this package was installed from with ``pip install -e`` (holds train.py, trainers/, ...).
PACKAGE_CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
