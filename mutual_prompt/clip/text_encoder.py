"""CLIP's text encoder applied to learned-context prompts ``[SOS, v_1..v_M, class name, ".", EOT]``.

``forward`` is the fast path; every speed-up in it is exact (see ``forward_reference``):

- truncate: the transformer is causal and the feature is read at the end-of-text token, so the
  sequences only need to run up to the longest prompt's EOT position + 1, not 77 tokens;
- batch: all images x classes are encoded together, in chunks of ``chunk_size`` sequences;
- shared prefix: SOS and the context tokens come first and are the same for every class of an
  image, so their keys/values are computed once per image and the class suffixes attend to them;
- last layer at EOT only: the last block computes its query, output projection and MLP only at
  the EOT token of each sequence;
- checkpoint: optional activation checkpointing of each block of the suffix pass.
"""
from typing import Callable, List, Optional, Sequence

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint as activation_checkpoint

from . import openai
from .prefix_attention import (
    KeyValue,
    block_step,
    block_step_at,
    causal_mask,
    check_block,
    prefix_key_values,
)

CONTEXT_PLACEHOLDER = "X"


class PromptTextEncoder(nn.Module):
    """Text features of ``[SOS, ctx, class name, ".", EOT]`` for every class, from a frozen CLIP.

    The CLIP text modules are shared with ``clip_model`` (not copied) and frozen
    (``requires_grad=False``); gradients flow only to the context passed to ``forward``. The
    computation runs in the dtype of CLIP's text weights (that of ``text_projection``).
    """

    def __init__(self, clip_model: "openai.model.CLIP", n_ctx: int, *, chunk_size: int = 0,
                 truncate: bool = True, shared_prefix: bool = True, checkpoint: bool = False) -> None:
        super().__init__()
        if not isinstance(n_ctx, int) or n_ctx < 0:
            raise ValueError(f"n_ctx must be an integer >= 0, got {n_ctx!r}")
        if not isinstance(chunk_size, int) or chunk_size < 0:
            raise ValueError(f"chunk_size must be an integer >= 0 (0 = one chunk), got {chunk_size!r}")
        if len(clip_model.transformer.resblocks) == 0:
            raise ValueError("the CLIP text transformer has no residual blocks")
        for block in clip_model.transformer.resblocks:
            check_block(block)

        self.token_embedding = clip_model.token_embedding
        self.positional_embedding = clip_model.positional_embedding
        self.transformer = clip_model.transformer
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.requires_grad_(False)

        self.context_length: int = clip_model.context_length
        self.n_ctx = n_ctx
        self.chunk_size = chunk_size
        self.truncate = truncate
        self.shared_prefix = shared_prefix
        self.checkpoint = checkpoint

        # Class-dependent, so never saved: a checkpoint must load whatever the class set.
        self.register_buffer("sos_embedding", None, persistent=False)       # [1, width]
        self.register_buffer("suffix_embeddings", None, persistent=False)   # [C, truncated_length - 1 - n_ctx, width]
        self.register_buffer("pad_embedding", None, persistent=False)       # [1, width]
        self.register_buffer("eot_positions", None, persistent=False)       # [C]
        self.truncated_length = 0

    @property
    def dtype(self) -> torch.dtype:
        return self.text_projection.dtype

    @property
    def width(self) -> int:
        return self.positional_embedding.shape[-1]

    @property
    def num_classes(self) -> int:
        """Number of classes set by :meth:`set_classnames` (0 before)."""
        return 0 if self.eot_positions is None else int(self.eot_positions.shape[0])

    def extra_repr(self) -> str:
        return (f"n_ctx={self.n_ctx}, num_classes={self.num_classes}, chunk_size={self.chunk_size}, "
                f"truncate={self.truncate}, shared_prefix={self.shared_prefix}, checkpoint={self.checkpoint}")

    def set_classnames(self, classnames: Sequence[str]) -> None:
        """Tokenise ``"X X .. X {name}."`` per class (``_`` in names read as spaces) and keep the
        token embeddings that do not depend on the context."""
        if isinstance(classnames, str) or len(classnames) == 0:
            raise ValueError(f"classnames must be a non-empty list of strings, got {classnames!r}")
        tokens = torch.cat([self._tokenize(name) for name in classnames])
        tokens = tokens.to(self.token_embedding.weight.device)
        eot_positions = tokens.argmax(dim=-1)
        truncated_length = int(eot_positions.max()) + 1
        with torch.no_grad():
            embeddings = self.token_embedding(tokens)
            pad = self.token_embedding(torch.zeros(1, dtype=torch.long, device=tokens.device))
        # Stored in the dtype the transformer runs in (CLIP keeps its token embedding in float32).
        self.sos_embedding = embeddings[0, :1].to(self.dtype, copy=True)
        self.suffix_embeddings = embeddings[:, 1 + self.n_ctx:truncated_length].to(self.dtype, copy=True)
        self.pad_embedding = pad.to(self.dtype)
        self.eot_positions = eot_positions
        self.truncated_length = truncated_length

    def _tokenize(self, name: str) -> Tensor:
        if not isinstance(name, str) or not name.replace("_", " ").strip():
            raise ValueError(f"class names must be non-empty strings, got {name!r}")
        prompt = " ".join([CONTEXT_PLACEHOLDER] * self.n_ctx + [name.replace("_", " ")]) + "."
        try:
            return openai.tokenize(prompt, context_length=self.context_length)
        except RuntimeError as err:
            raise ValueError(f"class name {name!r}: the prompt {prompt!r} is longer than the text encoder's "
                             f"context length of {self.context_length} tokens") from err

    def forward(self, ctx: Tensor) -> Tensor:
        """Projected, unnormalised text features: ``ctx`` ``[M, width]`` gives ``[C, D]``,
        ``ctx`` ``[B, M, width]`` (one context per image) gives ``[B, C, D]``."""
        contexts = self._batched_context(ctx)
        batch, num_classes = contexts.shape[0], self.num_classes
        prefix_length = 1 + self.n_ctx
        length = self.truncated_length if self.truncate else self.context_length
        positions = self.positional_embedding[:length].type(self.dtype)
        suffixes = self._suffixes(length)
        sos = self.sos_embedding.type(self.dtype)

        if self.shared_prefix:
            prefixes = torch.cat([sos.expand(batch, 1, -1), contexts], dim=1) + positions[:prefix_length]
            prefix_cache: List[Optional[KeyValue]] = prefix_key_values(self.transformer.resblocks, prefixes)
            suffix_inputs = suffixes + positions[prefix_length:]
            # Each class's EOT position within the sequences the blocks run on: after the cached prefix.
            input_eot_positions = self.eot_positions - prefix_length
            mask = causal_mask(prefix_length, length - prefix_length, contexts.device)
        else:
            prefix_cache = [None] * len(self.transformer.resblocks)
            input_eot_positions = self.eot_positions
            mask = causal_mask(0, length, contexts.device)

        total = batch * num_classes
        step = self.chunk_size or total
        eot_states = []
        for start in range(0, total, step):
            sequence = torch.arange(start, min(start + step, total), device=contexts.device)
            image, class_index = sequence // num_classes, sequence % num_classes
            if self.shared_prefix:
                inputs = suffix_inputs[class_index]
            else:
                inputs = torch.cat([sos.expand(len(sequence), 1, -1), contexts[image], suffixes[class_index]], dim=1)
                inputs = inputs + positions
            eot_states.append(self._encode_chunk(inputs, input_eot_positions[class_index], mask, prefix_cache, image))

        features = self.ln_final(torch.cat(eot_states)).type(self.dtype) @ self.text_projection
        features = features.reshape(batch, num_classes, -1)
        return features[0] if ctx.dim() == 2 else features

    def _encode_chunk(self, x: Tensor, eot_positions: Tensor, mask: Tensor, prefix_cache: List[Optional[KeyValue]],
                      image: Tensor) -> Tensor:
        """Hidden states after the last block at the EOT position ``eot_positions[i]`` of each sequence
        ``x[i]``, which continues the cached prefix of image ``image[i]`` (if any)."""
        blocks = self.transformer.resblocks
        for block, prefix in zip(blocks[:-1], prefix_cache[:-1]):
            x = self._run(block_step, block, x, mask, prefix, image)
        return self._run(block_step_at, blocks[-1], x, eot_positions, mask, prefix_cache[-1], image)

    def _run(self, function: Callable[..., Tensor], *args) -> Tensor:
        if self.checkpoint and torch.is_grad_enabled():
            return activation_checkpoint(function, *args, use_reentrant=False)
        return function(*args)

    def forward_reference(self, ctx: Tensor) -> Tensor:
        """The plain computation the fast path must equal: one image at a time, full-length
        sequences, CLIP's own residual blocks with its causal mask."""
        contexts = self._batched_context(ctx)
        num_classes = self.num_classes
        sos = self.sos_embedding.type(self.dtype).expand(num_classes, 1, -1)
        suffixes = self._suffixes(self.context_length)
        positions = self.positional_embedding.type(self.dtype)
        classes = torch.arange(num_classes, device=contexts.device)
        per_image = []
        for image_context in contexts:
            x = torch.cat([sos, image_context.expand(num_classes, -1, -1), suffixes], dim=1) + positions
            x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
            x = self.ln_final(x).type(self.dtype)
            per_image.append(x[classes, self.eot_positions] @ self.text_projection)
        features = torch.stack(per_image)
        return features[0] if ctx.dim() == 2 else features

    def _batched_context(self, ctx: Tensor) -> Tensor:
        if self.eot_positions is None:
            raise RuntimeError("PromptTextEncoder: call set_classnames(...) before encoding")
        if not isinstance(ctx, Tensor):
            raise TypeError(f"ctx must be a torch.Tensor, got {type(ctx).__name__}")
        expected = (self.n_ctx, self.width)
        if ctx.dim() not in (2, 3) or tuple(ctx.shape[-2:]) != expected:
            raise ValueError(f"ctx must have shape [{self.n_ctx}, {self.width}] or "
                             f"[B, {self.n_ctx}, {self.width}], got {list(ctx.shape)}")
        if ctx.dim() == 3 and ctx.shape[0] == 0:
            raise ValueError("ctx has an empty batch dimension")
        contexts = ctx if ctx.dim() == 3 else ctx.unsqueeze(0)
        return contexts.type(self.dtype)

    def _suffixes(self, length: int) -> Tensor:
        """Class-name, ".", EOT and padding embeddings filling positions ``1 + n_ctx .. length``."""
        suffixes = self.suffix_embeddings
        padding = length - self.truncated_length
        if padding > 0:
            pad = self.pad_embedding.expand(suffixes.shape[0], padding, -1)
            suffixes = torch.cat([suffixes, pad], dim=1)
        return suffixes.type(self.dtype)
