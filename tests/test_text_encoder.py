"""PromptTextEncoder: the fast path against the plain computation, the zero-shot reduction,
gradients, class sets, precision, and that each speed-up really changes what is computed."""
import copy
import itertools

import pytest
import torch
from torch import nn

from helpers.clip_weights import tiny_clip
from mutual_prompt.clip import PromptTextEncoder, openai
from mutual_prompt.clip.openai.model import ResidualAttentionBlock
from mutual_prompt.clip.prefix_attention import block_step, causal_mask, check_block, prefix_key_values

WIDTH = 64
N_CTX = 4
CLIP_SHAPE = {"vision_layers": 2, "vision_width": WIDTH, "embed_dim": WIDTH, "text_width": WIDTH, "text_heads": 4,
              "text_layers": 2}  # tiny_clip's sizes: two layers of four heads in the text tower
# names of 1, 2, 8, 2 and 1 tokens, with underscore and multi-word names
CLASSNAMES = ["cat", "golden_retriever", "sea turtle resting on a sunny sandy beach", "Yorkshire terrier", "x"]


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """Tiny matrices: with several threads on a busy machine, thread hand-offs cost 100x the work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def clip_model() -> openai.model.CLIP:
    return tiny_clip(**CLIP_SHAPE)


def make_encoder(model: openai.model.CLIP, classnames=CLASSNAMES, n_ctx: int = N_CTX, **flags) -> PromptTextEncoder:
    encoder = PromptTextEncoder(model, n_ctx, **flags)
    encoder.set_classnames(classnames)
    return encoder


def random_context(*batch: int, n_ctx: int = N_CTX, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*batch, n_ctx, WIDTH, generator=generator).mul_(0.02).requires_grad_(True)


def features_and_grad(encode, ctx: torch.Tensor, weights: torch.Tensor):
    features = encode(ctx)
    (grad,) = torch.autograd.grad((features * weights).sum(), ctx)
    return features.detach(), grad


def convert_text_weights(model: openai.model.CLIP, dtype: torch.dtype) -> openai.model.CLIP:
    """A copy converted the way clip.load does for fp16 (LayerNorms and embeddings stay fp32)."""
    model = copy.deepcopy(model)
    openai.model.convert_weights(model)
    for parameter in model.parameters():
        if parameter.dtype == torch.float16:
            parameter.data = parameter.data.to(dtype)
    return model


FLAGS = [dict(truncate=t, shared_prefix=s, checkpoint=k) for t, s, k in itertools.product([True, False], repeat=3)]


@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: "-".join(k for k, v in f.items() if v) or "plain")
@pytest.mark.parametrize("batch", [(), (2,)], ids=["shared_ctx", "per_image_ctx"])
@pytest.mark.parametrize("chunk_size", [0, 5, 3])  # B x C is 5 or 10: 5 divides it, 3 does not
def test_fast_path_equals_reference(clip_model, flags, batch, chunk_size):
    encoder = make_encoder(clip_model, chunk_size=chunk_size, **flags)
    ctx = random_context(*batch)
    weights = torch.randn(*batch, len(CLASSNAMES), WIDTH, generator=torch.Generator().manual_seed(2))
    fast, fast_grad = features_and_grad(encoder, ctx, weights)
    reference, reference_grad = features_and_grad(encoder.forward_reference, ctx, weights)
    assert fast.shape == (*batch, len(CLASSNAMES), WIDTH)
    torch.testing.assert_close(fast, reference, atol=1e-5, rtol=0)
    # The context is small (std 0.02, like CLIP's token embeddings), so the first LayerNorm scales
    # its gradient up to ~1e2: compare at 1e-5 of the gradient's own magnitude.
    torch.testing.assert_close(fast_grad, reference_grad, atol=1e-5 * reference_grad.abs().max().item(), rtol=0)
    assert fast_grad.abs().sum() > 0


@pytest.mark.parametrize("n_ctx", [0, 1, 16])
def test_other_context_lengths(clip_model, n_ctx):
    encoder = make_encoder(clip_model, n_ctx=n_ctx, chunk_size=4)
    ctx = random_context(3, n_ctx=n_ctx)
    torch.testing.assert_close(encoder(ctx), encoder.forward_reference(ctx), atol=1e-5, rtol=0)


def test_zero_shot_reduction(clip_model):
    """Context from the words "a photo of a" gives exactly CLIP's "a photo of a {name}." features."""
    encoder = make_encoder(clip_model)
    with torch.no_grad():
        ctx = clip_model.token_embedding(openai.tokenize("a photo of a"))[0, 1:1 + N_CTX]
        names = [name.replace("_", " ") for name in CLASSNAMES]
        expected = clip_model.encode_text(openai.tokenize([f"a photo of a {name}." for name in names]))
        torch.testing.assert_close(encoder(ctx), expected, atol=1e-5, rtol=0)
        torch.testing.assert_close(encoder.forward_reference(ctx), expected, atol=1e-5, rtol=0)
        torch.testing.assert_close(encoder(ctx.expand(2, -1, -1)), expected.expand(2, -1, -1), atol=1e-5, rtol=0)


