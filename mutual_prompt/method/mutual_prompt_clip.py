"""MutualPromptCLIP: frozen CLIP + the trainable prompt modules (context, FTP, TVP)."""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..clip import PromptImageEncoder, PromptTextEncoder, is_vision_transformer, tokenize
from .ftp import FineGrainedTextPrompt
from .tvp import TextReorganizedVisualPrompt

TVP_TEMPLATE = "a photo of a {}."


class PromptLearner(nn.Module):
    """Everything that trains (and is saved): the context vectors, FTP and TVP."""

    def __init__(self, ctx: Tensor, ftp: FineGrainedTextPrompt, tvp: Optional[TextReorganizedVisualPrompt]) -> None:
        super().__init__()
        self.ctx = nn.Parameter(ctx)
        self.ftp = ftp
        self.tvp = tvp


class MutualPromptCLIP(nn.Module):
    """Logits ``exp(logit_scale) * x_b . t_{b,c}`` of Mutual Prompt Learning (``docs/METHOD.md``).

    CLIP stays frozen; ``prompt_learner`` holds all trainable parameters, in float32 whatever CLIP's
    weight dtype (``mutual_prompt/clip/precision.py``). Class-dependent state (the text encoder's class suffixes and
    TVP's class text features) lives in non-persistent buffers rebuilt by ``set_classnames`` on
    CLIP's device, so a checkpoint trained on base classes loads for new classes.

    The keyword arguments are the ``TRAINER.MUTUAL_PROMPT`` keys of the same names (their defaults and
    checks: ``trainers/mutual_prompt.py``'s ``extend_cfg`` and ``validate_cfg``; ``model_arguments``
    there maps a config to them). The class name always follows the context (CLASS_TOKEN_POSITION end).
    """

    def __init__(self, clip_model: nn.Module, classnames: Sequence[str], *, n_ctx: int, ctx_init: str,
                 ftp_mode: str, tvp_enabled: bool, tvp_topk: int, tvp_temp: float, tvp_n_tokens: int,
                 tvp_depth: int, text_chunk: int, text_shared_prefix: bool, text_truncate: bool,
                 text_checkpoint: bool) -> None:
        super().__init__()
        clip_model.requires_grad_(False)
        ctx = self._initial_context(clip_model, n_ctx, ctx_init)
        n_ctx = ctx.shape[0]
        embed_dim = clip_model.text_projection.shape[1]
        use_own_encoder = tvp_enabled or is_vision_transformer(clip_model.visual)
        self.image_encoder = PromptImageEncoder(clip_model.visual) if use_own_encoder else None
        ftp = FineGrainedTextPrompt(embed_dim, ctx.shape[1], n_ctx, ftp_mode)
        tvp = None
        if tvp_enabled:
            tvp = TextReorganizedVisualPrompt(embed_dim, self.image_encoder.width, tvp_n_tokens, tvp_depth, tvp_topk, tvp_temp)
        # On CLIP's device from the start, so that set_classnames computes the class buffers there.
        self.prompt_learner = PromptLearner(ctx, ftp, tvp).to(clip_model.token_embedding.weight.device)
        self.text_encoder = PromptTextEncoder(
            clip_model, n_ctx, chunk_size=text_chunk, truncate=text_truncate, shared_prefix=text_shared_prefix,
            checkpoint=text_checkpoint,
        )
        self.clip_model = clip_model
        self._classifier_cache: Optional[Tuple[Tuple[int, int], Tensor]] = None
        self.set_classnames(classnames)

    @staticmethod
    def _initial_context(clip_model: nn.Module, n_ctx: int, ctx_init: str) -> Tensor:
        ctx_dim = clip_model.ln_final.weight.shape[0]
        if ctx_init:
            words = ctx_init.replace("_", " ").strip()
            n_ctx = len(words.split(" "))
            tokens = tokenize(words).to(clip_model.token_embedding.weight.device)
            with torch.no_grad():
                embedding = clip_model.token_embedding(tokens)
            return embedding[0, 1 : 1 + n_ctx].detach().float().clone()
        return torch.randn(n_ctx, ctx_dim) * 0.02

    @property
    def num_classes(self) -> int:
        return self.text_encoder.num_classes

    @torch.no_grad()
    def set_classnames(self, classnames: Sequence[str]) -> None:
        """Rebuild the class-dependent buffers for a new class set."""
        self.text_encoder.set_classnames(list(classnames))
        tvp = self.prompt_learner.tvp
        if tvp is not None:
            device = self.clip_model.token_embedding.weight.device
            prompts = tokenize([TVP_TEMPLATE.format(c.replace("_", " ")) for c in classnames]).to(device)
            tvp.set_class_text_features(F.normalize(self.clip_model.encode_text(prompts).float(), dim=-1))
        self._classifier_cache = None

    def encode_image(self, images: Tensor) -> Tensor:
        """The frozen, unprompted, normalised image feature x0."""
        with torch.no_grad():
            encode = self.clip_model.encode_image if self.image_encoder is None else self.image_encoder
            return F.normalize(encode(images).float(), dim=-1)

    def shared_classifier(self) -> Tensor:
        """[C, D] normalised class features from the unconditioned context (FTP ``none``), cached while
        neither gradients nor a new context can change them."""
        ctx = self.prompt_learner.ctx
        key = (ctx.data_ptr(), ctx._version)
        if torch.is_grad_enabled():
            self._classifier_cache = None
            return F.normalize(self.text_encoder(ctx).float(), dim=-1)
        if self._classifier_cache is None or self._classifier_cache[0] != key:
            self._classifier_cache = (key, F.normalize(self.text_encoder(ctx).float(), dim=-1))
        return self._classifier_cache[1]

    def forward(self, images: Tensor) -> Tensor:
        """Logits ``[B, C]`` for ``images`` ``[B, 3, H, W]``.

        Shapes: B images, C classes, D CLIP's joint embedding width, M context tokens, W the text
        transformer's width, P visual prompt tokens per layer, V the image transformer's width.
        """
        x0 = self.encode_image(images)  # [B, D], unprompted, normalised
        learner = self.prompt_learner
        if learner.tvp is not None:
            visual_prompts = learner.tvp(x0)  # [B, P, V], or [DEPTH, B, P, V] for deep prompts
            x = F.normalize(self.image_encoder(images, visual_prompts).float(), dim=-1)  # [B, D]
        else:
            x = x0
        scale = self.clip_model.logit_scale.exp().float()  # scalar
        offsets = learner.ftp(x0)  # [B, M, W], or None (FTP none: one context for every image)
        if offsets is None:
            return scale * x @ self.shared_classifier().t()  # [B, D] @ [D, C] -> [B, C]
        ctx = learner.ctx.unsqueeze(0) + offsets  # [1, M, W] + [B, M, W] -> [B, M, W]
        text = F.normalize(self.text_encoder(ctx).float(), dim=-1)  # [B, C, D]: one classifier per image
        return scale * torch.einsum("bd,bcd->bc", x, text)  # [B, C]
