"""parse_test_res.py and mutual_prompt.tools.results on generated Dassl-style logs."""
import os
import subprocess
import sys

import pytest

from mutual_prompt.tools.results import base2new_rows, base2new_table, parse_run, render

TRAIN_LOG = """epoch [1/1] batch [1/1] time 0.1 (0.1) data 0.0 (0.0) loss 1.0 (1.0) lr 1.0e-03 eta 0:00:00
Finish training
Deploy the last-epoch model
Evaluate on the *test* set
=> result
* total: 100
* correct: {c}
* accuracy: {acc}%
* error: {err}%
* macro_f1: 50.0%
Elapsed: 0:00:01
"""
TEST_LOG = """Loading weights to prompt_learner from "x/model.pth.tar-1"
Evaluate on the *test* set
=> result
* total: 100
* correct: {c}
* accuracy: {acc}%
* error: {err}%
* macro_f1: 50.0%
"""


def _write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def _run_dir(root, split, ds, seed, trainer="MP", cfg="c"):
    return os.path.join(root, split, ds, "shots_16", trainer, cfg, f"seed{seed}")


def _make_base2new(root, accs):
    """accs: {dataset: {seed: (base, new or None)}}"""
    for ds, seeds in accs.items():
        for seed, (base, new) in seeds.items():
            _write(os.path.join(_run_dir(root, "train_base", ds, seed), "log.txt"), TRAIN_LOG.format(c=int(base), acc=base, err=100 - base))
            if new is not None:
                _write(os.path.join(_run_dir(root, "test_new", ds, seed), "log.txt"), TEST_LOG.format(c=int(new), acc=new, err=100 - new))


def test_parse_run_ignores_results_before_finish_training(tmp_path):
    text = "=> result\n* accuracy: 11.0%\n" + TRAIN_LOG.format(c=90, acc=90.0, err=10.0)
    _write(str(tmp_path / "log.txt"), text)
    assert parse_run(str(tmp_path)) == 90.0


def test_parse_run_prefers_newest_restarted_log(tmp_path):
    _write(str(tmp_path / "log.txt"), "epoch [1/2] ...\n")  # interrupted, no result
    _write(str(tmp_path / "log.txt-2026-11-24-10-00-00"), TRAIN_LOG.format(c=80, acc=80.0, err=20.0))
    assert parse_run(str(tmp_path)) == 80.0


def test_base2new_table_means_hm_and_missing(tmp_path):
    root = str(tmp_path)
    _make_base2new(root, {"caltech101": {1: (90.0, 80.0), 2: (92.0, 82.0), 3: (94.0, None)}, "dtd": {1: (70.0, 50.0)}})
    rows = base2new_rows(root, "MP", "c", seeds=(1, 2, 3))
    by_ds = {r.dataset: r for r in rows}
    assert by_ds["caltech101"].base.mean == pytest.approx(92.0)
    assert by_ds["caltech101"].new.mean == pytest.approx(81.0)
    assert by_ds["caltech101"].new.missing == ["seed3"]
    assert by_ds["dtd"].base.missing == ["seed2", "seed3"]
    assert by_ds["caltech101"].hm == pytest.approx(2 * 92 * 81 / (92 + 81))
    header, body = base2new_table(rows)
    assert header == ["Dataset", "Base", "New", "HM"]
    avg = body[-1]
    assert avg[0] == "Average" and avg[1] == "81.00" and avg[2] == "65.50"
    assert avg[3] == f"{2 * 81 * 65.5 / (81 + 65.5):.2f}"
    csv_text = render(header, body, "csv")
    assert csv_text.splitlines()[0] == "Dataset,Base,New,HM"
    assert "| Dataset" in render(header, body, "markdown")


def test_cli_base2new_and_seed_mode(tmp_path, repo_root):
    root = str(tmp_path)
    _make_base2new(root, {"eurosat": {1: (60.0, 40.0), 2: (62.0, 44.0)}})
    cmd = [sys.executable, os.path.join(repo_root, "parse_test_res.py")]
    out = subprocess.run(cmd + ["--base2new", root, "--trainer", "MP", "--cfg", "c", "--format", "markdown"], capture_output=True, text=True, check=True).stdout
    assert "eurosat" in out and "61.00 ± 1.00" in out and "42.00 ± 2.00" in out
    assert "missing: eurosat train_base seed3" in out
    seed_parent = os.path.dirname(_run_dir(root, "test_new", "eurosat", 1, "MP", "c"))
    out = subprocess.run(cmd + [seed_parent, "--test-log"], capture_output=True, text=True, check=True).stdout
    assert "* accuracy: 42.00% +- 2.00%" in out
    bad = subprocess.run(cmd + [seed_parent], capture_output=True, text=True)
    assert bad.returncode != 0 and "Nothing found" in bad.stderr


def test_base2new_reads_base_from_test_only_runs(tmp_path):
    root = str(tmp_path)
    for split, acc in (("test_base", 70.0), ("test_new", 60.0)):
        _write(os.path.join(_run_dir(root, split, "toy_shapes", 1), "log.txt"), TEST_LOG.format(c=int(acc), acc=acc, err=100 - acc))
    rows = base2new_rows(root, "MP", "c", seeds=(1,), base_split="test_base")
    assert rows[0].base.mean == 70.0 and rows[0].new.mean == 60.0
    assert base2new_rows(root, "MP", "c", seeds=(1,))[0].base.missing == ["seed1"]


def test_cli_errors_are_one_error_line_with_exit_2(tmp_path, repo_root):
    cmd = [sys.executable, os.path.join(repo_root, "parse_test_res.py")]
    (tmp_path / "seed1").mkdir()
    empty = subprocess.run(cmd + [str(tmp_path)], capture_output=True, text=True)
    assert empty.returncode == 2
    assert empty.stderr == (f"parse_test_res.py: error: Nothing found in {tmp_path}: no log.txt with "
                            "'* accuracy: X%' after 'Finish training'\n")
    missing = subprocess.run(cmd + ["--base2new", str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert missing.returncode == 2
    assert missing.stderr.startswith(f"parse_test_res.py: error: No datasets found under {tmp_path / 'nowhere'}")
    assert "Traceback" not in missing.stderr
