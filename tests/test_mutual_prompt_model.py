"""MutualPromptCLIP: the exact reductions of docs/METHOD.md, trainable parameters, FTP/TVP behaviour."""
import pytest
import torch
import torch.nn.functional as F

from helpers.clip_weights import PERTURBED, tiny_clip
from helpers.method_arguments import arguments
from helpers.reference import CLASSNAMES, TOL, clip_blocks_with_prompts, reference_logits
from mutual_prompt.clip import PromptImageEncoder, tokenize
from mutual_prompt.method import FineGrainedTextPrompt, MutualPromptCLIP, TextReorganizedVisualPrompt


@pytest.fixture(scope="module")
def clip_model():
    return tiny_clip(**PERTURBED)


def test_ftp_shared_tvp_off_equals_cocoop(clip_model, images):
    torch.manual_seed(2)
    mp = MutualPromptCLIP(clip_model, CLASSNAMES, **arguments(ftp_mode="shared", tvp_enabled=False))
    meta = mp.prompt_learner.ftp.meta_net
    assert [n for n, _ in meta.named_children()] == ["linear1", "relu", "linear2"]  # CoCoOp's meta-net
    with torch.no_grad():
        logits = mp(images)
        x0 = F.normalize(clip_model.encode_image(images), dim=-1)
        bias = meta(x0).unsqueeze(1)  # CoCoOp: the same bias on every context token
        ctx = mp.prompt_learner.ctx.unsqueeze(0) + bias
        expected = reference_logits(clip_model, images, ctx, CLASSNAMES, x0)
    assert torch.allclose(logits, expected, atol=TOL, rtol=0)


def test_ftp_none_tvp_off_equals_coop_unified_context(clip_model, images):
    torch.manual_seed(3)
    mp = MutualPromptCLIP(clip_model, CLASSNAMES, **arguments(ctx_init="", n_ctx=6, ftp_mode="none", tvp_enabled=False))
    with torch.no_grad():
        mp.prompt_learner.ctx.normal_(std=0.5)
        ctx = mp.prompt_learner.ctx.unsqueeze(0).expand(len(images), -1, -1)
        expected = reference_logits(clip_model, images, ctx, CLASSNAMES)
        assert torch.allclose(mp(images), expected, atol=TOL, rtol=0)


def test_ftp_none_tvp_off_from_a_photo_of_a_equals_zero_shot_clip(clip_model, images):
    mp = MutualPromptCLIP(clip_model, CLASSNAMES,
                          **arguments(ctx_init="a photo of a", ftp_mode="none", tvp_enabled=False))
    with torch.no_grad():
        x = F.normalize(clip_model.encode_image(images), dim=-1)
        t = F.normalize(clip_model.encode_text(tokenize([f"a photo of a {c.replace('_', ' ')}." for c in CLASSNAMES])), dim=-1)
        expected = clip_model.logit_scale.exp() * x @ t.t()
        assert torch.allclose(mp(images), expected, atol=TOL, rtol=0)


def test_full_model_matches_the_plain_computation(clip_model, images):
    torch.manual_seed(4)
    mp = MutualPromptCLIP(clip_model, CLASSNAMES, **arguments(ftp_mode="fine", tvp_enabled=True, tvp_topk=2))
    with torch.no_grad():
        torch.nn.init.normal_(mp.prompt_learner.tvp.proj.weight, std=0.05)
        x0 = F.normalize(clip_model.encode_image(images), dim=-1)
        prompts = mp.prompt_learner.tvp(x0)
        x = F.normalize(PromptImageEncoder(clip_model.visual)(images, prompts), dim=-1)
        ctx = mp.prompt_learner.ctx.unsqueeze(0) + mp.prompt_learner.ftp(x0)
        expected = reference_logits(clip_model, images, ctx, CLASSNAMES, x)
        assert torch.allclose(mp(images), expected, atol=TOL, rtol=0)


def test_only_prompt_modules_train_and_receive_gradients(clip_model, images):
    mp = MutualPromptCLIP(clip_model, CLASSNAMES, **arguments(ftp_mode="fine", tvp_enabled=True, tvp_depth=2))
    mp(images).logsumexp(-1).sum().backward()
    trainable = {n for n, p in mp.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("prompt_learner.") for n in trainable)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in mp.named_parameters() if n in trainable and "tvp.proj" not in n)
    assert all(p.grad is None for p in clip_model.parameters())
    mp.zero_grad()


def test_fine_gives_m_different_semantics_and_shared_gives_one():
    torch.manual_seed(5)
    x0 = F.normalize(torch.randn(2, 64), dim=-1)
    fine = FineGrainedTextPrompt(64, 32, 4, "fine")(x0)
    shared = FineGrainedTextPrompt(64, 32, 4, "shared")(x0)
    assert fine.shape == shared.shape == (2, 4, 32)
    assert all(not torch.allclose(fine[:, i], fine[:, j]) for i in range(4) for j in range(i + 1, 4))
    assert all(torch.equal(shared[:, 0], shared[:, j]) for j in range(4))
    assert FineGrainedTextPrompt(64, 32, 4, "none")(x0) is None


