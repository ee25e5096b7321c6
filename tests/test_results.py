"""parse_test_res.py and mutual_prompt.tools.results on generated Dassl-style logs."""
import os
import subprocess
import sys

import pytest

from mutual_prompt.tools.results import (
    SeedSummary,
    base2new_rows,
    base2new_table,
    parse_run,
    render,
    seed_summary_lines,
)

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
    assert avg[0] == "Average" and avg[1] == pytest.approx(81.0) and avg[2] == pytest.approx(65.5)
    assert avg[3] == pytest.approx(2 * 81 * 65.5 / (81 + 65.5))
    csv_lines = render(header, body, "csv").splitlines()
    assert csv_lines[0] == "Dataset,Base mean,Base std,Base n,New mean,New std,New n,HM"
    hm = f"{2 * 92 * 81 / (92 + 81):.2f}"
    assert csv_lines[1] == f"caltech101,92.00,1.63,3,81.00,1.00,2,{hm}"  # population std, as CoOp's
    assert csv_lines[2] == f"dtd,70.00,,1,50.00,,1,{2 * 70 * 50 / 120:.2f}"  # one seed: no std
    assert csv_lines[3] == f"Average,81.00,,,65.50,,,{avg[3]:.2f}"
    markdown = render(header, body, "markdown")
    assert "| Dataset" in markdown
    assert markdown.endswith("\n\n(mean ± std over 1 to 3 seeds, population std; a value without ± is one seed; "
                             "the missing: lines name the seeds without a result)")


def test_one_seed_shows_its_value_without_a_spread(tmp_path):
    root = str(tmp_path)
    _make_base2new(root, {"eurosat": {1: (60.0, 40.0)}})
    header, body = base2new_table(base2new_rows(root, "MP", "c", seeds=(1,)))
    table = render(header, body)
    assert "±" not in table.replace("(1 seed", "")
    assert table.splitlines()[2].split() == ["eurosat", "60.00", "40.00", "48.00"]
    assert table.splitlines()[-1] == "(1 seed: each value is that seed's result, with no std)"
    one = seed_summary_lines("d", SeedSummary(values={"seed1": 60.0}))
    assert one[-2] == "* accuracy: 60.00% (1 seed, no std)"
    two = seed_summary_lines("d", SeedSummary(values={"seed1": 60.0, "seed2": 62.0}))
    assert two[-2] == "* accuracy: 61.00% +- 1.00% (std over 2 seeds)"
    assert seed_summary_lines("d", SeedSummary(values={"seed1": 60.0, "seed2": 62.0}), ci95=True)[-2] == \
        f"* accuracy: 61.00% +- {1.96 / 2 ** 0.5:.2f}% (95% CI over 2 seeds)"
    assert render(["Dataset", "Base"], [["x", SeedSummary(values={"a": 1.0, "b": 3.0})]]).splitlines()[-1] == \
        "(mean ± std over 2 seeds; std is the population std, as CoOp's parse_test_res.py)"
    assert render(["Dataset", "Base"], [["x", SeedSummary()]]).splitlines()[-1].split() == ["x", "-"]


