"""CLIP loading and the Mutual Prompt model: prompt text and image encoders, FTP, TVP."""
