"""Data side of the built-in runtime, with ``dassl.data``'s names."""
from .data_manager import DataManager, DatasetWrapper
from .transforms import build_transform
