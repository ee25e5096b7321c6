"""GFLOP/s of the frozen CLIP's linear layers: PyTorch's default kernel against ``frozen_linear``.

Shapes of ViT-B/16 with a batch of 4 images (788 tokens, width 768) and of its text transformer on
the class suffixes of C = 50 classes for 4 images (1200 tokens, width 512): the QKV projection, the
attention output projection and the two MLP layers. Best of --repeats per shape, fp32, CPU.

    python benchmarks/linear_kernels.py
"""
import argparse
import time
from typing import Callable

import torch
import torch.nn.functional as F
from tabulate import tabulate

from mutual_prompt.clip.frozen_linear import frozen_linear, onednn_linear_available, set_onednn_linear

SHAPES = {  # name: (rows, in_features, out_features)
    "image qkv": (788, 768, 2304),
    "image out_proj": (788, 768, 768),
    "image c_fc": (788, 768, 3072),
    "image c_proj": (788, 3072, 768),
    "text qkv": (1200, 512, 1536),
    "text c_fc": (1200, 512, 2048),
    "text c_proj": (1200, 2048, 512),
}


def best_seconds(step: Callable[[], torch.Tensor], repeats: int) -> float:
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave as is)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not onednn_linear_available():
        parser.error("this PyTorch build has no oneDNN linear operator: frozen_linear is F.linear here")
    set_onednn_linear(True)
    torch.manual_seed(0)
    rows = []
    with torch.no_grad():
        for name, (n, k, m) in SHAPES.items():
            x, weight, bias = torch.randn(n, k), torch.randn(m, k) / k ** 0.5, torch.randn(m)
            flops = 2 * n * k * m
            default = flops / best_seconds(lambda: F.linear(x, weight, bias), args.repeats) / 1e9
            onednn = flops / best_seconds(lambda: frozen_linear(x, weight, bias), args.repeats) / 1e9
            rows.append([name, f"{n}x{k} @ {k}x{m}", f"{default:.0f}", f"{onednn:.0f}", f"{onednn / default:.1f}x"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32")
    print(tabulate(rows, headers=["layer", "product", "F.linear GFLOP/s", "frozen_linear GFLOP/s", "ratio"],
                   disable_numparse=True))


if __name__ == "__main__":
    main()
