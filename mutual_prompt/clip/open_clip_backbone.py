"""open_clip backbones, ``MODEL.BACKBONE.NAME open_clip:<model>[/<pretrained tag>]``, as our CLIP.

The weights come from ``MODEL.BACKBONE.PATH`` (open_clip's ``open_clip_pytorch_model.bin`` state dict,
a ``.safetensors`` file, or any file ``load_clip`` reads) or, with a pretrained tag, from open_clip's
own cache (downloaded there by open_clip when the machine is online). ``open_clip`` is imported only
here and only when such a name is asked for; without the extra the error says how to install it.

What is built decides exactness. For a model config that is shaped like OpenAI's CLIP (open_clip's
``TextTransformer`` and ``VisionTransformer`` without layer scale, attentional pooling, other pooling
or normalisation, custom attention, with OpenAI's tokenizer and 77-token context), the weights are
loaded into OpenAI's ``CLIP`` class with the model's activation (``nn.GELU`` unless the config says
QuickGELU): the same class as for OpenAI's own weights, so ``PromptTextEncoder`` and
``PromptImageEncoder`` run on it unchanged. An image tower that is not open_clip's own ViT (a timm
model such as ConvNeXt, or ``ModifiedResNet``) is kept as open_clip built it and runs its own
forward beside OpenAI's text tower (:class:`OpenClipTowerCLIP`): zero-shot and FTP-only runs work,
visual prompts (TVP) need a ViT. Every other config feature is refused, naming it.
"""
import functools
import logging
import os
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor, nn

from ..names import close_matches
from .openai import tokenize
from .openai.model import CLIP, LayerNorm, Transformer, VisionTransformer

PREFIX = "open_clip:"
INSTALL_HINT = 'pip install -e ".[open_clip]"'
GELU, QUICK_GELU = "gelu", "quick_gelu"
HUB_WEIGHTS, HUB_SAFE_WEIGHTS = "open_clip_pytorch_model.bin", "open_clip_model.safetensors"  # open_clip's names
CONTEXT_LENGTH, VOCAB_SIZE, HEAD_WIDTH, MLP_RATIO = 77, 49408, 64, 4.0
# Strings tokenised by open_clip's and OpenAI's tokenizers, which must agree on every one.
TOKENIZER_PROBES = ("a photo of a X X X X dog.", "Crème brûlée, 3 D-printed   things!", "a centered satellite photo of "
                    "annual crop land.", "")
# Config values that leave the model OpenAI-shaped, each with the feature another value would be.
# None as the allowed value: the key must be absent or None.
_SHARED_DEFAULTS: Dict[str, Tuple[Any, str]] = {
    "mlp_ratio": (MLP_RATIO, "an MLP ratio other than 4"),
    "ls_init_value": (None, "layer scale"),
    "final_ln_after_pool": (False, "the final LayerNorm after pooling"),
    "output_tokens": (False, "token outputs"),
    "act_kwargs": (None, "activation arguments"),
    "norm_kwargs": (None, "LayerNorm arguments (e.g. another eps)"),
    "block_type": (None, "a custom attention block"),
    "qk_norm": (False, "query/key normalisation"),
    "scaled_cosine_attn": (False, "scaled cosine attention"),
    "scale_heads": (False, "per-head attention scales"),
    "scale_attn_inner": (False, "a LayerNorm inside attention"),
    "scale_attn": (False, "a LayerNorm after attention"),
    "scale_fc": (False, "a LayerNorm in the MLP"),
}
_VISION_DEFAULTS = {
    **_SHARED_DEFAULTS,
    "attentional_pool": (False, "the attentional pooler"),
    "no_ln_pre": (False, "no LayerNorm before the transformer"),
    "pos_embed_type": ("learnable", "another positional embedding"),
    "pool_type": ("tok", "pooling other than the class token"),
}
_TEXT_DEFAULTS = {
    **_SHARED_DEFAULTS,
    "context_length": (CONTEXT_LENGTH, "a context length other than OpenAI's 77 tokens"),
    "vocab_size": (VOCAB_SIZE, "a vocabulary other than OpenAI's BPE"),
    "hf_model_name": (None, "a Hugging Face text tower"),
    "hf_tokenizer_name": (None, "a Hugging Face tokenizer"),
    "tokenizer_mode": (None, "another tokenizer mode"),
    "tokenizer_kwargs": (None, "tokenizer arguments"),
    "embed_cls": (False, "a class token in the text tower"),
    "pad_id": (0, "another padding token"),
    "no_causal_mask": (False, "a text tower without the causal mask"),
    "pool_type": ("argmax", "pooling other than at the end-of-text token"),
    "proj_bias": (False, "a text projection with a bias"),
    "proj_type": ("linear", "another text projection"),
}
# Keys read here or with no effect on a frozen tower in eval mode (dropouts, stochastic depth).
_VISION_SIZES = {"image_size", "layers", "width", "head_width", "patch_size", "patch_dropout", "attn_pooler_queries",
                 "attn_pooler_heads"}
