"""Data side of the built-in engine, with ``dassl.data``'s names."""
from .data_manager import DataManager, DatasetWrapper
from .transforms import build_transform
