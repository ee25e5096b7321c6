"""Image transforms chosen by ``INPUT.TRANSFORMS``, with Dassl's names, order and printed lines
(which go to log.txt, and to the terminal with ``train.py --verbose``).

Training: a resize to ``INPUT.SIZE`` unless ``random_resized_crop`` sets the size, then the random
flip, ``ToTensor`` and normalisation. Testing: resize the shorter side to ``max(INPUT.SIZE)``, center
crop to ``INPUT.SIZE``, ``ToTensor`` and normalisation. As in Dassl, ``center_crop`` is accepted but
only the test pipeline crops. All randomness comes from ``torch``'s generator, so seeding torch (and a
loader's workers) makes the augmentations reproducible.
"""
from typing import Callable, List, Optional, Sequence, Tuple

from torchvision.transforms import (
    CenterCrop,
    Compose,
    Normalize,
    RandomHorizontalFlip,
    RandomResizedCrop,
    Resize,
    ToTensor,
)
from torchvision.transforms.functional import InterpolationMode

from ...run.console import detail

INTERPOLATION_MODES = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}

# The names of INPUT.TRANSFORMS that CoOp, CoCoOp, MaPLe and PromptSRC use, and center_crop, which
# names what the test transform always does (as in Dassl).
AVAILABLE_TRANSFORMS = ("random_resized_crop", "random_flip", "normalize", "center_crop")

# Dassl's other transforms, which this runtime does not implement.
DASSL_ONLY_TRANSFORMS = (
    "random_crop",
    "random_translation",
    "instance_norm",
    "cutout",
    "gaussian_noise",
    "colorjitter",
    "randomgrayscale",
    "gaussian_blur",
    "imagenet_policy",
    "cifar10_policy",
    "svhn_policy",
    "randaugment",
    "randaugment_fixmatch",
    "randaugment2",
)


def interpolation_mode(cfg) -> InterpolationMode:
    name = cfg.INPUT.INTERPOLATION
    if name not in INTERPOLATION_MODES:
        raise ValueError(
            f"INPUT.INTERPOLATION '{name}' is not supported; expected one of: {', '.join(INTERPOLATION_MODES)}"
        )
    return INTERPOLATION_MODES[name]


def input_size(cfg) -> Tuple[int, int]:
    """``INPUT.SIZE`` as (height, width), checked."""
    size = cfg.INPUT.SIZE
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
    ):
        raise ValueError(f"INPUT.SIZE must be two positive integers (height, width), got {size!r}")
    return int(size[0]), int(size[1])


def check_transform_names(choices: Sequence[str]) -> None:
    """``ValueError`` naming the first of ``choices`` (``INPUT.TRANSFORMS``) that this runtime lacks."""
    if isinstance(choices, str):
        raise ValueError(f"INPUT.TRANSFORMS must be a list of names, got the string {choices!r}")
    for choice in choices:
        if choice in AVAILABLE_TRANSFORMS:
            continue
        if choice in DASSL_ONLY_TRANSFORMS:
            raise ValueError(
                f"INPUT.TRANSFORMS: '{choice}' is a Dassl transform that the built-in runtime does not implement; "
                f"install Dassl.pytorch to use it. The built-in runtime implements: {', '.join(AVAILABLE_TRANSFORMS)}"
            )
        raise ValueError(
            f"INPUT.TRANSFORMS: unknown transform '{choice}'; expected any of: {', '.join(AVAILABLE_TRANSFORMS)}"
        )


def build_transform(cfg, is_train: bool = True, choices: Optional[Sequence[str]] = None) -> Compose:
    """The training or test transform; ``choices`` overrides ``INPUT.TRANSFORMS``."""
    if choices is None:
        choices = cfg.INPUT.TRANSFORMS
    check_transform_names(choices)
    size = input_size(cfg)
    interp = interpolation_mode(cfg)
    normalize = Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD)
    if is_train:
        return _train_transform(cfg, choices, size, interp, normalize)
    return _test_transform(cfg, choices, size, interp, normalize)


def _train_transform(cfg, choices: Sequence[str], size: Tuple[int, int], interp: InterpolationMode,
                     normalize: Normalize) -> Compose:
    detail("Building transform_train")
    steps: List[Callable] = []
    if "random_resized_crop" in choices:
        scale = tuple(cfg.INPUT.RRCROP_SCALE)
        detail(f"+ random resized crop (size={size}, scale={scale})")
        steps.append(RandomResizedCrop(size, scale=scale, interpolation=interp))
    else:
        detail(f"+ resize to {size[0]}x{size[1]}")
        steps.append(Resize(size, interpolation=interp))
    if "random_flip" in choices:
        detail("+ random flip")
        steps.append(RandomHorizontalFlip())
    return Compose(steps + _tensor_steps(cfg, choices, normalize))


def _test_transform(cfg, choices: Sequence[str], size: Tuple[int, int], interp: InterpolationMode,
                    normalize: Normalize) -> Compose:
    detail("Building transform_test")
    steps: List[Callable] = []
    detail(f"+ resize the smaller edge to {max(size)}")
    steps.append(Resize(max(size), interpolation=interp))
    detail(f"+ {size[0]}x{size[1]} center crop")
    steps.append(CenterCrop(size))
    return Compose(steps + _tensor_steps(cfg, choices, normalize))


def _tensor_steps(cfg, choices: Sequence[str], normalize: Normalize) -> List[Callable]:
    """The steps that end both transforms: to a tensor in [0, 1], then normalisation if chosen."""
    detail("+ to torch tensor of range [0, 1]")
    steps: List[Callable] = [ToTensor()]
    if "normalize" in choices:
        detail(f"+ normalization (mean={cfg.INPUT.PIXEL_MEAN}, std={cfg.INPUT.PIXEL_STD})")
        steps.append(normalize)
    return steps