def test_clip_weights_are_frozen_and_get_no_grad():
    model = tiny_clip(**CLIP_SHAPE)
    encoder = make_encoder(model, checkpoint=True)
    assert all(not p.requires_grad for p in encoder.parameters())
    ctx = random_context(2)
    encoder(ctx).square().sum().backward()
    encoder.forward_reference(ctx).square().sum().backward()
    assert ctx.grad is not None and ctx.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())


def test_new_class_set_keeps_state_dict_keys(clip_model):
    encoder = make_encoder(clip_model)
    keys = set(encoder.state_dict())
    assert not keys & {"sos_embedding", "suffix_embeddings", "pad_embedding", "eot_positions"}
    assert encoder.num_classes == len(CLASSNAMES)

    encoder.set_classnames(["dog", "hot_air_balloon"])
    assert encoder.num_classes == 2
    assert set(encoder.state_dict()) == keys
    assert encoder(random_context()).shape == (2, WIDTH)

    other = make_encoder(copy.deepcopy(clip_model))
    other.load_state_dict(encoder.state_dict())
    assert other.num_classes == len(CLASSNAMES)


def test_truncated_length_is_longest_prompt(clip_model):
    encoder = make_encoder(clip_model)
    tokens = openai.tokenize([" ".join(["X"] * N_CTX + [name.replace("_", " ")]) + "." for name in CLASSNAMES])
    assert torch.equal(encoder.eot_positions, tokens.argmax(dim=-1))
    assert encoder.truncated_length == int(tokens.argmax(dim=-1).max()) + 1
    assert encoder.truncated_length == 1 + N_CTX + 8 + 2  # longest name has 8 tokens, then "." and EOT


def record_first_block_inputs(encoder: PromptTextEncoder):
    shapes = []
    handle = encoder.transformer.resblocks[0].ln_1.register_forward_hook(
        lambda module, inputs, output: shapes.append(tuple(inputs[0].shape)))
    return shapes, handle


@pytest.mark.parametrize("flags, expected", [
    (dict(truncate=True, shared_prefix=False), [(10, 15, WIDTH)]),
    (dict(truncate=False, shared_prefix=False), [(10, 77, WIDTH)]),
    (dict(truncate=True, shared_prefix=True), [(2, 5, WIDTH), (10, 10, WIDTH)]),
    (dict(truncate=False, shared_prefix=True), [(2, 5, WIDTH), (10, 72, WIDTH)]),
    (dict(truncate=True, shared_prefix=True, chunk_size=4), [(2, 5, WIDTH), (4, 10, WIDTH), (4, 10, WIDTH),
                                                             (2, 10, WIDTH)]),
])
def test_speedups_shape_the_computation(clip_model, flags, expected):
    """Truncation, the shared prefix and chunking change the sequences the blocks actually see."""
    encoder = make_encoder(clip_model, **flags)
    shapes, handle = record_first_block_inputs(encoder)
    with torch.no_grad():
        encoder(random_context(2))
    handle.remove()
    assert shapes == expected


