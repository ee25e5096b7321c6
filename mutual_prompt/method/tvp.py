"""TVP, the text-reorganised visual prompt: visual tokens built from the text of the classes an
image is most similar to."""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class TextReorganizedVisualPrompt(nn.Module):
    """``p_j = e_j + U_j r`` with ``r = sum_k softmax(s_K / temp)_k t_k`` over the top-k classes.

    ``t`` (set by ``set_class_text_features``) are the frozen, normalised CLIP text features of
    "a photo of a {class}." (encoded in CLIP's precision, kept in float32 like the trainable
    parameters) — a non-persistent buffer, so checkpoints do not depend on the class set. ``U``
    starts at zero, so training starts from the plain learnable tokens ``e`` (std 0.02).
    With ``depth > 1`` there is one set of tokens (and of U) per prompted layer. The sizes are
    ``TRAINER.MUTUAL_PROMPT.TVP.*`` (``n_tokens``, ``depth``, ``topk`` >= 1, ``temp`` > 0, checked by
    ``validate_cfg``).
    """

    def __init__(self, embed_dim: int, vis_width: int, n_tokens: int, depth: int, topk: int, temp: float) -> None:
        super().__init__()
        self.n_tokens, self.depth, self.topk, self.temp, self.vis_width = n_tokens, depth, topk, temp, vis_width
        self.base_tokens = nn.Parameter(torch.randn(depth, n_tokens, vis_width) * 0.02)
        self.proj = nn.Linear(embed_dim, depth * n_tokens * vis_width)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        self.register_buffer("class_text_features", torch.empty(0, embed_dim), persistent=False)

    def set_class_text_features(self, text_features: Tensor) -> None:
        self.class_text_features = text_features.detach().float().to(self.base_tokens.device)

    def top_classes(self, x0: Tensor) -> Tuple[Tensor, Tensor]:
        """The similarities ``s_K`` [B, K] of each image's top-k classes and their indices [B, K],
        most similar first (K = min(topk, C)), in float32 even under autocast."""
        t = self.class_text_features
        if t.shape[0] == 0:
            raise RuntimeError("TVP has no class text features: call set_class_text_features first")
        with torch.autocast(device_type=x0.device.type, enabled=False):
            return (x0.float() @ t.t()).topk(min(self.topk, t.shape[0]), dim=-1)

    def reorganised_text(self, x0: Tensor) -> Tensor:
        """The weighted text description ``r`` [B, d] of each image's top-k classes."""
        values, index = self.top_classes(x0)
        # In float32 even under autocast: dividing by a temperature of 0.01 would magnify bf16 rounding.
        with torch.autocast(device_type=x0.device.type, enabled=False):
            w = F.softmax(values / self.temp, dim=-1)
            return torch.einsum("bk,bkd->bd", w, self.class_text_features[index])

    def forward(self, x0: Tensor) -> Tensor:
        """[B, d] -> prompts [B, P, width] (depth 1) or [DEPTH, B, P, width]."""
        r = self.reorganised_text(x0)
        p = self.base_tokens.unsqueeze(0) + self.proj(r).view(-1, self.depth, self.n_tokens, self.vis_width)
        return p[:, 0] if self.depth == 1 else p.permute(1, 0, 2, 3)
