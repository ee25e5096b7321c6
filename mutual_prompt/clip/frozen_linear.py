"""The frozen CLIP's linear layers, computed by oneDNN on the CPU.

PyTorch sends fp32 CPU matrix products to MKL, which on some processors does not use their full
vector width: on the AMD EPYC (AVX-512) this project is developed on, MKL reaches about 210 GFLOP/s
on CLIP's layer shapes and oneDNN about 460 GFLOP/s, on the same tensors, in fp32. The result is
the same product; only the summation order inside the GEMM differs, as between any two BLAS
libraries (relative differences around 1e-7). Everywhere else (GPU, other dtypes, weights that
train, inside CPU autocast, which must see ``F.linear`` to lower its precision, and with
``torch.backends.mkldnn.enabled`` off) ``frozen_linear`` is ``F.linear``.

The weights are frozen, so gradients flow to the input only, as ``grad @ weight``, again through
oneDNN. ``MUTUAL_PROMPT_ONEDNN_LINEAR=0`` (or :func:`set_onednn_linear`) turns the path off.
"""
import functools
import os
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

ENV_SWITCH = "MUTUAL_PROMPT_ONEDNN_LINEAR"

_enabled = os.environ.get(ENV_SWITCH, "1") != "0"


@functools.lru_cache(maxsize=None)
def onednn_linear_available() -> bool:
    """Whether this PyTorch build has oneDNN's dense linear operator and it computes ``F.linear``.

    The operator is internal to PyTorch (its compiler uses it), so it is probed once on a small
    product rather than trusted by name: a build where it is missing, has another signature or
    disagrees with ``F.linear`` falls back to ``F.linear``.
    """
    if not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        return False
    generator = torch.Generator().manual_seed(0)
    x, weight, bias = (torch.randn(*shape, generator=generator, dtype=torch.float32)
                       for shape in ((3, 5, 16), (8, 16), (8,)))
    try:
        with torch.no_grad():
            product = _onednn(x, weight, bias)
    except (RuntimeError, TypeError):
        return False
    return product.shape == (3, 5, 8) and torch.allclose(product, F.linear(x, weight, bias), atol=1e-5, rtol=1e-5)


def set_onednn_linear(enabled: bool) -> None:
    """Use (or stop using) oneDNN for the frozen fp32 CPU linear layers."""
    global _enabled
    _enabled = bool(enabled)


def onednn_linear_enabled() -> bool:
    """Whether :func:`frozen_linear` currently routes fp32 CPU products through oneDNN."""
    return _enabled and onednn_linear_available()


def _cpu_autocast_enabled() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # PyTorch < 2.4
        return torch.is_autocast_cpu_enabled()


def _onednn(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


class _OneDNNFrozenLinear(torch.autograd.Function):
    """``x @ weight.T + bias`` with a gradient for ``x`` only (the weights are frozen)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
        ctx.save_for_backward(weight)
        return _onednn(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (weight,) = ctx.saved_tensors
        return _onednn(grad, weight.t(), None), None, None


def frozen_linear(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """``F.linear(x, weight, bias)`` for a weight that does not train, fastest available kernel."""
    trainable = weight.requires_grad or (bias is not None and bias.requires_grad)
    if (trainable or not _enabled or x.device.type != "cpu" or x.dim() < 2 or x.numel() == 0
            or x.dtype != torch.float32 or weight.dtype != torch.float32 or _cpu_autocast_enabled()
            or not torch.backends.mkldnn.enabled or not onednn_linear_available()):
        return F.linear(x, weight, bias)
    if torch.is_grad_enabled() and x.requires_grad:
        return _OneDNNFrozenLinear.apply(x, weight, bias)
    return _onednn(x, weight, bias)
