"""benchmarks/projected_cost.py: its FLOP and saved-activation counts against hand counts, the
protocols' plan, and the table it prints."""
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from benchmarks import gpu_check, projected_cost  # noqa: E402
from benchmarks.throughput import QUICK_SHAPE  # noqa: E402
from mutual_prompt.tools import protocols  # noqa: E402
from mutual_prompt.tools.dataset_catalog import CATALOG  # noqa: E402


def test_saved_activations_are_the_tensors_the_backward_needs_each_storage_once():
    weight = nn.Parameter(torch.randn(16, 32))
    x = torch.randn(8, 16, requires_grad=True)

    def step():
        return (x @ weight).relu().sum()

    # x (for the weight's gradient) and relu's output; the weight is left out as asked.
    assert projected_cost.saved_activation_bytes(step, exclude=[weight]) == (8 * 16 + 8 * 32) * 4
    assert projected_cost.saved_activation_bytes(step) == (8 * 16 + 8 * 32 + 16 * 32) * 4
    # x saved twice by one product (and a view of it) is one storage.
    assert projected_cost.saved_activation_bytes(lambda: (x * x[:]).sum()) == 8 * 16 * 4
    with torch.no_grad():
        assert projected_cost.saved_activation_bytes(step) == 0


def test_the_plan_follows_the_protocols_and_the_catalog():
    rows = [row for _, row in projected_cost.plan_rows()]
    base2new = [r for r in rows if r.protocol == "base2new"]
    defaults = protocols.protocol("base2new").defaults
    assert [r.dataset for r in base2new] == list(defaults["datasets"])
    assert sum(r.seeds * r.runs_per_seed for r in base2new) == 66
    imagenet = base2new[0].phase
    assert (imagenet.train_classes, imagenet.train_images, imagenet.epochs, imagenet.batch) == (500, 16 * 500, 10, 1)
    assert imagenet.tests == ((500, 25000), (500, 25000))
    pets = next(r.phase for r in base2new if r.dataset == "oxford_pets")
    assert [c for c, _ in pets.tests] == [19, 18] and sum(n for _, n in pets.tests) == CATALOG["oxford_pets"].test
    xd_train = next(r for r in rows if r.protocol == "xd train")
    assert (xd_train.phase.train_classes, xd_train.phase.batch, xd_train.phase.epochs) == (1000, 4, 5)
    assert len([r for r in rows if r.protocol == "xd test"]) == len(protocols.protocol("xd").defaults["targets"])
    few_shot = next(r for r in rows if r.protocol == "few_shot" and r.dataset == "dtd")
    assert few_shot.phase.train_images == (1 + 2 + 4 + 8 + 16) * 47 and few_shot.seeds * few_shot.runs_per_seed == 15


def test_a_config_without_a_batch_size_is_an_error_naming_it(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("OPTIM:\n  MAX_EPOCH: 3\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: DATALOADER\.TRAIN_X\.BATCH_SIZE: expected a positive integer"):
        projected_cost.config_values(str(path))


def test_the_model_costs_grow_with_the_classes_and_scale_with_the_batch():
    model = projected_cost.CostModel(projected_cost.config_path("vit_b16_c4_ep10_batch1_ctxv1"), QUICK_SHAPE)
    small, saved_small = model.train_step(classes=4, batch=1)
    large, saved_large = model.train_step(classes=40, batch=1)
    assert large > small > 0 and saved_large > saved_small > 0
    per_image_b2, saved_b2 = model.train_step(classes=4, batch=2)
    assert per_image_b2 == pytest.approx(small, rel=0.02) and saved_b2 > saved_small
    assert model.eval_flops(40) > model.eval_flops(4) > 0
    assert model.classes == 4


def test_quick_run_prints_the_table_and_the_sweep_totals():
    proc = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "benchmarks", "projected_cost.py"), "--quick"],
                          capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    header = next(line for line in proc.stdout.splitlines() if line.startswith("| protocol"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns == [*projected_cost.COLUMNS, *(f"{gpu} min" for gpu in projected_cost.GPUS)]
    assert proc.stdout.startswith("Projected, tiny CLIP (--quick)")
    for name in ("base2new", "xd", "few_shot"):
        assert f"Whole {name} sweep (" in proc.stdout
    assert "25% of the fp16 tensor-core peak (an assumption)" in proc.stdout


def test_a_bad_utilisation_is_refused():
    with pytest.raises(SystemExit):
        projected_cost.main(["--utilisation", "1.5"])


def test_gpu_check_turns_measured_images_per_second_into_flop_rates():
    rows = [{"mode": "full", "classes": 10, "train_batch": 4, "train_img_s": 2.0, "eval_img_s": 5.0},
            {"mode": "plain", "classes": 10, "train_batch": 4, "train_img_s": 1.0, "eval_img_s": 1.0}]
    train, evaluation = gpu_check.measured_rates(rows, QUICK_SHAPE)
    model = projected_cost.CostModel(projected_cost.config_path(gpu_check.CONFIG), QUICK_SHAPE)
    assert train == pytest.approx(2.0 * model.train_step(10, 4)[0])
    assert evaluation == pytest.approx(5.0 * model.eval_flops(10))
    assert gpu_check.measured_rates(rows[1:], QUICK_SHAPE) is None


def test_performance_md_holds_the_table_with_the_scripts_columns_labelled_projected():
    with open(os.path.join(REPO_ROOT, "docs", "PERFORMANCE.md"), encoding="utf-8") as f:
        text = f.read()
    section = text[text.index("## Real scale: projected GPU time and memory"):text.index("## Precisions")]
    assert "Projected, not measured" in section and "Projected, ViT-B/16, PREC fp16" in section
    header = next(line for line in section.splitlines() if line.startswith("| protocol"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        *projected_cost.COLUMNS, *(f"{gpu} min" for gpu in projected_cost.GPUS)]
    datasets = {line.split("|")[2].strip() for line in section.splitlines() if line.startswith("| base2new")}
    assert datasets == set(protocols.protocol("base2new").defaults["datasets"])