def test_cli_base2new_and_seed_mode(tmp_path, repo_root):
    root = str(tmp_path)
    _make_base2new(root, {"eurosat": {1: (60.0, 40.0), 2: (62.0, 44.0)}})
    cmd = [sys.executable, os.path.join(repo_root, "parse_test_res.py")]
    out = subprocess.run(cmd + ["--base2new", root, "--trainer", "MP", "--cfg", "c", "--format", "markdown"], capture_output=True, text=True, check=True).stdout
    assert "eurosat" in out and "61.00 ± 1.00" in out and "42.00 ± 2.00" in out
    assert "(mean ± std over 2 seeds;" in out
    assert "missing: eurosat train_base seed3" in out
    seed_parent = os.path.dirname(_run_dir(root, "test_new", "eurosat", 1, "MP", "c"))
    out = subprocess.run(cmd + [seed_parent, "--test-log"], capture_output=True, text=True, check=True).stdout
    assert "* accuracy: 42.00% +- 2.00% (std over 2 seeds)" in out
    proc = subprocess.run(cmd + [os.path.dirname(seed_parent), "--multi-exp", "--test-log", "--format", "csv"],
                          capture_output=True, text=True, check=True)
    assert proc.stdout.splitlines() == ["Experiment,accuracy mean,accuracy std,accuracy n", "c,42.00,2.00,2"]
    assert "Parsing files in" in proc.stderr  # CSV alone on stdout, the rest on stderr
    proc = subprocess.run(cmd + ["--base2new", root, "--trainer", "MP", "--cfg", "c", "--format", "csv"],
                          capture_output=True, text=True, check=True)
    assert proc.stdout.splitlines() == ["Dataset,Base mean,Base std,Base n,New mean,New std,New n,HM",
                                        "eurosat,61.00,1.00,2,42.00,2.00,2,49.75", "Average,61.00,,,42.00,,,49.75"]
    assert proc.stderr == "missing: eurosat train_base seed3\nmissing: eurosat test_new seed3\n"
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
                            "'* accuracy: X%' after 'Finish training' in its folders (seed1)\n")
    missing = subprocess.run(cmd + ["--base2new", str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert missing.returncode == 2
    assert missing.stderr.startswith(f"parse_test_res.py: error: No datasets found under {tmp_path / 'nowhere'}")
    assert "Traceback" not in missing.stderr


def test_no_matching_run_folder_lists_the_folders_that_exist(tmp_path, repo_root):
    """A wrong --shots, trainer or folder: exit 2, and the error names what is there at the nearest level."""
    root = str(tmp_path)
    _make_base2new(root, {"eurosat": {1: (60.0, 40.0)}, "dtd": {1: (70.0, 50.0)}})
    cmd = [sys.executable, os.path.join(repo_root, "parse_test_res.py")]
    wrong_shots = subprocess.run(cmd + ["--base2new", root, "--trainer", "MP", "--cfg", "c", "--shots", "4"],
                                 capture_output=True, text=True)
    assert wrong_shots.returncode == 2 and wrong_shots.stdout == ""
    lines = wrong_shots.stderr.splitlines()
    assert lines[0] == (f"parse_test_res.py: error: no result under {root} for --trainer MP --cfg c --shots 4 "
                        "--base-split train_base:")
    base = os.path.join(root, "train_base", "dtd")
    assert lines[1] == f"  {os.path.join(base, 'shots_4', 'MP', 'c')}: no such folder; {base} holds: shots_16"
    assert len(lines) == 5  # dtd and eurosat, train_base and test_new
    wrong_trainer = subprocess.run(cmd + ["--base2new", root, "--trainer", "CoOp", "--cfg", "c", "--datasets", "dtd"],
                                   capture_output=True, text=True)
    assert wrong_trainer.returncode == 2
    shots = os.path.join(root, "train_base", "dtd", "shots_16")
    assert f"  {os.path.join(shots, 'CoOp', 'c')}: no such folder; {shots} holds: MP" in wrong_trainer.stderr
    wrong_folder = subprocess.run(cmd + [os.path.join(root, "test_new", "dtd", "shots_16", "MP", "cfg")],
                                  capture_output=True, text=True)
    assert wrong_folder.returncode == 2
    parent = os.path.join(root, "test_new", "dtd", "shots_16", "MP")
    assert wrong_folder.stderr == (f"parse_test_res.py: error: {os.path.join(parent, 'cfg')}: no such folder; "
                                   f"{parent} holds: c\n")


def test_help_shows_defaults_and_explains_each_flag(repo_root):
    text = subprocess.run([sys.executable, os.path.join(repo_root, "parse_test_res.py"), "--help"],
                          capture_output=True, text=True, check=True).stdout
    assert "\\" not in text
    for default in ("(default: 16)", "(default: 1 2 3)", "(default: MutualPrompt)", "(default: table)",
                    "(default: vit_b16_c4_ep10_batch1_ctxv1)", "(default: accuracy)", "(default: train_base)"):
        assert default in " ".join(text.split()), default
    options = text[text.index("options:"):]
    flags = [line.split()[0] for line in options.splitlines()[1:] if line.startswith("  -")]
    assert len(flags) == 14
    for line in options.splitlines()[1:]:  # every flag has a help text, on its line or the next
        if line.startswith("  -") and len(line.split()) <= 2:
            following = options.splitlines()[options.splitlines().index(line) + 1]
            assert following.startswith(" " * 10) and following.strip(), line


def few_shot_variant(repo_root, tmp_path, **kw):
    from mutual_prompt.tools.sweep.plan import Settings, expand

    s = Settings(repo_root=repo_root, data=str(tmp_path / "data"), output=str(tmp_path / "out"), cfg="toy",
                 datasets=("toy_shapes", "dtd"), shot_list=(1, 2), seeds=(1, 2), **kw)
    (variant,) = expand("few_shot", s)
    for i, run in enumerate(r for r in variant.runs if r.kind != "linear_probe"):  # the values before it existed
        if run.kind == "train":
            _write(os.path.join(run.output_dir, "log.txt"), TRAIN_LOG.format(c=60 + i, acc=60.0 + i, err=40.0 - i))
    return variant


def test_the_few_shot_table_carries_the_zero_shot_line(repo_root, tmp_path):
    from mutual_prompt.tools.sweep.report import summary_lines

    variant = few_shot_variant(repo_root, tmp_path)
    lines = "\n".join(summary_lines(repo_root, variant)).splitlines()
    table = lines[lines.index("(mean ± std over 2 seeds; std is the population std, as CoOp's parse_test_res.py)") - 4:]
    assert table[0].split() == ["Dataset", "zero-shot", "CLIP", "1", "shot", "2", "shots"]
    assert table[2].split() == ["toy_shapes", "-", "61.50", "±", "0.50", "63.50", "±", "0.50"]
    out = tmp_path / "out"
    assert table[-2] == (f"no zero-shot CLIP result yet for toy_shapes, dtd (its run: {out}/few_shot/toy_shapes/"
                         "ZeroshotMP/toy/seed1, ...)")
    for run in variant.runs:
        if run.kind in ("zero_shot", "linear_probe"):
            _write(os.path.join(run.output_dir, "log.txt"), TEST_LOG.format(c=55, acc=55.0, err=45.0)
                   if run.kind == "zero_shot" else TRAIN_LOG.format(c=50, acc=50.0, err=50.0))
    table = "\n".join(summary_lines(repo_root, variant)).splitlines()[-7:]
    assert table[2].split()[:2] == ["toy_shapes", "55.00"] and table[4].split()[:2] == ["dtd", "55.00"]
    assert table[-1] == ("(mean ± std over 1 to 2 seeds, population std; a value without ± is one seed; "
                         "the missing: lines name the seeds without a result)")

    no_config = few_shot_variant(repo_root, tmp_path, opts=("MODEL.BACKBONE.NAME", "RN50"))
    zero_shot_line, linear_probe_line = summary_lines(repo_root, no_config)[-2:]
    assert zero_shot_line.startswith("no zero-shot CLIP line: no config in ") and "'RN50'" in zero_shot_line
    assert linear_probe_line.startswith("no linear-probe CLIP curve: no config in ") and "'RN50'" in linear_probe_line


def test_the_few_shot_table_carries_the_linear_probe_rows(repo_root, tmp_path):
    from mutual_prompt.tools.sweep.report import few_shot_table

    variant = few_shot_variant(repo_root, tmp_path)
    out = tmp_path / "out"
    table = few_shot_table(repo_root, variant.settings)
    assert "linear probe" not in table[0]  # no result yet: no rows, one line
    assert table[-1] == (f"no linear-probe CLIP result yet for toy_shapes, dtd (its runs: {out}/few_shot/toy_shapes/"
                         "LinearProbeMP/toy_1shots/seed*, ...)")
    probes = [run for run in variant.runs if run.kind == "linear_probe"]
    for i, run in enumerate(probes[:-1]):  # all but dtd's 2-shot seed 2
        _write(os.path.join(run.output_dir, "log.txt"), TRAIN_LOG.format(c=70 + i, acc=70.0 + i, err=30.0 - i))
    lines = few_shot_table(repo_root, variant.settings)
    rows = lines[0].splitlines()
    assert rows[3].split() == ["toy_shapes", "linear", "probe", "70.50", "±", "0.50", "72.50", "±", "0.50"]
    assert rows[5].split() == ["dtd", "linear", "probe", "74.50", "±", "0.50", "76.00"]
    assert lines[1:] == [l for l in lines[1:] if not l.startswith("no linear-probe")]  # all present: no line

    _write(os.path.join(probes[-1].output_dir, "log.txt"), "Finish training\n")  # a seed without a result
    for run in probes[-3:-1]:
        os.remove(os.path.join(run.output_dir, "log.txt"))
    assert few_shot_table(repo_root, variant.settings)[-1] == (
        f"no linear-probe CLIP result yet for dtd (2 shots) (its runs: {out}/few_shot/dtd/LinearProbeMP/toy_2shots/"
        "seed*)")