def test_tvp_top_k_softmax_reorganisation_by_hand():
    torch.manual_seed(6)
    t = F.normalize(torch.randn(3, 8), dim=-1)
    tvp = TextReorganizedVisualPrompt(8, 16, n_tokens=2, depth=1, topk=5, temp=0.5)  # topk capped at C = 3
    tvp.set_class_text_features(t)
    x0 = F.normalize(torch.randn(2, 8), dim=-1)
    w = torch.softmax((x0 @ t.t()) / 0.5, dim=-1)
    assert torch.allclose(tvp.reorganised_text(x0), w @ t, atol=1e-6)
    tvp.topk = 1
    assert torch.allclose(tvp.reorganised_text(x0), t[(x0 @ t.t()).argmax(-1)], atol=1e-6)
    with torch.no_grad():
        tvp.proj.weight.normal_()
    p = tvp(x0)
    r = tvp.reorganised_text(x0)
    assert p.shape == (2, 2, 16)
    assert torch.allclose(p, tvp.base_tokens[0] + (r @ tvp.proj.weight.t() + tvp.proj.bias).view(2, 2, 16), atol=1e-6)


def test_image_encoder_unprompted_is_clip_and_prompts_are_appended(clip_model, images):
    enc = PromptImageEncoder(clip_model.visual)
    with torch.no_grad():
        assert torch.allclose(enc(images), clip_model.encode_image(images), atol=TOL, rtol=0)
        prompts = torch.randn(3, 2, 64) * 0.1
        expected = clip_blocks_with_prompts(clip_model.visual, images, prompts)
        assert torch.allclose(enc(images, prompts), expected, atol=TOL, rtol=0)
        deep = torch.randn(2, 3, 2, 64) * 0.1
        assert torch.allclose(enc(images, deep), clip_blocks_with_prompts(clip_model.visual, images, deep),
                              atol=TOL, rtol=0)
        assert not torch.allclose(enc(images, deep), enc(images, deep[0]))  # layer 1 gets fresh tokens
        deep_same_first = deep.clone()
        deep_same_first[1] = 5.0
        assert not torch.allclose(enc(images, deep), enc(images, deep_same_first))


def test_image_encoder_gradients_reach_the_prompts_as_through_clips_blocks(clip_model, images):
    enc = PromptImageEncoder(clip_model.visual)
    prompts = (torch.randn(2, 3, 2, 64) * 0.1).requires_grad_()
    reference = prompts.detach().clone().requires_grad_()
    enc(images, prompts).square().sum().backward()
    clip_blocks_with_prompts(clip_model.visual, images, reference).square().sum().backward()
    assert prompts.grad.abs().sum() > 0
    assert torch.allclose(prompts.grad, reference.grad, atol=TOL, rtol=1e-4)
    assert all(p.grad is None for p in clip_model.parameters())


def test_new_class_set_keeps_checkpoint_keys_and_shapes(clip_model, images):
    mp = MutualPromptCLIP(clip_model, CLASSNAMES, **arguments(ftp_mode="fine", tvp_enabled=True))
    before = {k: v.shape for k, v in mp.prompt_learner.state_dict().items()}
    mp.set_classnames(["green star", "pink ring"])
    after = {k: v.shape for k, v in mp.prompt_learner.state_dict().items()}
    assert before == after
    assert mp(images).shape == (3, 2)


def test_cached_classifier_equals_uncached_and_follows_context_changes(clip_model, images):
    mp = MutualPromptCLIP(clip_model, CLASSNAMES, **arguments(ftp_mode="none", tvp_enabled=True))
    with torch.no_grad():
        cached = mp(images)
        assert mp._classifier_cache is not None
        assert torch.equal(mp(images), cached)
        mp.prompt_learner.ctx.normal_(std=1.0)  # in place, like an optimizer step or load_state_dict
        changed = mp(images)
    uncached = mp(images).detach()
    assert not torch.allclose(changed, cached, atol=1e-3)
    assert torch.allclose(changed, uncached, atol=TOL)


def test_resnet_backbone_uses_clips_image_encoder_and_refuses_visual_prompts(images):
    rn = tiny_clip(32, None, (1, 1, 1, 1), vision_width=16, seed=7)
    mp = MutualPromptCLIP(rn, CLASSNAMES, **arguments(ftp_mode="shared", tvp_enabled=False))
    assert mp.image_encoder is None
    with torch.no_grad():
        x0 = F.normalize(rn.encode_image(images), dim=-1)
        ctx = mp.prompt_learner.ctx.unsqueeze(0) + mp.prompt_learner.ftp(x0)
        assert torch.allclose(mp(images), reference_logits(rn, images, ctx, CLASSNAMES), atol=TOL, rtol=0)
    with pytest.raises(TypeError, match="ViT image encoder; got ModifiedResNet.*TVP.ENABLED False"):
        MutualPromptCLIP(rn, CLASSNAMES, **arguments(tvp_enabled=True))
