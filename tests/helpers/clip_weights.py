"""The tests' one tiny-CLIP builder, and its weights written in OpenAI's two file formats.

``tiny_clip()`` with no arguments is shaped like the toy CLIP, smaller: a ViT with patch 8 on 32-pixel
images, one 64-wide layer in each tower, 64-dim embeddings, clip's 77-token context and vocabulary.
Each argument changes one size; the weights are drawn from ``torch.manual_seed(seed)``, so a shape and
a seed always give the same model.
"""
import warnings
from typing import Optional, Tuple, Union

import torch

from mutual_prompt.clip import openai

# Two-layer towers whose every weight matters (CLIP's init leaves attention, LayerNorm and BatchNorm biases
# at zero, LayerNorm weights at one): the model of the exactness tests against plain computations.
PERTURBED = {"vision_layers": 2, "text_layers": 2, "perturb": 0.02}


def tiny_clip(resolution: int = 32, patch: Optional[int] = 8, vision_layers: Union[int, Tuple[int, ...]] = 1, *,
              vision_width: int = 64, embed_dim: int = 64, text_width: int = 64, text_heads: int = 1,
              text_layers: int = 1, context_length: int = 77, vocab_size: int = 49408, seed: int = 0,
              perturb: float = 0.0) -> openai.model.CLIP:
    """A random-weight fp32 CLIP in eval mode, built by clip's own model code.

    ``vision_layers`` as a 4-tuple gives clip's ModifiedResNet image tower (``patch`` is then unused),
    an int a ViT of that depth. With ``perturb`` > 0 the weights are drawn again
    (``initialize_parameters``) and each moved by Gaussian noise of that standard deviation.
    """
    torch.manual_seed(seed)
    model = openai.model.CLIP(embed_dim=embed_dim, image_resolution=resolution, vision_layers=vision_layers,
                              vision_width=vision_width, vision_patch_size=patch, context_length=context_length,
                              vocab_size=vocab_size, transformer_width=text_width, transformer_heads=text_heads,
                              transformer_layers=text_layers)
    if perturb:
        model.initialize_parameters()
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(torch.randn_like(parameter) * perturb)
    return model.eval()


def save_state_dict(model: openai.model.CLIP, path) -> str:
    """``model``'s weights in fp16 in a plain ``torch.save`` state dict (OpenAI's key names and dtype, as
    CoOp users save them); returns the path as a string."""
    torch.save({k: v.half() for k, v in model.state_dict().items()}, str(path))
    return str(path)


def save_jit_archive(model: openai.model.CLIP, path, half: bool) -> str:
    """``model`` traced and saved as a TorchScript archive like OpenAI's released files (in fp16 when
    ``half``, as those are); returns the path as a string."""
    size = model.visual.input_resolution
    example = (torch.zeros(1, 3, size, size), openai.tokenize(["a photo of a cat."]))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's warnings about building the file
        traced = torch.jit.trace(model, example)
    if half:
        traced.half()
    traced.save(str(path))
    return str(path)
