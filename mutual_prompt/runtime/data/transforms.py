"""Image transforms chosen by ``INPUT.TRANSFORMS``, with Dassl's names, order and printed lines.

Training: a resize to ``INPUT.SIZE`` unless a random crop sets the size, then the chosen
augmentations, ``ToTensor``, and the tensor-level steps. Testing: resize the shorter side to
``max(INPUT.SIZE)``, center crop to ``INPUT.SIZE``, ``ToTensor`` and normalisation. As in Dassl,
``center_crop`` is accepted but only the test pipeline crops. All randomness comes from ``torch``'s
generator, so seeding torch (and a loader's workers) makes the augmentations reproducible.
"""
from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torchvision.transforms.functional as F
from PIL import Image
from torchvision.transforms import (
    CenterCrop,
    ColorJitter,
    Compose,
    GaussianBlur,
    Normalize,
    RandomApply,
    RandomCrop,
    RandomGrayscale,
    RandomHorizontalFlip,
    RandomResizedCrop,
    Resize,
    ToTensor,
)
from torchvision.transforms.functional import InterpolationMode

INTERPOLATION_MODES = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}

AVAILABLE_TRANSFORMS = (
    "random_flip",
    "random_resized_crop",
    "normalize",
    "instance_norm",
    "random_crop",
    "random_translation",
    "center_crop",
    "cutout",
    "gaussian_noise",
    "colorjitter",
    "randomgrayscale",
    "gaussian_blur",
)

# Dassl's policy-based augmentations, which this runtime does not implement.
DASSL_ONLY_TRANSFORMS = (
    "imagenet_policy",
    "cifar10_policy",
    "svhn_policy",
    "randaugment",
    "randaugment_fixmatch",
    "randaugment2",
)


class RandomTranslation:
    """With probability ``p``, upscale to 1.125x the target size and crop a random target-sized
    window; otherwise resize to the target size (Dassl's ``Random2DTranslation``)."""

    def __init__(self, height: int, width: int, p: float = 0.5,
                 interpolation: InterpolationMode = InterpolationMode.BILINEAR) -> None:
        self.height = height
        self.width = width
        self.p = p
        self.interpolation = interpolation

    def __call__(self, img: Image.Image) -> Image.Image:
        if torch.rand(()).item() > self.p:
            return F.resize(img, [self.height, self.width], interpolation=self.interpolation)
        new_height = int(round(self.height * 1.125))
        new_width = int(round(self.width * 1.125))
        resized = F.resize(img, [new_height, new_width], interpolation=self.interpolation)
        top = int(round(torch.rand(()).item() * (new_height - self.height)))
        left = int(round(torch.rand(()).item() * (new_width - self.width)))
        return F.crop(resized, top, left, self.height, self.width)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size=({self.height}, {self.width}), p={self.p})"


class InstanceNormalization:
    """Normalise each channel of a (C, H, W) tensor by its own mean and standard deviation."""

    def __init__(self, eps: float = 1e-8) -> None:
        self.eps = eps

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        flat = img.reshape(img.shape[0], -1)
        mean = flat.mean(1).view(-1, 1, 1)
        std = flat.std(1).view(-1, 1, 1)
        return (img - mean) / (std + self.eps)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(eps={self.eps})"


class Cutout:
    """Zero ``n_holes`` square patches of side ``length`` at random centres of a (C, H, W) tensor."""

    def __init__(self, n_holes: int = 1, length: int = 16) -> None:
        self.n_holes = n_holes
        self.length = length

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[1], img.shape[2]
        mask = torch.ones(h, w, dtype=img.dtype)
        for _ in range(self.n_holes):
            y = int(torch.randint(h, ()).item())
            x = int(torch.randint(w, ()).item())
            half = self.length // 2
            mask[max(y - half, 0):min(y + half, h), max(x - half, 0):min(x + half, w)] = 0
        return img * mask

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_holes={self.n_holes}, length={self.length})"


class GaussianNoise:
    """With probability ``p``, add Gaussian noise of the given mean and std to a tensor."""

    def __init__(self, mean: float = 0.0, std: float = 0.15, p: float = 0.5) -> None:
        self.mean = mean
        self.std = std
        self.p = p

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if torch.rand(()).item() > self.p:
            return img
        return img + torch.randn(img.shape) * self.std + self.mean

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mean={self.mean}, std={self.std}, p={self.p})"


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
    for choice in choices:
        if choice in AVAILABLE_TRANSFORMS:
            continue
        if choice in DASSL_ONLY_TRANSFORMS:
            raise ValueError(
                f"INPUT.TRANSFORMS: '{choice}' needs the real Dassl toolbox (install Dassl.pytorch); the "
                f"built-in runtime supports: {', '.join(AVAILABLE_TRANSFORMS)}"
            )
        raise ValueError(
            f"INPUT.TRANSFORMS: unknown transform '{choice}'; expected any of: {', '.join(AVAILABLE_TRANSFORMS)}"
        )


