"""CLIP's vision transformer with optional visual prompt tokens appended to its sequence."""
from typing import Optional

import torch
from torch import Tensor, nn

from .prefix_attention import block_step, check_block


def is_vision_transformer(visual: nn.Module) -> bool:
    """Whether CLIP's image encoder is a ``VisionTransformer`` (not a ``ModifiedResNet``)."""
    return hasattr(visual, "class_embedding")


class PromptImageEncoder(nn.Module):
    """Wraps ``clip_model.visual`` (a ``VisionTransformer``), frozen and shared, not copied.

    ``forward(images)`` is exactly ``clip_model.encode_image(images)``. With ``prompts`` of shape
    [B, P, width] the P tokens are appended after the class and patch tokens (after the positional
    embedding, before ``ln_pre``); with [DEPTH, B, P, width], layer ``i < DEPTH`` receives
    ``prompts[i]`` in place of the previous layer's prompt outputs (deep prompting). The feature is
    read at the class token as usual. The blocks run batch-first through the same functions as the
    text encoder's (scaled-dot-product attention, ``F.linear``), which compute what CLIP's
    own blocks compute.
    """

    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        if not is_vision_transformer(visual):
            raise TypeError(
                f"visual prompts need a ViT image encoder; got {type(visual).__name__} (use a ViT backbone, "
                "e.g. ViT-B/16, or turn TVP off with TRAINER.MUTUAL_PROMPT.TVP.ENABLED False)"
            )
        for block in visual.transformer.resblocks:
            check_block(block)
        self.visual = visual
        self.visual.requires_grad_(False)

    @property
    def dtype(self) -> torch.dtype:
        return self.visual.conv1.weight.dtype

    @property
    def width(self) -> int:
        return self.visual.class_embedding.shape[-1]

    def forward(self, images: Tensor, prompts: Optional[Tensor] = None) -> Tensor:
        v = self.visual
        dtype = self.dtype
        x = v.conv1(images.type(dtype))
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = v.class_embedding.to(dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=dtype, device=x.device)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(dtype)
        n_tokens = x.shape[1]
        deep = prompts is not None and prompts.dim() == 4
        if prompts is not None:
            x = torch.cat([x, (prompts[0] if deep else prompts).to(dtype)], dim=1)
        x = v.ln_pre(x)
        for i, block in enumerate(v.transformer.resblocks):
            if deep and 0 < i < prompts.shape[0]:
                x = torch.cat([x[:, :n_tokens], prompts[i].to(dtype)], dim=1)
            x = block_step(block, x, None)
        x = v.ln_post(x[:, 0, :])
        if v.proj is not None:
            x = x @ v.proj
        return x
