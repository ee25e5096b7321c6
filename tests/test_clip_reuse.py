"""docs/DEVELOPING.md's example of another prompt-learning method built on ``mutual_prompt.clip`` (a
MaPLe-style coupled deep prompt), run as the page writes it: its logits against CLIP's own layers, a
training step that reaches the prompts and nothing of CLIP, and the page's training step on the toy
CLIP. Also: the page's API table is ``mutual_prompt.clip.__all__``, and importing ``mutual_prompt.clip``
brings in neither the method, the host backend nor the engine."""
import os
import re

import pytest
import torch
import torch.nn.functional as F

import mutual_prompt.clip
from helpers.clip_weights import PERTURBED, tiny_clip
from helpers.reference import CLASSNAMES, TOL, clip_blocks_with_prompts, reference_text_features
from helpers.runs import python

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEVELOPING = os.path.join(REPO_ROOT, "docs", "DEVELOPING.md")
SECTION = "## Reusing `mutual_prompt.clip` in another method"


def reuse_section() -> str:
    with open(DEVELOPING, encoding="utf-8") as f:
        text = f.read()
    assert SECTION in text, f"{DEVELOPING} has no section {SECTION!r}"
    return text.split(SECTION, 1)[1].split("\n## ", 1)[0]


@pytest.fixture(scope="module")
def blocks():
    code = re.findall(r"^```python\n(.*?)^```", reuse_section(), flags=re.S | re.M)
    assert len(code) == 2, "expected the model block and the training-step block"
    return code


@pytest.fixture(scope="module")
def example(blocks):
    """The namespace the page's first block (the model) defines."""
    namespace = {"__name__": "developing_example"}
    exec(compile(blocks[0], f"{DEVELOPING} (model block)", "exec"), namespace)
    return namespace



def test_example_logits_are_clips_own_layers_with_coupled_deep_prompts(example, images):
    clip_model = tiny_clip(**PERTURBED)
    torch.manual_seed(7)
    model = example["CoupledPromptCLIP"](clip_model, CLASSNAMES, n_ctx=3, depth=2)
    with torch.no_grad():
        model.ctx.normal_(std=0.5)
        logits = model(images)
        prompts = torch.stack([coupling(model.ctx) for coupling in model.couplings])
        prompts = prompts.unsqueeze(1).expand(-1, len(images), -1, -1)
        image = F.normalize(clip_blocks_with_prompts(clip_model.visual, images, prompts), dim=-1)
        text = reference_text_features(clip_model, model.ctx.unsqueeze(0), CLASSNAMES)[0]
        expected = clip_model.logit_scale.exp() * image @ text.t()
        assert logits.shape == (len(images), len(CLASSNAMES))
        assert torch.allclose(logits, expected, atol=TOL, rtol=0)
        model.couplings[1].weight.add_(torch.randn_like(model.couplings[1].weight))  # the second layer's prompts count
        assert not torch.allclose(model(images), logits)


def test_example_training_step_reaches_the_prompts_and_leaves_clip_unchanged(example, images):
    clip_model = tiny_clip(**PERTURBED)
    clip_state = {name: value.clone() for name, value in clip_model.state_dict().items()}
    model = example["CoupledPromptCLIP"](clip_model, CLASSNAMES)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == {id(model.ctx)} | {id(p) for p in model.couplings.parameters()}
    before = [p.detach().clone() for p in trainable]
    optimizer = torch.optim.SGD(trainable, lr=0.1)
    F.cross_entropy(model(images), torch.tensor([0, 1, 2])).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)
    assert all(p.grad is None for p in clip_model.parameters())
    optimizer.step()
    assert all(not torch.equal(p, b) for p, b in zip(trainable, before))
    assert all(torch.equal(clip_model.state_dict()[name], value) for name, value in clip_state.items())


def test_the_pages_training_step_runs_as_written_on_the_toy_clip(blocks, example):
    namespace = dict(example)
    exec(compile(blocks[1], f"{DEVELOPING} (training-step block)", "exec"), namespace)
    model, loss = namespace["model"], namespace["loss"]
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert model.ctx.grad is not None and model.ctx.grad.abs().sum() > 0
    assert namespace["optimizer"].state[model.ctx]  # the step ran (SGD keeps a momentum buffer)


def test_the_pages_api_table_lists_the_public_names():
    rows = [line for line in reuse_section().splitlines() if line.startswith("| `")]
    documented = {name for row in rows for name in re.findall(r"`(\w+)", row.split("|")[1])}
    assert documented == set(mutual_prompt.clip.__all__)


def test_importing_mutual_prompt_clip_brings_in_no_method_host_or_engine():
    code = ("import sys, mutual_prompt.clip; print(sorted(m for m in sys.modules if m in ('clip', 'dassl', 'trainers') "
            "or m.startswith(('mutual_prompt.method', 'mutual_prompt.backend', 'mutual_prompt.runtime', 'mutual_prompt.tools', 'dassl.'))))")
    proc = python(code, backend="builtin")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "[]"
