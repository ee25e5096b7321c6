"""benchmarks/throughput.py compares equal computations and writes the documented records."""
import importlib.util
import os

import torch

from helpers.clip_weights import tiny_clip

SPEC = importlib.util.spec_from_file_location(
    "throughput", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "throughput.py")
)
throughput = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(throughput)


def test_plain_loop_and_cocoop_equivalent_mode_give_the_same_logits():
    clip_model = tiny_clip(vision_layers=2, text_layers=2).requires_grad_(False)
    names = throughput.classnames_for(3)
    equiv = throughput.build_model("cocoop_equiv", clip_model, names)
    plain = throughput.PlainCoCoOp(clip_model, names, equiv.prompt_learner.ftp.meta_net, equiv.prompt_learner.ctx.detach())
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(plain(images), equiv(images), atol=1e-4)


def test_records_have_the_documented_keys_and_ratios():
    records = [
        {"mode": "plain", "classes": 50, "batch": 4, "train_img_s": 0.5, "eval_img_s": 1.0, "peak_mem_mb": 900.0},
        {"mode": "full", "classes": 50, "batch": 4, "train_img_s": 2.0, "eval_img_s": 5.0, "peak_mem_mb": 1000.0},
        {"mode": "full", "classes": 1000, "batch": 4, "train_img_s": 0.1, "eval_img_s": None, "peak_mem_mb": 5000.0},
    ]
    throughput.add_ratios(records)
    assert records[1]["train_ratio"] == 4.0 and records[1]["eval_ratio"] == 5.0
    assert records[2]["train_ratio"] is None  # no plain loop measured at C=1000
    keys = {"mode", "classes", "batch", "train_img_s", "eval_img_s", "peak_mem_mb", "train_ratio", "eval_ratio"}
    assert all(keys <= set(r) for r in records)
    quick = throughput.plan(quick=True, device="cpu")
    assert {s["mode"] for s in quick} == set(throughput.MODES)
    assert any(s.get("text_checkpoint") and s["classes"] == 1000 and s["train"] for s in throughput.plan(quick=False, device="cpu"))


def test_header_names_the_machine():
    header = throughput.machine()
    assert f"torch {torch.__version__}" in header and header.endswith("threads")
