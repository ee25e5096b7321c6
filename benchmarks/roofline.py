"""The two halves of a roofline: the FLOPs a step costs, and the rate this machine multiplies matrices at.

- :func:`count_flops`: the FLOPs of the matrix products and convolutions a step runs, counted by
  ``torch.utils.flop_counter.FlopCounterMode`` (attention in its unfused form, which it counts on
  every device). Element-wise work (LayerNorm, GELU, softmax, casts) is not counted: it is no
  matrix-unit work, and its time is part of what keeps a step below the rate;
- :func:`step_flops_per_image`: a training step (forward, loss, backward to the trainable
  parameters) or an evaluation pass of a model, counted on fake tensors (``FakeTensorMode``: shapes
  and dtypes only, nothing is computed), per image;
- :func:`matmul_rate`: FLOP/s of one ``F.linear`` in the precision's compute dtype, timed here.

A step's achieved rate is its FLOPs per image x images/s; divided by :func:`matmul_rate` it is the
share of the machine's matrix-product rate the step reaches (``benchmarks/throughput.py``).
"""
import time
from typing import Callable, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from mutual_prompt.clip import autocast
from mutual_prompt.clip.precision import compute_dtype


def count_flops(step: Callable[[], object]) -> int:
    """FLOPs of the matrix products and convolutions ``step`` runs."""
    counter = FlopCounterMode(display=False)
    with counter, sdpa_kernel([SDPBackend.MATH]):
        step()
    return counter.get_total_flops()


def step_flops_per_image(model: nn.Module, batch: int, image_size: int, classes: int, train: bool,
                         precision: str = "fp32", device: Union[str, torch.device] = "cpu") -> float:
    """FLOPs per image of a training step of ``model`` on ``batch`` images (cross-entropy over ``classes``,
    gradients of the parameters that require them) or of an evaluation pass, under ``precision``'s autocast."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    trainable = [p for p in model.parameters() if p.requires_grad]
    with FakeTensorMode(allow_non_fake_inputs=True):
        images = torch.randn(batch, 3, image_size, image_size, device=device)
        labels = torch.zeros(batch, dtype=torch.long, device=device)

        def step() -> None:
            with torch.set_grad_enabled(train), autocast(precision, device):
                logits = model(images)
            if train:
                torch.autograd.grad(F.cross_entropy(logits.float(), labels), trainable)

        return count_flops(step) / batch


def matmul_rate(precision: str, device: Union[str, torch.device], m: int, k: int, n: int,
                repeats: int = 5, calls: Optional[int] = None) -> float:
    """FLOP/s of ``F.linear`` of an ``[m, k]`` input and an ``[n, k]`` weight (``nn.Linear``'s layout) in the
    dtype ``precision``'s matrix products run in (``compute_dtype``), the best of ``repeats`` timings."""
    dtype = compute_dtype(precision, device)
    x = torch.randn(m, k, device=device, dtype=dtype)
    weight = torch.randn(n, k, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    flops = 2 * m * k * n
    for _ in range(3):
        F.linear(x, weight)
    sync()
    if calls is None:  # about 0.2 s per timing
        start = time.perf_counter()
        F.linear(x, weight)
        sync()
        calls = max(1, min(1000, int(0.2 / max(time.perf_counter() - start, 1e-6))))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            F.linear(x, weight)
        sync()
        best = min(best, time.perf_counter() - start)
    return flops * calls / best
