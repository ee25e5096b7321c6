"""CLIP in each training precision (``TRAINER.<NAME>.PREC``), the way CoOp runs it on a GPU.

:func:`load_frozen_clip` is the one place every trainer gets its CLIP from: the weights (name or
path), the trainer's device and the precision in, a frozen CLIP in eval mode out, already on the
device, so that everything computed from it afterwards (class text features, token embeddings)
is computed there, in that precision. The weight layouts:

- ``fp16``: OpenAI's own mixed layout, as ``clip.model.build_model`` leaves it: the weights and
  biases of every linear and convolution layer, the attention in-projections and the two output
  projections (``text_projection``, ``visual.proj``) in float16; everything else in float32
  (LayerNorms, BatchNorms, token / positional / class embeddings, ``logit_scale``). CLIP's
  ``LayerNorm`` computes in float32 and returns its input's dtype, so activations stay float16;
- ``bf16``: the same layout in bfloat16;
- ``fp32``: everything float32;
- an open_clip timm image tower (``open_clip_backbone``) under ``fp16`` / ``bf16``: all of its weights
  in 16 bits, as open_clip lays timm towers out;
- ``amp``: float32 weights; the forward pass runs under :func:`autocast` (float16 with a
  :func:`grad_scaler` on CUDA, bfloat16 on the CPU, where float16 autocast has no speed to offer).

The trainable prompt parameters stay float32 in every precision (master weights): they are small,
the optimizer updates them without rounding, and they are cast to the frozen encoders' dtype where
they enter them. CoCoOp instead keeps its context and meta-net in fp16 under ``PREC fp16``, so its
fp16 logits equal ours only up to fp16 rounding.

PREC ``fp16`` on the CPU runs in fp32 (a printed line says so): fp16 matrix products there are
about 4x slower than fp32. ``MUTUAL_PROMPT_CPU_FP16=1`` runs the real fp16 path on the CPU, as a GPU
would (tests). PREC ``bf16`` (and ``amp``, bfloat16 on the CPU) is the fast CPU precision where the
CPU has bfloat16 instructions (x86 ``avx512_bf16`` or ``amx_bf16``, Arm ``bf16``): its matrix products
ran 3.4-4.5x faster than fp32 on the two machines measured (docs/PERFORMANCE.md). Without them
PyTorch emulates bfloat16 and it is slower than fp32; such a run prints one warning and goes on.
"""
import contextlib
import functools
import os
import platform
from typing import ContextManager, FrozenSet, Iterator, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from .loader import load_clip
from .open_clip_backbone import WHOLE_TOWER_LOW_PRECISION

PRECISIONS = ("fp16", "fp32", "amp", "bf16")
CPU_FP16_SWITCH = "MUTUAL_PROMPT_CPU_FP16"

_WEIGHT_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32, "amp": torch.float32}
_ATTENTION_TENSORS = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight", "in_proj_bias",
                      "bias_k", "bias_v")
_OUTPUT_PROJECTIONS = ("text_projection", "proj")
_CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})  # x86 (AVX-512, AMX) and Arm names
_warned_slow_bf16 = False


def check_precision(precision: str, key: str = "PREC") -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"{key} must be one of {PRECISIONS}, got {precision!r}")


def weight_dtype(precision: str) -> torch.dtype:
    """The dtype of CLIP's linear, convolution and projection weights under ``precision``."""
    check_precision(precision)
    return _WEIGHT_DTYPES[precision]


def resolve_precision(precision: str, device: Union[str, torch.device], key: str = "PREC") -> str:
    """The precision a run on ``device`` uses for the configured ``precision`` (printed when it differs)."""
    check_precision(precision, key)
    device = torch.device(device)
    if precision == "fp16" and device.type == "cpu" and os.environ.get(CPU_FP16_SWITCH, "0") != "1":
        print(f"{key} fp16 on the CPU: running in fp32 instead (fp16 matrix products are several times slower "
              f"than fp32 on CPUs; {CPU_FP16_SWITCH}=1 runs fp16 as a GPU would, PREC bf16 is faster)")
        return "fp32"
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"{key} bf16 needs a GPU with bfloat16 support ({torch.cuda.get_device_name(device)} "
                         "has none); use fp16 or amp")
    if precision in ("bf16", "amp") and device.type == "cpu" and cpu_has_bf16_instructions() is False:
        _warn_slow_bf16(precision, key)
    return precision


