"""benchmarks/gpu_check.py runs on the CPU (--quick) and reports every PREC's checks and the throughput rows."""
import json
import os
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from benchmarks import gpu_check  # noqa: E402


@pytest.mark.slow
def test_quick_cpu_run_checks_every_precision_and_writes_the_json(tmp_path):
    path = tmp_path / "gpu_check.json"
    proc = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "benchmarks", "gpu_check.py"), "--device", "cpu",
                           "--quick", "--json", str(path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(path.read_text())
    assert report["passed"] and report["quick"]
    checks = {c["precision"]: c for c in report["precision_checks"]}
    assert list(checks) == ["fp32", "fp16", "bf16", "amp"]
    assert checks["fp16"]["weight_dtype"] == "torch.float16" and checks["bf16"]["weight_dtype"] == "torch.bfloat16"
    for precision in ("fp16", "bf16", "amp"):
        check = checks[precision]
        assert 0 < check["logit_max_abs_error"] <= check["logit_tolerance"] and 0 <= check["argmax_agreement"] <= 1
    for check in checks.values():
        assert len(check["losses"]) == gpu_check.TRAIN_STEPS and check["losses"][-1] < check["losses"][0]
    rows = report["throughput"]
    assert {r["mode"] for r in rows} == {"plain", "cocoop_equiv", "full"}
    assert all(r["train_img_s"] > 0 and r["eval_img_s"] > 0 and r["train_batch"] == 4 for r in rows)
    assert report["imagenet_eval_projection"]["seconds"] > 0
    assert "|logit - fp32|" in proc.stdout and "ImageNet evaluation, full method" in proc.stdout
    # The projection's table, from this run's rates (the columns are checked in test_benchmark_projected_cost.py).
    assert report["measured_flop_rates"]["train"] > 0 and report["measured_flop_rates"]["eval"] > 0
    assert "From the rates measured on cpu" in proc.stdout and "| base2new   | imagenet" in proc.stdout
    assert "Whole base2new sweep (" in proc.stdout


def test_full_run_plan_is_the_documented_one():
    specs = gpu_check.throughput_specs(quick=False, precision="fp16", shape=None)
    assert {(s["mode"], s["classes"], s["batch"], s["train"]) for s in specs} == {
        (mode, classes, batch, batch == 4) for mode in ("plain", "cocoop_equiv", "full") for classes in (50, 1000)
        for batch in (4, 100)}
    assert all(s["precision"] == "fp16" for s in specs)


def test_an_out_of_memory_configuration_is_a_row_not_a_crash():
    spec = dict(mode="plain", classes=1000, batch=4, train=True)
    rows = gpu_check.merge_throughput([(spec, {"error": "out of memory"}),
                                       (dict(spec, batch=100, train=False), {"eval_img_s": 2.0, "peak_mem_mb": 9.0})])
    assert rows == [{"mode": "plain", "classes": 1000, "train_img_s": None, "eval_img_s": 2.0, "train_batch": 4,
                     "train_error": "out of memory", "train_peak_mb": None, "eval_batch": 100, "eval_error": None,
                     "eval_peak_mb": 9.0, "train_ratio": None, "eval_ratio": 1.0}]
    assert gpu_check.imagenet_projection(rows) is None
