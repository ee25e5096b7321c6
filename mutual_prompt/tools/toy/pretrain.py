"""Pre-train the tiny toy CLIP contrastively on rendered shape images and their captions.

    python -m mutual_prompt.toy.pretrain --output tiny_clip.pt

The model is OpenAI's ``clip.model.CLIP`` (ViT image encoder, BPE tokenizer, 77-token context) at
small widths and depths. Each step renders a fresh batch of (image, caption) pairs from the seeded
generator; the loss is CLIP's symmetric cross-entropy, with every pair of the same concept in the
batch counted as a positive (a batch of 256 holds each of the 64 concepts about four times). The
result is saved as a flat fp16 state dict that ``clip.model.build_model`` rebuilds.
"""
import argparse
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from typing import List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ...clip import CLIP, tokenize
from ...files import atomic_path
from .render import CLASSNAMES, NUM_CLASSES, render_batch

# The toy CLIP expects OpenAI CLIP's normalisation, so configs differ from ViT-B/16 only in INPUT.SIZE.
PIXEL_MEAN = (0.48145466, 0.4578275, 0.40821073)
PIXEL_STD = (0.26862954, 0.26130258, 0.27577711)
ZERO_SHOT_TEMPLATE = "a photo of a {}."


@dataclass
class PretrainConfig:
    """The recipe; the defaults produced the shipped ``tiny_clip.pt``."""

    seed: int = 0
    steps: int = 3000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 150
    image_size: int = 32
    patch_size: int = 8
    vision_width: int = 128
    vision_layers: int = 4
    text_width: int = 64
    text_layers: int = 3
    embed_dim: int = 128
    eval_every: int = 250
    eval_per_class: int = 10
    threads: int = 2

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "image_size", "patch_size", "vision_layers", "text_layers",
                     "embed_dim", "eval_every", "eval_per_class", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.warmup_steps < 0 or self.lr <= 0 or self.weight_decay < 0:
            raise ValueError(
                f"warmup_steps and weight_decay must be >= 0 and lr > 0, got warmup_steps={self.warmup_steps}, "
                f"weight_decay={self.weight_decay}, lr={self.lr}"
            )
        for name in ("vision_width", "text_width"):
            if getattr(self, name) < 64 or getattr(self, name) % 64 != 0:
                raise ValueError(f"{name} must be a multiple of 64 (CLIP uses width // 64 heads), got {getattr(self, name)}")
        if self.image_size % self.patch_size != 0:
            raise ValueError(f"image_size {self.image_size} must be a multiple of patch_size {self.patch_size}")


