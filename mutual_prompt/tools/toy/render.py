"""Seeded renderer of the toy world: coloured shapes on noisy backgrounds, with English captions.

Every image shows one shape of one colour (64 concepts = 8 colours x 8 shapes) at a random size,
position and small rotation, over a grey background with random brightness and pixel noise. All
randomness comes from the ``numpy.random.Generator`` the caller passes, so a seed fixes the pixels.

Pre-training renders this plain domain. A ``Domain`` changes the imaging conditions after the scene is
drawn (a colour cast of the light, lower contrast, blur); the ToyShapes dataset renders ``LAMPLIGHT``,
so that, as on real prompt-learning benchmarks, its images differ systematically from what the toy
CLIP saw in pre-training.

Concept labels follow ``CLASSNAMES``: the 32 "base" concepts first, then the 32 "new" ones. A concept
(colour i, shape j) is base when ``(i + j) % 8 < 4``, so each half holds every colour with four
shapes and every shape with four colours, and the new half is made of unseen *combinations* of
seen words.
"""
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

COLOURS: Dict[str, Tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 140, 20),
    "yellow": (240, 230, 40),
    "green": (40, 180, 50),
    "blue": (30, 70, 230),
    "purple": (140, 40, 190),
    "pink": (250, 130, 200),
    "white": (250, 250, 250),
}
SHAPES: List[str] = ["circle", "square", "triangle", "diamond", "hexagon", "star", "cross", "ring"]

# How far a rendered colour may stray from its reference, per channel.
COLOUR_JITTER = 18
SUPERSAMPLE = 4


def _concepts_in_label_order() -> List[Tuple[str, str]]:
    pairs = [(ci, si) for ci in range(len(COLOURS)) for si in range(len(SHAPES))]
    half = len(SHAPES) // 2
    base = [p for p in pairs if (p[0] + p[1]) % len(SHAPES) < half]
    new = [p for p in pairs if (p[0] + p[1]) % len(SHAPES) >= half]
    colour_names = list(COLOURS)
    return [(colour_names[ci], SHAPES[si]) for ci, si in base + new]


CONCEPTS: List[Tuple[str, str]] = _concepts_in_label_order()
CLASSNAMES: List[str] = [f"{colour} {shape}" for colour, shape in CONCEPTS]
NUM_CLASSES = len(CLASSNAMES)

CAPTION_TEMPLATES: List[str] = [
    "a photo of a {colour} {shape}.",
    "a photo of a {size} {colour} {shape}.",
    "a {colour} {shape}.",
    "a {size} {colour} {shape}.",
    "a {colour} {shape} {position}.",
    "a {size} {colour} {shape} {position}.",
    "a picture of a {colour} {shape}.",
    "a drawing of a {colour} {shape} on a grey background.",
    "there is a {colour} {shape} in the image.",
    "{colour} {shape}",
]


@dataclass(frozen=True)
class Domain:
    """Imaging conditions applied to a drawn scene, each image drawing its own strength and blur.

    ``light``: per-channel gain of the light (R, G, B), applied at a random strength in
    ``1 +- strength_jitter`` (gain ``1 - s * (1 - light)``); ``contrast``: the factor on every pixel's
    deviation from the image's mean colour (a haze); ``blur``: range of the Gaussian blur radius as
    a fraction of the image side.
    """

    name: str
    light: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    strength_jitter: float = 0.0
    contrast: float = 1.0
    blur: Tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        if len(self.light) != 3 or not all(0.0 < g <= 1.0 for g in self.light):
            raise ValueError(f"Domain {self.name!r}: light must be three gains in (0, 1], got {self.light}")
        if not 0.0 <= self.strength_jitter < 1.0:
            raise ValueError(f"Domain {self.name!r}: strength_jitter must be in [0, 1), got {self.strength_jitter}")
        if not 0.0 < self.contrast <= 1.0:
            raise ValueError(f"Domain {self.name!r}: contrast must be in (0, 1], got {self.contrast}")
        if len(self.blur) != 2 or not 0.0 <= self.blur[0] <= self.blur[1]:
            raise ValueError(f"Domain {self.name!r}: blur must be a range (low, high) with 0 <= low <= high, "
                             f"got {self.blur}")

    def apply(self, pixels: np.ndarray, rng: np.random.Generator) -> Image.Image:
        """The float RGB ``pixels`` (H, W, 3) as seen under these conditions."""
        strength = rng.uniform(1.0 - self.strength_jitter, 1.0 + self.strength_jitter)
        gain = 1.0 - strength * (1.0 - np.array(self.light))
        radius = rng.uniform(*self.blur) * pixels.shape[0]
        mean = pixels.mean(axis=(0, 1), keepdims=True)
        pixels = (mean + self.contrast * (pixels - mean)) * gain
        image = _to_image(pixels)
        return image.filter(ImageFilter.GaussianBlur(radius)) if radius > 0 else image


# A warm, dim lamp seen through a slightly soft lens: whites turn cream, blues darken, edges soften.
LAMPLIGHT = Domain("lamplight", light=(1.0, 0.85, 0.7), strength_jitter=0.15, contrast=0.8, blur=(0.028, 0.04))


@dataclass(frozen=True)
class ShapeScene:
    """What one rendered image shows, enough to caption it."""

    label: int
    colour: str
    shape: str
    size: str  # "small" or "large"
    position: str  # "on the left", "on the right", "at the top", "at the bottom", "in the middle"


