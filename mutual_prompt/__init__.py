"""Mutual Prompt Learning for CLIP: library behind ``trainers/mutual_prompt.py``."""

__version__ = "0.1.0"