_TEXT_SIZES = {"width", "heads", "layers", "eos_id", "hf_model_pretrained", "hf_proj_type", "hf_pooler_type"}
# Set on a timm image tower: under fp16 / bf16 all of its weights take the 16-bit dtype, as open_clip lays
# timm towers out (OpenAI's layout keeps norms in float32, which timm's norms do not cast back from).
WHOLE_TOWER_LOW_PRECISION = "whole_tower_low_precision"
_TOP_LEVEL = {"embed_dim", "vision_cfg", "text_cfg", "quick_gelu", "custom_text"}
_TOP_LEVEL_FEATURES = {"init_logit_bias": "a logit bias (SigLIP)", "multimodal_cfg": "CoCa's text decoder",
                       "nonscalar_logit_scale": "a non-scalar logit scale"}


@dataclass(frozen=True)
class OpenClipName:
    """``open_clip:<model>[/<tag>]`` split into open_clip's model name and pretrained tag ("" for none)."""

    model: str
    tag: str = ""

    def __str__(self) -> str:
        return f"{PREFIX}{self.model}" + (f"/{self.tag}" if self.tag else "")


def is_open_clip_name(name: str) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX)


def parse_name(name: str) -> OpenClipName:
    model, _, tag = name[len(PREFIX):].partition("/")
    if not model:
        raise ValueError(f"MODEL.BACKBONE.NAME {name!r} names no open_clip model; expected open_clip:<model> "
                         "(e.g. open_clip:ViT-B-16) or open_clip:<model>/<pretrained tag>")
    return OpenClipName(model, tag)


def import_open_clip() -> ModuleType:
    """open_clip, or an ImportError that says how to install it."""
    try:
        import open_clip
    except ImportError as e:
        raise ImportError(f"MODEL.BACKBONE.NAME open_clip:<model> needs open_clip: {INSTALL_HINT} "
                          f"(open-clip-torch; {type(e).__name__}: {e})") from e
    return open_clip


def model_config(model: str) -> Dict[str, Any]:
    """open_clip's config of ``model``; ValueError with the closest of its names when it has none."""
    open_clip = import_open_clip()
    config = open_clip.get_model_config(model)
    if config is None:
        names = open_clip.list_models()
        close = close_matches(model, names)
        hint = f"did you mean {' or '.join(f'{PREFIX}{n}' for n in close)}? " if close else ""
        raise ValueError(f"Unknown open_clip model {model!r} (MODEL.BACKBONE.NAME {PREFIX}{model}): {hint}"
                         f"open_clip knows {len(names)} models, listed by open_clip.list_models()")
    return config


