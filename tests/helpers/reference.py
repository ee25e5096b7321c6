"""Plain CoCoOp-style computations with clip's own modules, which the method's fast paths are checked
against, and the class names and tolerance of those checks."""
import torch
import torch.nn.functional as F

from mutual_prompt.clip import tokenize

CLASSNAMES = ["red circle", "blue_square", "a very long class name with many words", "star"]
TOL = 1e-5


def reference_text_features(model, ctx_per_image, classnames):
    """CoCoOp-style plain computation: per image, full 77-token prompts through clip's own modules,
    in the dtype of CLIP's weights (``model.dtype``), as CoCoOp's prompt learner and text encoder."""
    n_ctx = ctx_per_image.shape[1]
    prompts = [" ".join(["X"] * n_ctx) + " " + name.replace("_", " ") + "." for name in classnames]
    tokens = tokenize(prompts)
    with torch.no_grad():
        embedding = model.token_embedding(tokens)
    out = []
    for ctx in ctx_per_image:
        x = torch.cat([embedding[:, :1], ctx.unsqueeze(0).expand(len(classnames), -1, -1), embedding[:, 1 + n_ctx :]], dim=1)
        x = x.type(model.dtype) + model.positional_embedding.type(model.dtype)
        x = model.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        x = model.ln_final(x).type(model.dtype)
        x = x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)] @ model.text_projection
        out.append(F.normalize(x, dim=-1))
    return torch.stack(out)


def reference_logits(model, images, ctx_per_image, classnames, image_features=None):
    x = image_features if image_features is not None else F.normalize(model.encode_image(images), dim=-1)
    text = reference_text_features(model, ctx_per_image, classnames)
    return model.logit_scale.exp() * torch.stack([text[b] @ x[b] for b in range(len(x))])


def clip_blocks_with_prompts(visual, images, prompts):
    """CLIP's own ViT (sequence-first blocks) with prompt tokens appended before ``ln_pre``;
    ``prompts`` [DEPTH, B, P, width] replace the prompt outputs at the input of layers 1..DEPTH-1."""
    deep = prompts.dim() == 4
    x = visual.conv1(images).flatten(2).permute(0, 2, 1)
    x = torch.cat([visual.class_embedding + torch.zeros(len(images), 1, x.shape[-1]), x], dim=1)
    x = x + visual.positional_embedding
    n_tokens = x.shape[1]
    x = visual.ln_pre(torch.cat([x, prompts[0] if deep else prompts], dim=1)).permute(1, 0, 2)
    for i, block in enumerate(visual.transformer.resblocks):
        if deep and 0 < i < len(prompts):
            x = torch.cat([x[:n_tokens], prompts[i].permute(1, 0, 2)])
        x = block(x)
    return visual.ln_post(x[0]) @ visual.proj
