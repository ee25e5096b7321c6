"""A frozen OpenAI CLIP for prompt learning: loading it in a training precision, and its text and image
encoders taking learned prompts, computed exactly and fast.

Nothing here knows Mutual Prompt Learning; ``mutual_prompt.method`` builds the method from it, and
another prompt-learning method can too (``docs/DEVELOPING.md`` shows one, tested in
``tests/test_clip_reuse.py``). The public names:

- loading: :func:`load_frozen_clip` (weights by name, ``open_clip:<model>[/<tag>]`` too, or path, on a device, in a ``PREC``: frozen,
  eval mode), :func:`resolve_precision` (what a ``PREC`` runs as on a device), ``PRECISIONS``,
  :func:`load_clip` (CLIP as OpenAI's ``build_model`` leaves it), :func:`available_backbones`,
  :func:`set_clip_precision` (a CLIP built some other way, put in a ``PREC``'s weight layout),
  :func:`backbone_identity` (architecture, activation and weights SHA-256, for the run fingerprint);
- running: :func:`autocast` and :func:`grad_scaler` for ``PREC amp`` (no-ops otherwise);
- encoders: :class:`PromptTextEncoder` (``[SOS, context, class name, ".", EOT]`` for every class, one
  context or one per image), :class:`PromptImageEncoder` (the ViT with shallow or deep visual prompt
  tokens), :func:`is_vision_transformer`;
- OpenAI's package under a private name (:mod:`mutual_prompt.clip.openai`, never ``import clip``):
  :func:`tokenize` and the :class:`CLIP` model class.

The modules behind them: ``openai`` (OpenAI's package), ``loader``, ``open_clip_backbone``
(``open_clip:<model>`` as OpenAI's ``CLIP`` class; open_clip imported only then), ``architecture`` (what weights
are built for, checked against the backbone name), ``weights_cache`` (a file's SHA-256 and
architecture, read once per version), ``identity``, ``jit_archive`` (weights from a TorchScript archive
without running it), ``precision``, ``text_encoder``, ``image_encoder``,
and ``prefix_attention`` (CLIP's residual blocks, batch-first, continuing a cached prefix).
"""
from .identity import backbone_identity
from .image_encoder import PromptImageEncoder, is_vision_transformer
from .loader import available_backbones, load_clip
from .openai import tokenize
from .openai.model import CLIP
from .precision import PRECISIONS, autocast, grad_scaler, load_frozen_clip, resolve_precision, set_clip_precision
from .text_encoder import PromptTextEncoder

__all__ = [
    "CLIP",
    "PRECISIONS",
    "PromptImageEncoder",
    "PromptTextEncoder",
    "autocast",
    "available_backbones",
    "backbone_identity",
    "grad_scaler",
    "is_vision_transformer",
    "load_clip",
    "load_frozen_clip",
    "resolve_precision",
    "set_clip_precision",
    "tokenize",
]
