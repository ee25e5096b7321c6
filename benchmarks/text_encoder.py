"""Micro-benchmark of PromptTextEncoder: the fast path against the plain per-image computation.

Random weights at ViT-B/16's text shapes (width 512, 12 layers, 8 heads, 77 tokens), per-image
context ``[B, M, 512]`` for C class names. Prints the best time per call (of --repeats, modes
interleaved) and its ratio to ``forward_reference``, for inference (no grad) and for a training step
(forward + backward to the context), one row per combination of the encoder's flags; on CUDA also
the peak memory of the training step.

    python benchmarks/text_encoder.py --classes 50 --batch 4 --dtype fp32
"""
import argparse
import time
from typing import Callable, Dict, List

import torch
from tabulate import tabulate

from mutual_prompt.clip import CLIP, PromptTextEncoder, set_clip_precision

CLASS_NAMES = [
    "airplane", "bald_eagle", "banana", "barn owl", "beaver", "bonsai", "brain coral", "butterfly",
    "camera", "cellular telephone", "chair", "chandelier", "cougar_face", "crocodile head", "dalmatian",
    "dollar bill", "dolphin", "dragonfly", "electric guitar", "elephant", "emu", "euphonium", "ewer",
    "ferry", "flamingo", "garfield", "gerenuk", "gramophone", "grand piano", "hawksbill", "headphone",
    "hedgehog", "helicopter", "ibis", "inline skate", "joshua tree", "kangaroo", "ketch", "lamp",
    "laptop", "lobster", "lotus", "mandolin", "mayfly", "menorah", "metronome", "minaret", "motorbike",
    "nautilus", "octopus", "okapi", "pagoda", "panda", "pigeon", "pizza", "platypus", "pyramid",
    "revolver", "rhino", "rooster", "saxophone", "schooner", "scissors", "scorpion", "sea horse",
    "snoopy", "soccer ball", "stapler", "starfish", "stegosaurus", "stop sign", "strawberry",
    "sunflower", "tick", "trilobite", "umbrella", "watch", "water lilly", "wheelchair", "wild cat",
    "windsor chair", "wrench", "yin yang",
]

PRECISIONS = ("bf16", "fp16", "fp32")
MODES = {
    "plain (per image, 77 tokens)": None,
    "batch": dict(truncate=False, shared_prefix=False),
    "batch + truncate": dict(truncate=True, shared_prefix=False),
    "batch + truncate + shared prefix": dict(truncate=True, shared_prefix=True),
    "... + checkpoint": dict(truncate=True, shared_prefix=True, checkpoint=True),
}


def vit_b16_text_clip(precision: str) -> CLIP:
    """Random CLIP with ViT-B/16's text encoder (its vision tower is tiny: it is not measured)."""
    model = CLIP(embed_dim=512, image_resolution=32, vision_layers=1, vision_width=64,
                 vision_patch_size=16, context_length=77, vocab_size=49408,
                 transformer_width=512, transformer_heads=8, transformer_layers=12)
    return set_clip_precision(model, precision).eval()


def seconds(step: Callable[[], None]) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=50, help=f"number of classes (at most {len(CLASS_NAMES)})")
    parser.add_argument("--batch", type=int, default=4, help="images per batch (one context each)")
    parser.add_argument("--n-ctx", type=int, default=4)
    parser.add_argument("--chunk-size", type=int, default=0, help="sequences per chunk, 0 = one chunk")
    parser.add_argument("--dtype", choices=PRECISIONS, default="fp32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = leave as is)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if not 1 <= args.classes <= len(CLASS_NAMES):
        parser.error(f"--classes must be in 1..{len(CLASS_NAMES)}, got {args.classes}")
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    model = vit_b16_text_clip(args.dtype).to(args.device)
    context = 0.02 * torch.randn(args.batch, args.n_ctx, 512, device=args.device)
    synchronize = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    encoders = {}
    for name, flags in MODES.items():
        encoders[name] = PromptTextEncoder(model, args.n_ctx, chunk_size=args.chunk_size, **(flags or {}))
        encoders[name].set_classnames(CLASS_NAMES[:args.classes])

    def infer(encode: Callable[[torch.Tensor], torch.Tensor]) -> None:
        with torch.no_grad():
            encode(context)
        synchronize()

    def train(encode: Callable[[torch.Tensor], torch.Tensor]) -> None:
        ctx = context.clone().requires_grad_(True)
        encode(ctx).float().square().sum().backward()
        synchronize()

    # Modes interleaved, best of the repeats: the fairest comparison on a machine shared with others.
    on_cuda = args.device.startswith("cuda")
    times: Dict[str, Dict[str, List[float]]] = {name: {"inference": [], "train step": []} for name in MODES}
    peak_memory: Dict[str, float] = {}
    for repeat in range(args.repeats):
        for name, encoder in encoders.items():
            encode = encoder.forward_reference if MODES[name] is None else encoder.forward
            times[name]["inference"].append(seconds(lambda: infer(encode)))
            if on_cuda:
                torch.cuda.reset_peak_memory_stats()
            times[name]["train step"].append(seconds(lambda: train(encode)))
            if on_cuda:
                peak_memory[name] = torch.cuda.max_memory_allocated() / 2 ** 20
        print(f"repeat {repeat + 1}/{args.repeats} done", flush=True)

    best = {name: {kind: min(values) for kind, values in kinds.items()} for name, kinds in times.items()}
    base = best[next(iter(MODES))]
    rows = [[name] + [f"{best[name][kind] * 1e3:.0f} ms ({base[kind] / best[name][kind]:.1f}x)"
                      for kind in ("inference", "train step")]
            + ([f"{peak_memory[name]:.0f} MiB"] if on_cuda else []) for name in MODES]
    encoder = encoders[next(iter(MODES))]
    print(f"\nB={args.batch} C={args.classes} M={args.n_ctx} dtype={args.dtype} device={args.device} "
          f"threads={torch.get_num_threads()} truncated length={encoder.truncated_length} of 77")
    print(tabulate(rows, headers=["mode", "inference", "train step"] + (["train peak memory"] if on_cuda else [])))


if __name__ == "__main__":
    main()
