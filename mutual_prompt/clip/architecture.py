"""What a CLIP's weights are built for, and whether that is what ``MODEL.BACKBONE.NAME`` stands for.

:func:`architecture_of` reads the facts from a state dict the way OpenAI's ``build_model`` reads them
(tensor shapes and key counts; no model is built). ``OPENAI_ARCHITECTURES`` holds the facts of
OpenAI's nine backbones (``clip.model.CLIP``'s arguments for each released file; every one of them
round-trips through ``build_model``'s reading, see ``tests/test_clip_loader.py``).

:func:`check_name_against_weights` compares the two. The image tower (ViT or ResNet), the patch size
and the input resolution decide what a backbone name means in CoOp-style tables, so a difference there
is an error, and so are weights that are exactly another known backbone; the other sizes (depth,
widths, embedding) may differ, as in small test CLIPs shaped like a real one, with one printed line.
"""
import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch

VIT = "ViT"
RESNET = "ResNet"


@dataclass(frozen=True)
class Architecture:
    """The facts ``build_model`` reads from CLIP weights (``vision_layers``: an int for a ViT, the four
    stage depths for a ResNet; ``patch_size``: None for a ResNet)."""

    image_tower: str
    patch_size: Optional[int]
    resolution: int
    embed_dim: int
    vision_layers: Union[int, Tuple[int, ...]]
    vision_width: int
    text_width: int
    text_layers: int

    def describe(self) -> str:
        if self.image_tower == VIT:
            vision = (f"ViT patch {self.patch_size}, {self.resolution} px, width {self.vision_width}, "
                      f"{self.vision_layers} layers")
        else:
            vision = (f"ResNet {self.resolution} px, stages {'-'.join(map(str, self.vision_layers))}, "
                      f"width {self.vision_width}")
        return f"{vision}, embed {self.embed_dim}, text width {self.text_width}, {self.text_layers} layers"

    def to_json(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, value: Any) -> "Architecture":
        """The inverse of :meth:`to_json`; ValueError for anything else."""
        names = {field.name for field in dataclasses.fields(cls)}
        if not isinstance(value, dict) or set(value) != names:
            raise ValueError(f"not an architecture record: {value!r}")
        layers = value["vision_layers"]
        return cls(**dict(value, vision_layers=tuple(layers) if isinstance(layers, list) else layers))


def _vit(patch: int, resolution: int, embed: int, layers: int, width: int, text_width: int) -> Architecture:
    return Architecture(VIT, patch, resolution, embed, layers, width, text_width, 12)


def _resnet(resolution: int, embed: int, stages: Tuple[int, ...], width: int, text_width: int) -> Architecture:
    return Architecture(RESNET, None, resolution, embed, stages, width, text_width, 12)


OPENAI_ARCHITECTURES: Dict[str, Architecture] = {
    "RN50": _resnet(224, 1024, (3, 4, 6, 3), 64, 512),
    "RN101": _resnet(224, 512, (3, 4, 23, 3), 64, 512),
    "RN50x4": _resnet(288, 640, (4, 6, 10, 6), 80, 640),
    "RN50x16": _resnet(384, 768, (6, 8, 18, 8), 96, 768),
    "RN50x64": _resnet(448, 1024, (3, 15, 36, 10), 128, 1024),
    "ViT-B/32": _vit(32, 224, 512, 12, 768, 512),
    "ViT-B/16": _vit(16, 224, 512, 12, 768, 512),
    "ViT-L/14": _vit(14, 224, 768, 24, 1024, 768),
    "ViT-L/14@336px": _vit(14, 336, 768, 24, 1024, 768),
}
# A difference in these is another backbone; in the others, another size of the same one.
DEFINING_FACTS = ("image_tower", "patch_size", "resolution")
SIZE_FACTS = (("vision_layers", "vision layers"), ("vision_width", "vision width"), ("embed_dim", "embed"),
              ("text_width", "text width"), ("text_layers", "text layers"))


def _block_indices(state_dict: Mapping[str, torch.Tensor], prefix: str) -> int:
    """How many numbered blocks ``<prefix><i>.`` the keys hold."""
    return len({key[len(prefix):].split(".", 1)[0] for key in state_dict if key.startswith(prefix)})


def architecture_of(state_dict: Mapping[str, torch.Tensor]) -> Architecture:
    """The architecture ``build_model`` would build for ``state_dict`` (KeyError / IndexError when the
    keys are not CLIP's)."""
    text = dict(embed_dim=state_dict["text_projection"].shape[1], text_width=state_dict["ln_final.weight"].shape[0],
                text_layers=_block_indices(state_dict, "transformer.resblocks."))
    if "visual.proj" in state_dict:
        patch = state_dict["visual.conv1.weight"].shape[-1]
        grid = round((state_dict["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        layers = sum(1 for key in state_dict if key.startswith("visual.") and key.endswith(".attn.in_proj_weight"))
        return Architecture(VIT, patch, patch * grid, vision_layers=layers,
                            vision_width=state_dict["visual.conv1.weight"].shape[0], **text)
    stages = tuple(_block_indices(state_dict, f"visual.layer{stage}.") for stage in (1, 2, 3, 4))
    grid = round((state_dict["visual.attnpool.positional_embedding"].shape[0] - 1) ** 0.5)
    return Architecture(RESNET, None, 32 * grid, vision_layers=stages,
                        vision_width=state_dict["visual.layer1.0.conv1.weight"].shape[0], **text)


def architecture_name(architecture: Architecture, known: Mapping[str, Architecture]) -> str:
    """The name in ``known`` with exactly these facts, else the facts in words."""
    return next((name for name, facts in known.items() if facts == architecture), architecture.describe())


def size_differences(held: Architecture, named: Architecture) -> List[str]:
    return [f"{label} {getattr(held, fact)}, not {getattr(named, fact)}"
            for fact, label in SIZE_FACTS if getattr(held, fact) != getattr(named, fact)]


def check_name_against_weights(name: str, path: str, held: Architecture, known: Mapping[str, Architecture]) -> None:
    """Raise a ValueError when the weights in ``path`` are another backbone than ``name``; print one
    line when they are the same backbone in other sizes."""
    named = known[name]
    held_name = architecture_name(held, known)
    other_backbone = held_name in known and held_name != name
    if other_backbone or any(getattr(held, fact) != getattr(named, fact) for fact in DEFINING_FACTS):
        holds = f"{held_name} ({held.describe()})" if held_name in known else held.describe()
        remedy = (f"set MODEL.BACKBONE.NAME {held_name}" if held_name in known
                  else "set MODEL.BACKBONE.NAME '' to take the file's architecture")
        raise ValueError(f"MODEL.BACKBONE.NAME {name} does not match MODEL.BACKBONE.PATH {path}: the file holds "
                         f"{holds}, and {name} is {named.describe()}; {remedy}, or point MODEL.BACKBONE.PATH at "
                         f"{name} weights")
    differences = size_differences(held, named)
    if differences:
        print(f"Warning: MODEL.BACKBONE.PATH {path} holds a {name} of other sizes ({'; '.join(differences)}); "
              f"it is loaded as it is: {held.describe()}")