def _unsupported(node: str, values: Mapping[str, Any], defaults: Mapping[str, Tuple[Any, str]],
                 sizes: set) -> List[str]:
    found = []
    for key, value in values.items():
        if key in defaults:
            allowed, feature = defaults[key]
            if value != allowed and not (key == "block_type" and value == "default"):
                found.append(f"{feature} ({node}.{key} {value!r})")
        elif key not in sizes and not key.startswith("timm_"):
            found.append(f"{node}.{key} {value!r}")
    return found


def unsupported_features(config: Mapping[str, Any]) -> List[str]:
    """The features of an open_clip model config that are not built exactly here, in words."""
    found = [f"{feature} ({key})" for key, feature in _TOP_LEVEL_FEATURES.items() if config.get(key)]
    found += [f"config key {key!r}" for key in config if key not in _TOP_LEVEL and key not in _TOP_LEVEL_FEATURES]
    vision, text = config["vision_cfg"], config["text_cfg"]
    found += _unsupported("text_cfg", text, _TEXT_DEFAULTS, _TEXT_SIZES)
    if is_vit_config(config):  # other towers run their own forward, whatever their config
        found += _unsupported("vision_cfg", vision, _VISION_DEFAULTS, _VISION_SIZES)
    size = vision.get("image_size", 224)
    if isinstance(size, (list, tuple)) and len(set(size)) != 1:
        found.append(f"a non-square image (vision_cfg.image_size {size!r})")
    return found


def check_supported(name: OpenClipName, config: Mapping[str, Any]) -> None:
    found = unsupported_features(config)
    if found:
        raise ValueError(f"{name} is not supported: mutual-prompt builds open_clip models shaped like OpenAI's CLIP "
                         f"exactly, and this one has {'; '.join(found)} (docs/USAGE.md, open_clip backbones)")


def check_tokenizer(name: OpenClipName) -> None:
    """Raise unless open_clip's tokenizer for the model is OpenAI's (same tokens, 77-token context),
    which every prompt here is tokenised with."""
    found = _tokenizer_differs(name.model)
    if found:
        raise ValueError(f"{name} is not supported: its tokenizer ({found}) is not OpenAI's BPE with a 77-token "
                         "context, which mutual-prompt's prompts are built with")


@functools.lru_cache(maxsize=None)
def _tokenizer_differs(model: str) -> str:
    """"" when open_clip tokenises for ``model`` as OpenAI's tokenizer does, else its kind (once per model)."""
    open_clip = import_open_clip()
    tokenizer = open_clip.get_tokenizer(model)
    length = getattr(tokenizer, "context_length", None)
    if (isinstance(tokenizer, open_clip.tokenizer.SimpleTokenizer) and length == CONTEXT_LENGTH
            and torch.equal(tokenizer(list(TOKENIZER_PROBES)), tokenize(list(TOKENIZER_PROBES)))):
        return ""
    return f"{type(tokenizer).__name__}, context length {length}"


def is_vit_config(config: Mapping[str, Any]) -> bool:
    """Whether the image tower is open_clip's own VisionTransformer (not timm's, not ModifiedResNet)."""
    vision = config["vision_cfg"]
    return not vision.get("timm_model_name") and not isinstance(vision.get("layers"), (list, tuple))


def activation(name: OpenClipName, config: Mapping[str, Any]) -> str:
    """QUICK_GELU or GELU, as the model config says; ValueError when its pretrained tag was trained with
    the other one (open_clip only warns), naming the model that matches the tag."""
    used = QUICK_GELU if config.get("quick_gelu") else GELU
    if name.tag:
        trained = QUICK_GELU if pretrained_config(name).get("quick_gelu") else GELU
        if trained != used:
            other = (name.model[:-len("-quickgelu")] if used == QUICK_GELU else f"{name.model}-quickgelu")
            raise ValueError(f"{name}: the weights of tag {name.tag!r} were trained with {trained}, and the model "
                             f"config {name.model} builds {used}; use {PREFIX}{other}/{name.tag}")
    return used