def build_tiny_clip(cfg: PretrainConfig) -> CLIP:
    """A randomly initialised ``CLIP`` of the recipe's shape; heads are width // 64, as build_model infers."""
    return CLIP(
        embed_dim=cfg.embed_dim,
        image_resolution=cfg.image_size,
        vision_layers=cfg.vision_layers,
        vision_width=cfg.vision_width,
        vision_patch_size=cfg.patch_size,
        context_length=77,
        vocab_size=49408,
        transformer_width=cfg.text_width,
        transformer_heads=cfg.text_width // 64,
        transformer_layers=cfg.text_layers,
    )


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> normalised float (N, 3, H, W), as the dataset pipeline's ToTensor + Normalize."""
    x = torch.tensor(images).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(PIXEL_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def tokenize_trimmed(texts: Sequence[str]) -> torch.Tensor:
    """BPE tokens cut after the longest end-of-text token; exact, since the text transformer is causal."""
    tokens = tokenize(list(texts))
    return tokens[:, : int(tokens.argmax(dim=-1).max()) + 1]


def concept_contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor, labels: torch.Tensor,
                             logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric CLIP loss whose targets spread evenly over all pairs showing the same concept."""
    image_features = F.normalize(image_features, dim=-1)
    text_features = F.normalize(text_features, dim=-1)
    logits = logit_scale.exp() * image_features @ text_features.t()
    targets = (labels[:, None] == labels[None, :]).float()
    targets = targets / targets.sum(dim=1, keepdim=True)
    loss_i = -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    loss_t = -(targets * F.log_softmax(logits.t(), dim=1)).sum(dim=1).mean()
    return (loss_i + loss_t) / 2


@torch.no_grad()
def zero_shot_predict(model: CLIP, images: torch.Tensor, classnames: Sequence[str],
                      template: str = ZERO_SHOT_TEMPLATE, batch_size: int = 512) -> torch.Tensor:
    """Label predicted for each normalised image by the most similar "a photo of a {class}." prompt."""
    text = model.encode_text(tokenize_trimmed([template.format(c) for c in classnames]).to(images.device))
    text = F.normalize(text.float(), dim=-1)
    preds = []
    for start in range(0, len(images), batch_size):
        feats = model.encode_image(images[start:start + batch_size].type(model.dtype))
        preds.append((F.normalize(feats.float(), dim=-1) @ text.t()).argmax(dim=-1))
    return torch.cat(preds)


def render_eval_set(seed: int, per_class: int, image_size: int):
    """A fixed held-out set: ``per_class`` renders of every concept from its own seed."""
    rng = np.random.default_rng([seed, 1])
    labels = np.repeat(np.arange(NUM_CLASSES), per_class)
    images, _ = render_batch(labels, rng, image_size)
    return images_to_tensor(images), torch.from_numpy(labels)


def _optimizer(model: CLIP, cfg: PretrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        is_matrix = p.ndim >= 2 and "embedding" not in name
        (decay if is_matrix else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)


def _lr_at(step: int, cfg: PretrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))


def save_checkpoint(model: CLIP, path: str) -> None:
    """A flat fp16 state dict of tensors, written atomically."""
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
        os.chmod(tmp, 0o644)  # readable like any installed package file, not the temp file's 0600


def pretrain(cfg: PretrainConfig, output: str) -> float:
    """Train, save to ``output`` and return the final zero-shot accuracy (%) on the held-out renders."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = build_tiny_clip(cfg)
    optimizer = _optimizer(model, cfg)
    eval_images, eval_labels = render_eval_set(cfg.seed, cfg.eval_per_class, cfg.image_size)
    print(f"Pre-training the toy CLIP: {asdict(cfg)}")
    print(f"Parameters: {sum(p.numel() for p in model.parameters()):,}")

    start = time.time()
    accuracy = 0.0
    bar = tqdm(range(cfg.steps), desc="pretrain", dynamic_ncols=True, mininterval=1.0, file=sys.stdout)
    for step in bar:
        labels = rng.integers(0, NUM_CLASSES, cfg.batch_size)
        images, captions = render_batch(labels, rng, cfg.image_size)
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, cfg)
        model.train()
        loss = concept_contrastive_loss(
            model.encode_image(images_to_tensor(images)),
            model.encode_text(tokenize_trimmed(captions)),
            torch.from_numpy(labels),
            model.logit_scale,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        bar.set_postfix(loss=f"{loss.item():.4f}")

        last = step + 1 == cfg.steps
        if last or (step + 1) % cfg.eval_every == 0:
            model.eval()
            preds = zero_shot_predict(model, eval_images, CLASSNAMES)
            accuracy = 100.0 * (preds == eval_labels).float().mean().item()
            bar.write(
                f"step {step + 1}/{cfg.steps}  loss {loss.item():.4f}  "
                f"zero-shot acc {accuracy:.1f}%  elapsed {time.time() - start:.0f}s"
            )
    bar.close()
    save_checkpoint(model, output)
    print(f"Saved {output}  zero-shot accuracy {accuracy:.1f}%  time {time.time() - start:.0f}s")
    return accuracy


OPTION_HELP = {
    "seed": "seed of the renderer and of the model's initialisation",
    "steps": "optimiser steps, each on a freshly rendered batch",
    "batch_size": "(image, caption) pairs per step",
    "lr": "peak learning rate of AdamW (cosine decay after the warm-up)",
    "weight_decay": "AdamW's weight decay",
    "warmup_steps": "steps of linear learning-rate warm-up",
    "image_size": "rendered image side, pixels (the toy configs' INPUT.SIZE)",
    "patch_size": "ViT patch side, pixels",
    "vision_width": "ViT width",
    "vision_layers": "ViT depth",
    "text_width": "text transformer width",
    "text_layers": "text transformer depth",
    "embed_dim": "joint embedding width",
    "eval_every": "steps between zero-shot evaluations",
    "eval_per_class": "evaluation images per class",
    "threads": "torch CPU threads",
}


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    defaults = PretrainConfig()
    parser = argparse.ArgumentParser(prog="python -m mutual_prompt.toy.pretrain", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--output", default="tiny_clip.pt",
                        help="where to write the state dict (the shipped one is mutual_prompt/clip/tiny_clip.pt)")
    for name, value in asdict(defaults).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value, help=OPTION_HELP[name])
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    output = args.output
    cfg = PretrainConfig(**{k: v for k, v in vars(args).items() if k != "output"})
    torch.set_num_threads(cfg.threads)
    pretrain(cfg, output)


if __name__ == "__main__":
    main()