def _polygon(n: int, radius: float, cx: float, cy: float, angle: float) -> List[Tuple[float, float]]:
    return [
        (cx + radius * math.cos(angle + 2 * math.pi * k / n), cy + radius * math.sin(angle + 2 * math.pi * k / n))
        for k in range(n)
    ]


def _star(radius: float, cx: float, cy: float, angle: float) -> List[Tuple[float, float]]:
    points = []
    for k in range(10):
        r = radius if k % 2 == 0 else radius * 0.42
        a = angle - math.pi / 2 + math.pi * k / 5
        points.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return points


def _cross(radius: float, cx: float, cy: float, angle: float) -> List[Tuple[float, float]]:
    arm = radius * 0.36
    outline = [(-arm, -radius), (arm, -radius), (arm, -arm), (radius, -arm), (radius, arm), (arm, arm),
               (arm, radius), (-arm, radius), (-arm, arm), (-radius, arm), (-radius, -arm), (-arm, -arm)]
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in outline]


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, radius: float, cx: float, cy: float, angle: float,
                fill: int) -> None:
    if shape == "circle":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=fill)
    elif shape == "ring":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=fill)
        inner = radius * 0.55
        draw.ellipse([cx - inner, cy - inner, cx + inner, cy + inner], fill=0)
    elif shape == "square":
        draw.polygon(_polygon(4, radius * 1.2, cx, cy, angle + math.pi / 4), fill=fill)
    elif shape == "diamond":
        draw.polygon(_polygon(4, radius, cx, cy, angle), fill=fill)
    elif shape == "triangle":
        draw.polygon(_polygon(3, radius * 1.15, cx, cy + radius * 0.15, angle - math.pi / 2), fill=fill)
    elif shape == "hexagon":
        draw.polygon(_polygon(6, radius, cx, cy, angle), fill=fill)
    elif shape == "star":
        draw.polygon(_star(radius * 1.1, cx, cy, angle), fill=fill)
    elif shape == "cross":
        draw.polygon(_cross(radius, cx, cy, angle), fill=fill)
    else:
        raise ValueError(f"Unknown shape {shape!r}; expected one of {SHAPES}")


def _position_word(cx: float, cy: float, size: int) -> str:
    dx, dy = cx / size - 0.5, cy / size - 0.5
    if max(abs(dx), abs(dy)) < 0.12:
        return "in the middle"
    if abs(dx) >= abs(dy):
        return "on the left" if dx < 0 else "on the right"
    return "at the top" if dy < 0 else "at the bottom"


def _to_image(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8), "RGB")


def render(label: int, rng: np.random.Generator, size: int = 32,
           domain: Optional[Domain] = None) -> Tuple[Image.Image, ShapeScene]:
    """Draw concept ``label`` as a ``size`` x ``size`` RGB image; returns the image and its scene.

    With a ``domain`` the same scene (the same first draws from ``rng``) is drawn, then seen under
    the domain's conditions, which draw from ``rng`` after the scene.
    """
    if not 0 <= label < NUM_CLASSES:
        raise ValueError(f"label must be in [0, {NUM_CLASSES}), got {label}")
    if size < 16:
        raise ValueError(f"image size must be at least 16 pixels, got {size}")
    colour, shape = CONCEPTS[label]

    radius = rng.uniform(0.2, 0.4) * size
    margin = radius * 1.15
    cx = rng.uniform(margin, size - margin)
    cy = rng.uniform(margin, size - margin)
    angle = rng.uniform(-0.25, 0.25)
    fill = np.clip(np.array(COLOURS[colour]) + rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, 3), 0, 255)
    brightness = rng.uniform(60, 150)
    noise = rng.normal(0.0, 14.0, (size, size, 3))

    big = size * SUPERSAMPLE
    mask = Image.new("L", (big, big), 0)
    _draw_shape(ImageDraw.Draw(mask), shape, radius * SUPERSAMPLE, cx * SUPERSAMPLE, cy * SUPERSAMPLE,
                angle, fill=255)
    alpha = np.asarray(mask.resize((size, size), Image.BOX), dtype=np.float64)[..., None] / 255.0

    background = brightness + noise
    foreground = fill[None, None, :] + 0.5 * noise
    pixels = alpha * foreground + (1.0 - alpha) * background
    image = _to_image(pixels) if domain is None else domain.apply(pixels, rng)
    scene = ShapeScene(
        label=label,
        colour=colour,
        shape=shape,
        size="small" if radius < 0.3 * size else "large",
        position=_position_word(cx, cy, size),
    )
    return image, scene


def caption(scene: ShapeScene, rng: np.random.Generator) -> str:
    """One plain-English caption of ``scene``, drawn from ``CAPTION_TEMPLATES``."""
    template = CAPTION_TEMPLATES[rng.integers(len(CAPTION_TEMPLATES))]
    return template.format(colour=scene.colour, shape=scene.shape, size=scene.size, position=scene.position)


def render_batch(labels: Sequence[int], rng: np.random.Generator, size: int = 32) -> Tuple[np.ndarray, List[str]]:
    """Images (N, size, size, 3) uint8 and one caption each, for training."""
    images = np.empty((len(labels), size, size, 3), dtype=np.uint8)
    captions = []
    for i, label in enumerate(labels):
        image, scene = render(int(label), rng, size)
        images[i] = np.asarray(image)
        captions.append(caption(scene, rng))
    return images, captions
