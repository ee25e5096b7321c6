"""The offline toy world: a seeded shape renderer, its captions and the shipped tiny pre-trained CLIP.

``TINY_CLIP_PATH`` (shipped in ``mutual_prompt/clip/``) is the checkpoint that ``MODEL.BACKBONE.NAME toy`` loads (a flat fp16 state dict of
``clip.model.CLIP``); ``python -m mutual_prompt.toy.pretrain`` regenerates it.
"""
from ...clip.loader import TINY_CLIP_PATH
from .render import CLASSNAMES, COLOURS, CONCEPTS, NUM_CLASSES, SHAPES, ShapeScene, caption, render, render_batch

__all__ = [
    "CLASSNAMES",
    "COLOURS",
    "CONCEPTS",
    "NUM_CLASSES",
    "SHAPES",
    "ShapeScene",
    "TINY_CLIP_PATH",
    "caption",
    "render",
    "render_batch",
]