def build_transform(cfg, is_train: bool = True, choices: Optional[Sequence[str]] = None) -> Optional[Compose]:
    """The training or test transform; ``choices`` overrides ``INPUT.TRANSFORMS``.

    Returns ``None`` when ``INPUT.NO_TRANSFORM`` is set, as Dassl does.
    """
    if cfg.INPUT.NO_TRANSFORM:
        print("Note: no transform is applied!")
        return None
    if choices is None:
        choices = cfg.INPUT.TRANSFORMS
    if isinstance(choices, str):
        raise ValueError(f"INPUT.TRANSFORMS must be a list of names, got the string {choices!r}")
    check_transform_names(choices)
    size = input_size(cfg)
    interp = interpolation_mode(cfg)
    normalize = Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD)
    if is_train:
        return _train_transform(cfg, choices, size, interp, normalize)
    return _test_transform(cfg, choices, size, interp, normalize)


def _train_transform(cfg, choices: Sequence[str], size: Tuple[int, int], interp: InterpolationMode,
                     normalize: Normalize) -> Compose:
    print("Building transform_train")
    steps: List[Callable] = []
    if "random_crop" not in choices and "random_resized_crop" not in choices:
        print(f"+ resize to {size[0]}x{size[1]}")
        steps.append(Resize(size, interpolation=interp))
    if "random_translation" in choices:
        print("+ random translation")
        steps.append(RandomTranslation(size[0], size[1], interpolation=interp))
    if "random_crop" in choices:
        print(f"+ random crop (padding = {cfg.INPUT.CROP_PADDING})")
        steps.append(RandomCrop(size, padding=cfg.INPUT.CROP_PADDING))
    if "random_resized_crop" in choices:
        scale = tuple(cfg.INPUT.RRCROP_SCALE)
        print(f"+ random resized crop (size={size}, scale={scale})")
        steps.append(RandomResizedCrop(size, scale=scale, interpolation=interp))
    if "random_flip" in choices:
        print("+ random flip")
        steps.append(RandomHorizontalFlip())
    if "colorjitter" in choices:
        b, c, s, h = (cfg.INPUT.COLORJITTER_B, cfg.INPUT.COLORJITTER_C, cfg.INPUT.COLORJITTER_S,
                      cfg.INPUT.COLORJITTER_H)
        print(f"+ color jitter (brightness={b}, contrast={c}, saturation={s}, hue={h})")
        steps.append(ColorJitter(brightness=b, contrast=c, saturation=s, hue=h))
    if "randomgrayscale" in choices:
        print("+ random gray scale")
        steps.append(RandomGrayscale(p=cfg.INPUT.RGS_P))
    if "gaussian_blur" in choices:
        print(f"+ gaussian blur (kernel={cfg.INPUT.GB_K})")
        steps.append(RandomApply([GaussianBlur(cfg.INPUT.GB_K)], p=cfg.INPUT.GB_P))
    print("+ to torch tensor of range [0, 1]")
    steps.append(ToTensor())
    if "cutout" in choices:
        print(f"+ cutout (n_holes={cfg.INPUT.CUTOUT_N}, length={cfg.INPUT.CUTOUT_LEN})")
        steps.append(Cutout(cfg.INPUT.CUTOUT_N, cfg.INPUT.CUTOUT_LEN))
    if "normalize" in choices:
        print(f"+ normalization (mean={cfg.INPUT.PIXEL_MEAN}, std={cfg.INPUT.PIXEL_STD})")
        steps.append(normalize)
    if "gaussian_noise" in choices:
        print(f"+ gaussian noise (mean={cfg.INPUT.GN_MEAN}, std={cfg.INPUT.GN_STD})")
        steps.append(GaussianNoise(cfg.INPUT.GN_MEAN, cfg.INPUT.GN_STD))
    if "instance_norm" in choices:
        print("+ instance normalization")
        steps.append(InstanceNormalization())
    return Compose(steps)


def _test_transform(cfg, choices: Sequence[str], size: Tuple[int, int], interp: InterpolationMode,
                    normalize: Normalize) -> Compose:
    print("Building transform_test")
    steps: List[Callable] = []
    print(f"+ resize the smaller edge to {max(size)}")
    steps.append(Resize(max(size), interpolation=interp))
    print(f"+ {size[0]}x{size[1]} center crop")
    steps.append(CenterCrop(size))
    print("+ to torch tensor of range [0, 1]")
    steps.append(ToTensor())
    if "normalize" in choices:
        print(f"+ normalization (mean={cfg.INPUT.PIXEL_MEAN}, std={cfg.INPUT.PIXEL_STD})")
        steps.append(normalize)
    if "instance_norm" in choices:
        print("+ instance normalization")
        steps.append(InstanceNormalization())
    return Compose(steps)


def no_augmentation_transform(cfg) -> Compose:
    """Resize to ``INPUT.SIZE`` and make a tensor, normalised when ``normalize`` is chosen.

    Used for ``img0`` (``DATALOADER.RETURN_IMG0``) and for images when ``INPUT.NO_TRANSFORM`` is set.
    """
    steps: List[Callable] = [Resize(input_size(cfg), interpolation=interpolation_mode(cfg)), ToTensor()]
    if "normalize" in cfg.INPUT.TRANSFORMS:
        steps.append(Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD))
    return Compose(steps)