@pytest.mark.parametrize("checkpoint", [False, True])
def test_checkpoint_recomputes_suffix_blocks_in_backward(clip_model, checkpoint):
    encoder = make_encoder(clip_model, chunk_size=4, checkpoint=checkpoint)
    shapes, handle = record_first_block_inputs(encoder)
    with torch.no_grad():
        encoder(random_context(2))
    assert len(shapes) == 1 + 3  # prefix, 3 chunks: no recomputation without grad
    shapes.clear()
    encoder(random_context(2)).sum().backward()
    handle.remove()
    assert len(shapes) == 1 + 3 + (3 if checkpoint else 0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_low_precision_is_close_to_fp32(clip_model, dtype):
    low = convert_text_weights(clip_model, dtype)
    try:
        encoder = make_encoder(low, chunk_size=4)
        ctx = random_context(2)
        features = encoder(ctx)
    except RuntimeError as err:
        pytest.skip(f"{dtype} not supported on this CPU: {err}")
    assert features.dtype == dtype
    expected = make_encoder(clip_model)(ctx).detach()
    scale = expected.abs().max()
    torch.testing.assert_close(features.float(), expected, atol=0.05 * scale, rtol=0)
    torch.testing.assert_close(features, encoder.forward_reference(ctx), atol=float(0.05 * scale), rtol=0)
    features.float().sum().backward()
    assert ctx.grad.dtype == torch.float32 and torch.isfinite(ctx.grad).all() and ctx.grad.abs().sum() > 0


def test_autocast_from_the_caller(clip_model):
    encoder = make_encoder(clip_model, chunk_size=4, checkpoint=True)
    ctx = random_context(2)
    expected = encoder(ctx).detach()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features = encoder(ctx)
        reference = encoder.forward_reference(ctx)
    assert features.dtype == torch.bfloat16
    scale = expected.abs().max()
    torch.testing.assert_close(features.float(), expected, atol=0.05 * scale, rtol=0)
    torch.testing.assert_close(features.float(), reference.float(), atol=0.05 * scale, rtol=0)
    features.float().sum().backward()
    assert ctx.grad.abs().sum() > 0


def test_prefix_then_suffix_equals_whole_sequence(clip_model):
    """The core identity: a block on [prefix ; suffix] equals the prefix run alone plus the suffix
    attending to the prefix's cached keys/values; with no prefix it equals CLIP's own block."""
    blocks = clip_model.transformer.resblocks
    x = torch.randn(3, 9, WIDTH)
    with torch.no_grad():
        whole = x
        for block in blocks:
            whole = block_step(block, whole, causal_mask(0, 9, x.device))
        cache = prefix_key_values(blocks, x[:, :4])
        suffix = x[:, 4:]
        for block, prefix in zip(blocks, cache):
            suffix = block_step(block, suffix, causal_mask(4, 5, x.device), prefix)
        torch.testing.assert_close(suffix, whole[:, 4:], atol=1e-5, rtol=0)

        clip_mask = torch.full((9, 9), float("-inf")).triu(1)
        block = blocks[0]
        h = x.permute(1, 0, 2)
        h = h + block.attn(block.ln_1(h), block.ln_1(h), block.ln_1(h), need_weights=False, attn_mask=clip_mask)[0]
        h = h + block.mlp(block.ln_2(h))
        torch.testing.assert_close(block_step(block, x, causal_mask(0, 9, x.device)), h.permute(1, 0, 2),
                                   atol=1e-5, rtol=0)


def test_causal_mask_layout():
    expected = torch.tensor([[1, 1, 1, 0, 0],
                             [1, 1, 1, 1, 0],
                             [1, 1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(causal_mask(2, 3, torch.device("cpu")), expected)


def test_bad_input_raises_clear_errors(clip_model):
    encoder = PromptTextEncoder(clip_model, N_CTX)
    with pytest.raises(RuntimeError, match="set_classnames"):
        encoder(random_context())
    with pytest.raises(ValueError, match="non-empty list"):
        encoder.set_classnames([])
    with pytest.raises(ValueError, match="non-empty list"):
        encoder.set_classnames("cat")
    with pytest.raises(ValueError, match="non-empty strings"):
        encoder.set_classnames(["cat", " _ "])
    with pytest.raises(ValueError, match="'very_long_name word.*context length of 77"):
        encoder.set_classnames(["cat", "very_long_name" + " word" * 80])
    encoder.set_classnames(CLASSNAMES)
    with pytest.raises(ValueError, match=r"shape \[4, 64\] or \[B, 4, 64\], got \[2, 3, 64\]"):
        encoder(torch.zeros(2, 3, WIDTH))
    with pytest.raises(ValueError, match="empty batch"):
        encoder(torch.zeros(0, N_CTX, WIDTH))
    with pytest.raises(ValueError, match="n_ctx"):
        PromptTextEncoder(clip_model, -1)
    with pytest.raises(ValueError, match="chunk_size"):
        PromptTextEncoder(clip_model, N_CTX, chunk_size=-2)
    block = ResidualAttentionBlock(WIDTH, 4)
    block.attn = nn.MultiheadAttention(WIDTH, 4, add_bias_kv=True)
    with pytest.raises(ValueError, match="bias_k"):
        check_block(block)
    block.attn = nn.Linear(WIDTH, WIDTH)
    with pytest.raises(TypeError, match="attn to be nn.MultiheadAttention, got Linear"):
        check_block(block)
    with pytest.raises(TypeError, match=r"mlp = \(c_fc, gelu, c_proj\)"):
        check_block(nn.Linear(WIDTH, WIDTH))