def _warn_slow_bf16(precision: str, key: str) -> None:
    global _warned_slow_bf16
    if not _warned_slow_bf16:
        _warned_slow_bf16 = True
        print(f"Warning: {key} {precision} on this CPU, which has no bfloat16 instructions (no avx512_bf16, "
              "amx_bf16 or bf16 flag): PyTorch emulates bfloat16 here and the run will be slower than fp32; "
              "it goes on (fp32 is the faster choice on this machine)")


@functools.lru_cache(maxsize=None)
def cpu_flags() -> Optional[FrozenSet[str]]:
    """The CPU's feature flags (``flags`` on x86, ``Features`` on Arm) from /proc/cpuinfo; None where unreadable."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return None


def cpu_has_bf16_instructions() -> Optional[bool]:
    """Whether the CPU multiplies bfloat16 matrices in hardware (None: cannot tell, e.g. on macOS)."""
    flags = cpu_flags()
    if flags is not None:
        return bool(flags & _CPU_BF16_FLAGS)
    if platform.machine().lower() in ("x86_64", "amd64"):
        probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
        if all(probes):
            return any(probe() for probe in probes)
    return None


def low_precision_tensors(model: nn.Module) -> Iterator[Tensor]:
    """The tensors of a CLIP model that OpenAI's layout keeps in 16 bits (see the module docstring)."""
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            yield from (t for t in (module.weight, module.bias) if t is not None)
        if isinstance(module, nn.MultiheadAttention):
            yield from (t for t in (getattr(module, name) for name in _ATTENTION_TENSORS) if t is not None)
        for name in _OUTPUT_PROJECTIONS:
            tensor = getattr(module, name, None)
            if isinstance(tensor, Tensor):
                yield tensor


def set_clip_precision(model: nn.Module, precision: str) -> nn.Module:
    """Put ``model``'s weights in the layout of ``precision`` (in place; returns ``model``)."""
    dtype = weight_dtype(precision)
    model.float()
    if dtype != torch.float32:
        for tensor in low_precision_tensors(model):
            tensor.data = tensor.data.to(dtype)
        for module in model.modules():
            if getattr(module, WHOLE_TOWER_LOW_PRECISION, False):
                module.to(dtype)
    return model


def check_input_size(model: nn.Module, input_size: Sequence[int], key: str = "INPUT.SIZE") -> None:
    """Raise unless ``input_size`` is the image size CLIP's image encoder was built for."""
    resolution = model.visual.input_resolution
    if tuple(input_size) != (resolution, resolution):
        raise ValueError(f"{key} {tuple(input_size)} does not match the CLIP backbone's input resolution "
                         f"({resolution}, {resolution}); set {key} ({resolution}, {resolution})")


def load_frozen_clip(name: str, path: str, device: Union[str, torch.device], precision: str,
                     input_size: Optional[Sequence[int]] = None) -> nn.Module:
    """A frozen CLIP in eval mode on ``device`` in the weight layout of ``precision``.

    The weights are read and laid out on the CPU and moved to ``device`` once; ``input_size``
    (``INPUT.SIZE``), when given, must match the backbone's input resolution.
    """
    model = load_clip(name, path, device="cpu")
    if input_size is not None:
        check_input_size(model, input_size)
    set_clip_precision(model, precision)
    return model.requires_grad_(False).to(device).eval()


def compute_dtype(precision: str, device: Union[str, torch.device]) -> torch.dtype:
    """The dtype CLIP's matrix products run in: the weights' dtype, or autocast's for ``amp`` (float16
    on CUDA, bfloat16 elsewhere)."""
    if precision == "amp":
        return torch.float16 if torch.device(device).type == "cuda" else torch.bfloat16
    return weight_dtype(precision)


def autocast(precision: str, device: Union[str, torch.device]) -> ContextManager:
    """Autocast for ``amp``; no-op for the other precisions."""
    if precision != "amp":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=compute_dtype(precision, device))


def grad_scaler(precision: str, device: Union[str, torch.device]) -> Optional["torch.amp.GradScaler"]:
    """The loss scaler ``amp`` needs on CUDA (float16 gradients underflow without it); else None."""
    if precision == "amp" and torch.device(device).type == "cuda":
        return torch.amp.GradScaler("cuda")
    return None
