"""benchmarks/roofline.py and the roofline in benchmarks/throughput.py: FLOP counts against hand counts,
the machine's rate, and the records' roofline fields."""
import json
import os
import sys

import pytest
import torch
from torch import nn

from helpers.clip_weights import tiny_clip

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from benchmarks import roofline, throughput  # noqa: E402


def test_a_linear_layer_counts_two_m_n_k_forward_and_twice_that_backward():
    m, k, n = 8, 16, 32
    layer = nn.Linear(k, n)
    x = torch.randn(m, k, requires_grad=True)
    assert roofline.count_flops(lambda: layer(x)) == 2 * m * n * k
    # Backward: the input's gradient (m x n by n x k) and the weight's (n x m by m x k).
    assert roofline.count_flops(lambda: layer(x).sum().backward()) == 3 * 2 * m * n * k
    layer.requires_grad_(False)
    assert roofline.count_flops(lambda: layer(x).sum().backward()) == 2 * 2 * m * n * k


def test_attention_is_counted():
    q = torch.randn(2, 4, 10, 8)  # batch, heads, tokens, head width
    flops = roofline.count_flops(lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q))
    assert flops == 2 * (2 * 2 * 4 * 10 * 10 * 8)  # q k^T and (softmax) v


def hand_count_cocoop_equivalent_eval(classes: int, *, embed: int, resolution: int, patch: int, vision_width: int,
                                      vision_layers: int, text_width: int, text_layers: int, prefix: int,
                                      suffix: int) -> int:
    """FLOPs of one image's evaluation with FTP shared and TVP off, as the fast path computes it."""
    tokens = (resolution // patch) ** 2 + 1
    image = (2 * (tokens - 1) * vision_width * 3 * patch * patch                      # patch embedding
             + vision_layers * (24 * tokens * vision_width ** 2 + 4 * tokens ** 2 * vision_width)
             + 2 * vision_width * embed)                                               # visual.proj
    hidden = embed // 16
    meta_net = 2 * embed * hidden + 2 * hidden * text_width
    w, p, s = text_width, prefix, suffix
    prefix_pass = text_layers * (24 * p * w ** 2 + 4 * p * p * w)                    # once per image
    suffix_layers = (text_layers - 1) * (24 * s * w ** 2 + 4 * s * (p + s) * w)       # attends to prefix + itself
    last_layer = 4 * s * w ** 2 + 2 * w ** 2 + 4 * (p + s) * w + 2 * w ** 2 + 16 * w ** 2  # keys, values; EOT only
    per_class = suffix_layers + last_layer + 2 * w * embed + 2 * embed                 # + projection, logit
    return image + meta_net + prefix_pass + classes * per_class


def test_the_fast_path_is_counted_as_the_hand_count_of_its_products():
    clip_model = tiny_clip(vision_layers=2, text_layers=2).requires_grad_(False)
    classes = 3
    model = throughput.build_model("cocoop_equiv", clip_model, throughput.classnames_for(classes))
    # "a photo of a" -> SOS + 4 context tokens; "class name 0." + EOT -> 5 suffix tokens.
    assert (model.text_encoder.n_ctx, model.text_encoder.truncated_length) == (4, 10)
    expected = hand_count_cocoop_equivalent_eval(classes, embed=64, resolution=32, patch=8, vision_width=64,
                                                 vision_layers=2, text_width=64, text_layers=2, prefix=5, suffix=5)
    for batch in (1, 3):
        assert roofline.step_flops_per_image(model, batch, 32, classes, train=False) == expected
    # bf16 runs the CPU's written-out attention instead of the fused kernel: the same products.
    from mutual_prompt.clip import set_clip_precision

    set_clip_precision(clip_model, "bf16")
    model = throughput.build_model("cocoop_equiv", clip_model, throughput.classnames_for(classes))
    assert roofline.step_flops_per_image(model, 1, 32, classes, train=False, precision="bf16") == expected


def test_a_training_step_counts_the_backward_to_the_prompts():
    clip_model = tiny_clip(vision_layers=2, text_layers=2).requires_grad_(False)
    model = throughput.build_model("cocoop_equiv", clip_model, throughput.classnames_for(3))
    evaluation = roofline.step_flops_per_image(model, 2, 32, 3, train=False)
    training = roofline.step_flops_per_image(model, 2, 32, 3, train=True)
    no_text = hand_count_cocoop_equivalent_eval(0, embed=64, resolution=32, patch=8, vision_width=64, vision_layers=2,
                                                text_width=64, text_layers=0, prefix=5, suffix=5)
    text_forward = evaluation - no_text
    # The frozen image pass has no backward; the text pass's (gradients of its inputs through frozen
    # weights, none of the weights) costs at most twice its forward.
    assert evaluation < training <= evaluation + 2 * text_forward


def test_matmul_rate_is_flops_over_time():
    rate = roofline.matmul_rate("fp32", "cpu", 64, 64, 64, repeats=2, calls=5)
    assert 1e8 < rate < 1e14  # FLOP/s of any CPU
    assert roofline.matmul_rate("amp", "cpu", 64, 64, 64, repeats=1, calls=2) > 0  # bfloat16 on the CPU


@pytest.fixture(scope="module")
def measured_records():
    """Every mode measured in fp32 and bf16 on the quick shape, as throughput.py's workers measure them."""
    records = [throughput.measure(mode, 4, 2, "cpu", iters=1, warmup=0, train=True, evaluate=True,
                                  precision=precision, shape=throughput.QUICK_SHAPE)
               for precision in ("fp32", "bf16") for mode in throughput.MODES]
    rates = throughput.measure_rates(["fp32", "bf16"], "cpu")
    throughput.add_ratios(records)
    throughput.add_roofline(records, rates)
    return records, rates


def test_records_carry_the_roofline_fields(measured_records):
    records, rates = measured_records
    assert set(rates) == {"fp32", "bf16"} and all(rate > 0 for rate in rates.values())
    for r in records:
        assert set(throughput.JSON_KEYS) <= set(r)
        for direction in ("train", "eval"):
            assert r[f"gflop_per_image_{direction}"] > 0
            assert 0 < r[f"roofline_{direction}"] <= 1.2
            assert r[f"roofline_{direction}"] == pytest.approx(
                r[f"gflop_per_image_{direction}"] * 1e9 * r[f"{direction}_img_s"] / rates[r["precision"]])
    plain = {r["precision"]: r for r in records if r["mode"] == "plain"}
    for r in records:  # ratios against the plain loop of the same precision
        assert r["eval_ratio"] == pytest.approx(r["eval_img_s"] / plain[r["precision"]]["eval_img_s"])
    json.dumps([{k: r[k] for k in throughput.JSON_KEYS} for r in records])


def test_the_table_shows_each_precision_its_rate_and_the_speed_up(measured_records, capsys):
    records, rates = measured_records
    throughput.print_table(records, "cpu", rates)
    out = capsys.readouterr().out
    assert "PREC fp32: matrix products at" in out and "PREC bf16: matrix products at" in out and "bfloat16" in out
    assert "train roofline" in out and "GFLOP/img eval" in out
    assert "PREC bf16 over PREC fp32, same run" in out and "cocoop_equiv C=4: train" in out


def test_precision_list_is_checked(capsys):
    with pytest.raises(SystemExit):
        throughput.main(["--precision", "fp32,half"])
    assert "unknown PREC 'half'" in capsys.readouterr().err
    os.environ.pop("MUTUAL_PROMPT_CPU_FP16", None)
    with pytest.raises(SystemExit):
        throughput.main(["--precision", "fp32,fp16"])
    assert "fp16 runs as fp32 on cpu, which is already measured" in capsys.readouterr().err


def test_the_table_names_the_precision_a_prec_ran_as(measured_records, capsys):
    """fp16 on the CPU runs as fp32 (resolve_precision): the table keeps the PREC asked and says so."""
    records, rates = measured_records
    fp32 = [dict(r, precision="fp16") for r in records if r["precision"] == "fp32"]
    throughput.print_table(fp32, "cpu", {"fp16": rates["fp32"]}, {"fp16": "fp32"})
    out = capsys.readouterr().out
    assert "PREC fp16 (runs as fp32 on cpu): matrix products at" in out and "GFLOP/s (float32, " in out