def pretrained_config(name: OpenClipName) -> Dict[str, Any]:
    open_clip = import_open_clip()
    config = open_clip.get_pretrained_cfg(name.model, name.tag)
    if not config:
        tags = open_clip.list_pretrained_tags_by_model(name.model)
        raise ValueError(f"open_clip has no pretrained tag {name.tag!r} for {name.model} (MODEL.BACKBONE.NAME "
                         f"{name}); its tags: {tags or 'none'}")
    return config


def _hub_candidates(hf_hub: str) -> Tuple[str, List[str]]:
    """The Hugging Face repository of an ``hf_hub`` entry and the file names open_clip tries there, its
    safetensors file first."""
    repo, filename = os.path.split(hf_hub)
    if not filename or filename == HUB_WEIGHTS:
        return repo, [HUB_SAFE_WEIGHTS, HUB_WEIGHTS]
    stem, extension = os.path.splitext(filename)
    return repo, ([f"{stem}.safetensors"] if extension in (".bin", ".pth") else []) + [filename]


def cached_file(name: OpenClipName, cache_dir: str = "") -> Optional[str]:
    """The weights of ``name``'s tag in open_clip's cache (Hugging Face's or ``~/.cache/clip``), else None."""
    config = pretrained_config(name)
    if config.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache
        repo, filenames = _hub_candidates(config["hf_hub"])
        for filename in filenames:
            found = try_to_load_from_cache(repo, filename, cache_dir=cache_dir or None)
            if isinstance(found, str):
                return found
    if config.get("url"):
        path = os.path.join(cache_dir or os.path.expanduser("~/.cache/clip"), os.path.basename(config["url"]))
        if os.path.isfile(path):
            return path
    return None


def pretrained_file(name: OpenClipName, cache_dir: str = "") -> str:
    """The weights file of ``name``'s tag: from the cache, else downloaded by open_clip (online)."""
    found = cached_file(name, cache_dir)
    if found:
        return found
    config = pretrained_config(name)
    where = config.get("hf_hub") or config.get("url")
    try:
        return import_open_clip().download_pretrained(config, cache_dir=cache_dir or None)
    except Exception as e:  # open_clip and huggingface_hub raise many kinds when offline
        raise FileNotFoundError(
            f"Could not get the weights of {name}: they are not in open_clip's cache and downloading {where} "
            f"failed ({type(e).__name__}: {e}). Without internet access, set MODEL.BACKBONE.NAME {PREFIX}{name.model} "
            "and MODEL.BACKBONE.PATH to a local copy of the weights (open_clip_pytorch_model.bin or .safetensors)"
        ) from e


