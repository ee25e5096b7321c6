"""The Mutual Prompt Learning method (``docs/METHOD.md``) on a frozen CLIP from ``mutual_prompt.clip``:
FTP, TVP and the model that joins them to the prompt encoders."""
from .ftp import FTP_MODES, FineGrainedTextPrompt
from .mutual_prompt_clip import MutualPromptCLIP
from .tvp import TextReorganizedVisualPrompt

__all__ = ["FTP_MODES", "FineGrainedTextPrompt", "MutualPromptCLIP", "TextReorganizedVisualPrompt"]
