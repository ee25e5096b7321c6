"""Figures: the bars and lines drawn are read back from the Figure, and the files are real images."""
import os
import subprocess
import sys

import pytest

from mutual_prompt import figures
from mutual_prompt.results import BENCHMARK_DATASETS, SeedSummary, base2new_rows, training_curve

pytest.importorskip("matplotlib")


def write_log(run_dir, text):
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "log.txt"), "w") as f:
        f.write(text)


def epoch_lines(epoch, max_epoch, loss, acc):
    return "".join(f"epoch [{epoch}/{max_epoch}] batch [{b}/4] time 0.1 (0.1) data 0.0 (0.0) loss {loss + b:.4f} "
                   f"({loss:.4f}) acc {acc:.4f} ({acc:.4f}) lr 2.0000e-03 eta 0:00:01\n" for b in (2, 4))


def base2new_tree(root, datasets, seeds=(1, 2)):
    for i, ds in enumerate(datasets):
        for seed in seeds:
            tail = f"{ds}/shots_16/MutualPrompt/cfg/seed{seed}"
            write_log(f"{root}/train_base/{tail}", f"{epoch_lines(1, 1, 1.0, 50.0)}Finish training\n* accuracy: {80 + i + seed}.00%\n")
            write_log(f"{root}/test_new/{tail}", f"=> result\n* accuracy: {70 + i - seed}.00%\n")


def bars(ax):
    return [p for p in ax.patches if p.get_height() > 0]


def test_published_numbers_carry_their_source():
    rows = figures.load_published()
    assert {r.method for r in rows} == {"CLIP", "CoOp", "CoCoOp", "MaPLe", "PromptSRC"}
    assert all(r.source.startswith("github.com/muzairkhattak/") for r in rows)
    maple = next(r for r in rows if r.method == "MaPLe")
    assert (maple.dataset, maple.base, maple.new, maple.hm) == ("Average", 82.28, 75.14, 78.55)


def test_base2new_bars_beside_published_averages(tmp_path):
    root = str(tmp_path / "base2new")
    base2new_tree(root, BENCHMARK_DATASETS)
    rows = base2new_rows(root, "MutualPrompt", "cfg", datasets=list(BENCHMARK_DATASETS), seeds=[1, 2])
    fig = figures.base2new_figure({"MutualPrompt": rows}, figures.load_published())
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["Base", "New", "HM"]
    labels = [t.get_text() for t in axes[0].get_xticklabels()]
    assert labels == list(BENCHMARK_DATASETS) + ["Average"]
    for ax in axes:  # 12 measured bars, and one published bar per method in the Average group
        assert len(bars(ax)) == 12 + 5
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[0] == "MutualPrompt (measured)" and sum(t.endswith("(published)") for t in legend) == 5
    caltech_base = bars(axes[0])[1].get_height()
    assert caltech_base == pytest.approx(81 + 1.5)  # seeds 1, 2 -> 82, 83
    figures.save(fig, str(tmp_path / "b2n.png"))
    assert (tmp_path / "b2n.png").read_bytes()[:4] == b"\x89PNG"


def test_toy_world_keeps_published_averages_in_their_own_group(tmp_path):
    root = str(tmp_path / "base2new")
    base2new_tree(root, ["toy_shapes"])
    rows = base2new_rows(root, "MutualPrompt", "cfg", datasets=["toy_shapes"], seeds=[1, 2])
    fig = figures.base2new_figure({"MutualPrompt": rows}, figures.load_published())
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["toy_shapes", "Average", "11-dataset average"]
    assert len(bars(fig.axes[2])) == 2 + 5


def test_few_shot_curves():
    def summary(v):
        return SeedSummary(values={"seed1": v, "seed2": v + 2})

    series = {"MutualPrompt": {ds: {k: summary(50 + k + i) for k in (1, 2, 4, 8, 16)} for i, ds in enumerate(["dtd", "eurosat"])},
              "ablation": {ds: {k: summary(40 + k) for k in (1, 2, 4, 8, 16)} for ds in ["dtd", "eurosat"]}}
    fig = figures.few_shot_figure(series)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["dtd", "eurosat", "Average"]
    for ax in visible:
        assert len(ax.get_lines()) >= 2
        assert list(ax.get_lines()[0].get_xdata()) == [1, 2, 4, 8, 16]
    assert list(visible[2].get_lines()[0].get_ydata()) == [51.5 + k for k in (1, 2, 4, 8, 16)]


def test_training_curves_from_logs_resumed_run_overrides_repeated_epochs(tmp_path):
    run = tmp_path / "seed1"
    write_log(str(run), epoch_lines(1, 3, 2.0, 40.0) + epoch_lines(2, 3, 1.5, 50.0))
    (run / "log.txt-2026-01-01-00-00-00").write_text(epoch_lines(2, 3, 1.4, 55.0) + epoch_lines(3, 3, 1.0, 60.0))
    curve = training_curve(str(run))
    assert curve["loss"] == {1: 2.0, 2: 1.4, 3: 1.0} and curve["acc"] == {1: 40.0, 2: 55.0, 3: 60.0}
    fig = figures.training_figure({"seed1": str(run), "seed2": str(run)})
    loss_ax, acc_ax = fig.axes
    assert len(loss_ax.get_lines()) == 2 and list(loss_ax.get_lines()[0].get_ydata()) == [2.0, 1.4, 1.0]
    assert list(acc_ax.get_lines()[1].get_xdata()) == [1, 2, 3]


def test_parse_test_res_plot(repo_root, tmp_path):
    root = str(tmp_path / "base2new")
    base2new_tree(root, ["dtd"])
    out = tmp_path / "fig.png"
    proc = subprocess.run([sys.executable, "parse_test_res.py", "--base2new", root, "--cfg", "cfg", "--seeds", "1", "2",
                           "--plot", str(out)], cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"figure: {out}" in proc.stdout and out.read_bytes()[:4] == b"\x89PNG"