def open_clip_state_dict(state_dict: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """A state dict in OpenAI's key names: open_clip's ``custom_text`` keys (``text.*``) and DDP's
    ``module.`` prefix removed; the buffers open_clip does not save are dropped."""
    out = {}
    for key, value in state_dict.items():
        key = key[len("module."):] if key.startswith("module.") else key
        key = key[len("text."):] if key.startswith("text.") else key
        if key not in ("attn_mask", "input_resolution", "context_length", "vocab_size"):
            out[key] = value
    return out


class OpenClipTowerCLIP(CLIP):
    """OpenAI's CLIP text tower beside an open_clip image tower that is not a ViT (a timm model or
    ``ModifiedResNet``), which runs its own forward: ``encode_image`` is the tower's output. The tower
    gets ``input_resolution``, as OpenAI's towers have it."""

    def __init__(self, visual: nn.Module, image_size: int, embed_dim: int, text_width: int, text_heads: int,
                 text_layers: int) -> None:
        nn.Module.__init__(self)  # CLIP's own __init__ would build an image tower of its kind
        self.context_length = CONTEXT_LENGTH
        self.vocab_size = VOCAB_SIZE
        self.visual = visual
        self.visual.input_resolution = image_size
        self.transformer = Transformer(text_width, text_layers, text_heads, attn_mask=self.build_attention_mask())
        self.token_embedding = nn.Embedding(VOCAB_SIZE, text_width)
        self.positional_embedding = nn.Parameter(torch.empty(CONTEXT_LENGTH, text_width))
        self.ln_final = LayerNorm(text_width)
        self.text_projection = nn.Parameter(torch.empty(text_width, embed_dim))
        self.logit_scale = nn.Parameter(torch.ones([]))

    @property
    def dtype(self) -> torch.dtype:
        return self.text_projection.dtype

    def encode_image(self, image: Tensor) -> Tensor:
        first = next(m.weight for m in self.visual.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
        return self.visual(image.type(first.dtype))


def _random_open_clip_model(model: str) -> nn.Module:
    """open_clip's model with random weights, without its warning that no weights were loaded."""
    disabled = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        return import_open_clip().create_model(model, pretrained=None, device="cpu")
    finally:
        logging.disable(disabled)


def _load(model: nn.Module, state_dict: Mapping[str, Tensor], name: OpenClipName, source: str) -> None:
    """Load ``state_dict`` strictly; ValueError naming the file and the first keys that do not fit."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    shapes = [f"{key} {list(state_dict[key].shape)}, not {list(expected[key].shape)}" for key in expected
              if key in state_dict and state_dict[key].shape != expected[key].shape]
    problems = [f"{len(found)} {what} (first: {', '.join(found[:3])})"
                for what, found in (("missing keys", missing), ("unexpected keys", unexpected),
                                    ("tensors of other shapes", shapes)) if found]
    if problems:
        raise ValueError(f"{source} does not hold the weights of {name} (MODEL.BACKBONE.PATH): "
                         f"{'; '.join(problems)}")
    model.load_state_dict(state_dict, strict=True)


def _set_gelu(transformer: nn.Module) -> None:
    """OpenAI's blocks use QuickGELU; GELU models get torch's exact GELU, as open_clip builds them."""
    for block in transformer.resblocks:
        block.mlp.gelu = nn.GELU()


def checked_config(name: OpenClipName) -> Tuple[Dict[str, Any], str]:
    """open_clip's config of the model and its activation, once the model is known to be built exactly
    here (ValueError naming what is not); before any weights are looked for."""
    config = model_config(name.model)
    check_supported(name, config)
    check_tokenizer(name)
    return config, activation(name, config)


def build_open_clip(name: OpenClipName, state_dict: Mapping[str, Tensor], source: str) -> CLIP:
    """OpenAI's ``CLIP`` (or :class:`OpenClipTowerCLIP`) with ``state_dict``, fp32, eval mode."""
    config, used = checked_config(name)
    state_dict = open_clip_state_dict(state_dict)
    vision, text = config["vision_cfg"], config["text_cfg"]
    embed_dim, text_width = config["embed_dim"], text.get("width", 512)
    text_heads, text_layers = text.get("heads", 8), text.get("layers", 12)
    size = vision.get("image_size", 224)
    size = size if isinstance(size, int) else size[0]
    if is_vit_config(config):
        width, patch = vision.get("width", 768), vision.get("patch_size", 16)
        # CLIP's own image tower has width / 64 heads: built without layers, then replaced by open_clip's count
        model = CLIP(embed_dim, size, 0, width, patch, CONTEXT_LENGTH, VOCAB_SIZE, text_width, text_heads, text_layers)
        model.visual = VisionTransformer(size, patch, width, vision.get("layers", 12),
                                         width // vision.get("head_width", HEAD_WIDTH), embed_dim)
    else:
        tower = _random_open_clip_model(name.model).visual
        setattr(tower, WHOLE_TOWER_LOW_PRECISION, bool(vision.get("timm_model_name")))
        model = OpenClipTowerCLIP(tower, size, embed_dim, text_width, text_heads, text_layers)
    if used == GELU:
        _set_gelu(model.transformer)
        if is_vit_config(config):
            _set_gelu(model.visual.transformer)
    _load(model, state_dict, name, source)
    return model.float().eval()
