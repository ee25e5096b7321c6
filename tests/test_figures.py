"""Figures: the bars and lines drawn are read back from the Figure, and the files are real images."""
import os
import subprocess
import sys

import pytest

from mutual_prompt.tools import figures
from mutual_prompt.tools.results import BENCHMARK_DATASETS, SeedSummary, base2new_rows, training_curve

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


def bars_per_group(ax):
    """Group index -> number of bars drawn in it (a group's bars sit within 0.4 of its tick)."""
    counts = {}
    for p in bars(ax):
        g = round(p.get_x() + p.get_width() / 2)
        counts[g] = counts.get(g, 0) + 1
    return counts


def caption(fig):
    return "\n".join(t.get_text() for t in fig.texts if t.get_text() != fig.get_suptitle())


PUBLISHED_HEADER = "method,dataset,base,new,hm,source\n"


def consistent_rows(method, source="test data, not a published source"):
    """11 per-dataset rows and their Average, rounded to 0.01 as papers print them."""
    lines, bases, news = [], [], []
    for i, ds in enumerate(BENCHMARK_DATASETS):
        b, n = round(70 + 2.37 * i, 2), round(60 + 3.11 * i, 2)
        bases.append(b)
        news.append(n)
        lines.append(f"{method},{ds},{b:.2f},{n:.2f},{2 * b * n / (b + n):.2f},{source}\n")
    b, n = round(sum(bases) / 11, 2), round(sum(news) / 11, 2)
    lines.append(f"{method},Average,{b:.2f},{n:.2f},{2 * b * n / (b + n):.2f},{source}\n")
    return lines


def write_published(path, lines):
    path.write_text(PUBLISHED_HEADER + "".join(lines))
    return str(path)


def test_published_numbers_are_complete_consistent_and_carry_their_source():
    rows = figures.load_published()
    methods = ("CLIP", "CoOp", "CoCoOp", "MaPLe", "PromptSRC")
    assert [r.method for r in rows] == [m for m in methods for _ in figures.PUBLISHED_DATASETS]
    by = {(r.method, r.dataset): r for r in rows}
    assert set(by) == {(m, d) for m in methods for d in figures.PUBLISHED_DATASETS}  # each method: 11 datasets + Average
    for r in rows:
        if r.dataset == "Average":
            assert r.source.startswith("github.com/muzairkhattak/")  # the authors' READMEs
        else:
            assert "as reproduced in [OnPoKD] Table 1" in r.source
        # Every HM is 2BN/(B+N) of its row, to the rounding of three numbers printed to 0.01.
        assert 2 * r.base * r.new / (r.base + r.new) == pytest.approx(r.hm, abs=0.015), (r.method, r.dataset)
    for m in methods:  # the authors' published averages are the means of the 11 per-dataset rows
        for field in ("base", "new"):
            mean = sum(getattr(by[m, d], field) for d in BENCHMARK_DATASETS) / 11
            assert mean == pytest.approx(getattr(by[m, "Average"], field), abs=0.01), (m, field)
    assert figures.published_inconsistencies(rows) == []
    assert (by["MaPLe", "Average"].base, by["MaPLe", "Average"].new, by["MaPLe", "Average"].hm) == (82.28, 75.14, 78.55)
    assert (by["MaPLe", "imagenet"].base, by["MaPLe", "imagenet"].new, by["MaPLe", "imagenet"].hm) == (76.66, 70.54, 73.47)
    assert (by["CLIP", "eurosat"].base, by["CLIP", "eurosat"].new) == (56.48, 64.05)
    with open(figures.PUBLISHED_BASE2NEW) as f:
        header = "".join(line for line in f if line.startswith("#"))
    assert "PUBLISHED" in header and "never re-run here" in header
    for cited in ("[OnPoKD]", "67506506598", "[LoGoPrompt]", "57435638739", "[RMAdapter]", "NOT used"):
        assert cited in header


def test_published_consistency_check(tmp_path):
    good = consistent_rows("Synthetic")
    assert len(figures.load_published(write_published(tmp_path / "good.csv", good))) == 12
    bad_hm = [",".join(line.split(",")[:4] + ["99.99"] + line.split(",")[5:]) if line.startswith("Synthetic,dtd,") else line
              for line in good]
    with pytest.raises(ValueError, match=r"bad_hm\.csv.*Synthetic dtd: HM 99\.99"):
        figures.load_published(write_published(tmp_path / "bad_hm.csv", bad_hm))
    # Base of one dataset off by 0.5 (HM rewritten to match): the Average no longer is the mean.
    fields = good[3].split(",")
    b, n = float(fields[2]) + 0.5, float(fields[3])
    bad_avg = good[:3] + [",".join(fields[:2] + [f"{b:.2f}", f"{n:.2f}", f"{2 * b * n / (b + n):.2f}"] + fields[5:])] + good[4:]
    with pytest.raises(ValueError, match=r"Synthetic Average: base .* mean of its 11 datasets"):
        figures.load_published(write_published(tmp_path / "bad_avg.csv", bad_avg))
    with pytest.raises(ValueError, match=r"row 2: dataset 'ImageNet' is not one of imagenet"):
        figures.load_published(write_published(tmp_path / "name.csv", ["CLIP,ImageNet,72.43,68.14,70.22,x\n"]))
    with pytest.raises(ValueError, match=r"row 3: a second row for CLIP Average"):
        figures.load_published(write_published(tmp_path / "twice.csv", ["CLIP,Average,69.34,74.22,71.70,x\n"] * 2))
    with pytest.raises(ValueError, match=r"CLIP Average has no source"):
        figures.load_published(write_published(tmp_path / "nosource.csv", ["CLIP,Average,69.34,74.22,71.70, \n"]))


def test_base2new_bars_beside_published_numbers(tmp_path):
    root = str(tmp_path / "base2new")
    base2new_tree(root, BENCHMARK_DATASETS)
    rows = base2new_rows(root, "MutualPrompt", "cfg", datasets=list(BENCHMARK_DATASETS), seeds=[1, 2])
    published = figures.load_published()
    fig = figures.base2new_figure({"MutualPrompt": rows}, published)
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["Base", "New", "HM"]
    labels = [t.get_text() for t in axes[0].get_xticklabels()]
    assert labels == list(BENCHMARK_DATASETS) + ["Average"]
    for ax in axes:  # every dataset and the average: ours and one published bar per method
        assert bars_per_group(ax) == {g: 1 + 5 for g in range(12)}
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[0] == "MutualPrompt (measured)"
    assert legend[1:] == [f"{m} (published)" for m in ("CLIP", "CoOp", "CoCoOp", "MaPLe", "PromptSRC")]
    caltech_base = bars(axes[0])[1].get_height()
    assert caltech_base == pytest.approx(81 + 1.5)  # seeds 1, 2 -> 82, 83
    eurosat = BENCHMARK_DATASETS.index("eurosat")
    in_eurosat = sorted(p.get_height() for p in bars(axes[1]) if round(p.get_x() + p.get_width() / 2) == eurosat)
    expected = [r.new for r in published if r.dataset == "eurosat"] + [70 + eurosat - 1.5]
    assert in_eurosat == pytest.approx(sorted(expected))
    text = " ".join(caption(fig).split())
    assert "published numbers, not re-run here" in text and "No published number" not in text
    figures.save(fig, str(tmp_path / "b2n.png"))
    assert (tmp_path / "b2n.png").read_bytes()[:4] == b"\x89PNG"


def test_per_dataset_published_bars_beside_ours(tmp_path):
    published = figures.load_published(write_published(tmp_path / "p.csv", consistent_rows("A") + consistent_rows("B")))
    root = str(tmp_path / "base2new")
    base2new_tree(root, BENCHMARK_DATASETS)
    rows = base2new_rows(root, "MutualPrompt", "cfg", datasets=list(BENCHMARK_DATASETS), seeds=[1, 2])
    fig = figures.base2new_figure({"MutualPrompt": rows}, published)
    for ax in fig.axes:  # every dataset and the average: ours and both published methods
        assert bars_per_group(ax) == {g: 3 for g in range(12)}
    dtd = BENCHMARK_DATASETS.index("dtd")
    a_dtd = next(r for r in published if r.method == "A" and r.dataset == "dtd")
    heights = {round(p.get_x() + p.get_width() / 2, 3): p.get_height() for p in bars(fig.axes[1])}
    assert a_dtd.new in [h for x, h in heights.items() if round(x) == dtd]
    assert "No published number" not in caption(fig)

    # Only some of our datasets have published rows: none drawn for the others, and the caption names them.
    partial = [r for r in published if r.method == "A" or r.dataset in ("dtd", "eurosat")]
    fig = figures.base2new_figure({"MutualPrompt": rows}, partial)
    counts = bars_per_group(fig.axes[2])
    assert counts[dtd] == counts[BENCHMARK_DATASETS.index("eurosat")] == 3
    assert counts[0] == 2 and counts[11] == 2  # imagenet, Average: ours and A
    others = [d for d in BENCHMARK_DATASETS if d not in ("dtd", "eurosat")] + ["Average"]
    assert f"No published number for B on: {', '.join(others)}." in " ".join(caption(fig).split())


def published_bars(ax):
    return [p for p in bars(ax) if (p.get_label() or "").endswith("(published)") or p.get_hatch()]


def tick_labels(ax):
    return [t.get_text() for t in ax.get_xticklabels()]


def test_toy_world_is_never_drawn_beside_published_numbers(tmp_path):
    root = str(tmp_path / "base2new")
    base2new_tree(root, ["toy_shapes"])
    rows = base2new_rows(root, "MutualPrompt", "cfg", datasets=["toy_shapes"], seeds=[1, 2])
    fig = figures.base2new_figure({"MutualPrompt": rows}, figures.load_published())
    assert [ax.get_title() for ax in fig.axes] == ["Base: toy world", "New: toy world", "HM: toy world"]
    for ax in fig.axes:
        assert tick_labels(ax) == ["toy_shapes"] and published_bars(ax) == [] and len(bars(ax)) == 1
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["MutualPrompt (measured)"]
    text = " ".join(caption(fig).split())
    assert "The toy world has its own panels: the published numbers are for the 11 real benchmark datasets" in text
    assert "Hatched" not in text and "Average" not in text
    for seed in (1, 2):  # no New result at all: a figure that says so, not an error at the end of a sweep
        os.remove(f"{root}/test_new/toy_shapes/shots_16/MutualPrompt/cfg/seed{seed}/log.txt")
    rows = base2new_rows(root, "MutualPrompt", "cfg", datasets=["toy_shapes"], seeds=[1, 2])
    fig = figures.base2new_figure({"MutualPrompt": rows}, figures.load_published())
    assert fig.axes == [] and caption(fig) == figures.NOTHING_TO_DRAW


def test_toy_world_has_its_own_panels_beside_benchmark_datasets(tmp_path):
    root = str(tmp_path / "base2new")
    base2new_tree(root, ["toy_shapes", "dtd", "eurosat"])
    rows = base2new_rows(root, "MutualPrompt", "cfg", datasets=["toy_shapes", "dtd", "eurosat"], seeds=[1, 2])
    fig = figures.base2new_figure({"MutualPrompt": rows}, figures.load_published())
    benchmark, toy = fig.axes[:3], fig.axes[3:]
    assert [ax.get_title() for ax in benchmark] == ["Base", "New", "HM"]
    assert [ax.get_title() for ax in toy] == ["Base: toy world", "New: toy world", "HM: toy world"]
    for ax in benchmark:
        assert tick_labels(ax) == ["dtd", "eurosat", "Average", "11-dataset average"]
        assert bars_per_group(ax) == {0: 6, 1: 6, 2: 1, 3: 5}  # ours + 5 published on dtd and eurosat
    for ax in toy:
        assert tick_labels(ax) == ["toy_shapes"] and published_bars(ax) == []
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend.count("MutualPrompt (measured)") == 1 and len(legend) == 6
    text = " ".join(caption(fig).split())
    assert "No published number" not in text  # our 2-dataset Average is not comparable with theirs
    assert "Hatched: published numbers" in text and "The toy world has its own panels" in text


def error_bars(ax):
    return [c for c in ax.containers if type(c).__name__ == "ErrorbarContainer"]


def test_caption_says_what_bars_and_error_bars_are(tmp_path):
    root = str(tmp_path / "base2new")
    base2new_tree(root, ["dtd", "eurosat"], seeds=(1, 2, 3))
    three = base2new_rows(root, "MutualPrompt", "cfg", datasets=["dtd", "eurosat"], seeds=[1, 2, 3])
    fig = figures.base2new_figure({"MutualPrompt": three})
    assert " ".join(caption(fig).split()) == (
        "Bars: mean over 3 seeds; error bars: ± 1 std over the seeds (population std). Average: the mean of the "
        "datasets' means; HM: the harmonic mean of Base and New (neither has error bars).")
    (base_errors,) = error_bars(fig.axes[0])
    assert len(base_errors.lines[2][0].get_segments()) == 2  # dtd and eurosat; none on the Average
    one = base2new_rows(root, "MutualPrompt", "cfg", datasets=["dtd", "eurosat"], seeds=[1])
    for row in one:
        row.base.values.pop("seed2"), row.base.values.pop("seed3"), row.new.values.pop("seed2"), row.new.values.pop("seed3")
    fig = figures.base2new_figure({"MutualPrompt": one})
    assert caption(fig).startswith("Bars: one seed's result (no error bars).")
    assert all(error_bars(ax) == [] for ax in fig.axes)


def summary(v):
    return SeedSummary(values={"seed1": v, "seed2": v + 2})


def few_shot_series():
    return {"MutualPrompt": {ds: {k: summary(50 + k + i) for k in (1, 2, 4, 8, 16)} for i, ds in enumerate(["dtd", "eurosat"])},
            "ablation": {ds: {k: summary(40 + k) for k in (1, 2, 4, 8, 16)} for ds in ["dtd", "eurosat"]}}


def test_few_shot_curves():
    fig = figures.few_shot_figure(few_shot_series())
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["dtd", "eurosat", "Average"]
    for ax in visible:
        assert len(ax.get_lines()) >= 2
        assert list(ax.get_lines()[0].get_xdata()) == [1, 2, 4, 8, 16]
        assert tick_labels(ax) == ["1", "2", "4", "8", "16"] and list(ax.get_xticks()) == [1, 2, 4, 8, 16]
        assert ax.xaxis.get_minor_ticks() == []
    assert list(visible[2].get_lines()[0].get_ydata()) == [51.5 + k for k in (1, 2, 4, 8, 16)]
    text = " ".join(caption(fig).split())
    assert text.startswith("Lines: mean over 2 seeds; error bars: ± 1 std over the seeds (population std). Average: "
                           "the mean over the datasets (no error bars).")
    assert "No zero-shot result for: dtd, eurosat" in text


def zero_shot_lines(ax):
    return [line for line in ax.get_lines() if line.get_label() == "zero-shot CLIP"]


def test_few_shot_figure_carries_the_zero_shot_line():
    zero_shot = {"dtd": SeedSummary(values={"seed1": 44.0}), "eurosat": SeedSummary(values={"seed1": 48.0})}
    fig = figures.few_shot_figure(few_shot_series(), zero_shot)
    dtd, eurosat, average = [ax for ax in fig.axes if ax.get_visible()]
    for ax, value in ((dtd, 44.0), (eurosat, 48.0), (average, 46.0)):
        (line,) = zero_shot_lines(ax)
        assert list(line.get_ydata()) == [value, value] and line.get_linestyle() == "--"
    assert "zero-shot CLIP" in [t.get_text() for t in dtd.get_legend().get_texts()]
    text = " ".join(caption(fig).split())
    assert "Dashed: zero-shot CLIP on the same test set" in text and "No zero-shot result" not in text

    fig = figures.few_shot_figure(few_shot_series(), {"dtd": SeedSummary(), "eurosat": zero_shot["eurosat"]})
    dtd, eurosat, average = [ax for ax in fig.axes if ax.get_visible()]
    assert len(zero_shot_lines(eurosat)) == 1 and zero_shot_lines(dtd) == zero_shot_lines(average) == []
    assert "zero-shot CLIP" in [t.get_text() for t in dtd.get_legend().get_texts()]  # the one legend names it
    assert "No zero-shot result for: dtd (" in " ".join(caption(fig).split())


def linear_probe_lines(ax):
    return [line for line in ax.get_lines() if line.get_label() == figures.LINEAR_PROBE_LABEL]


def test_few_shot_figure_carries_the_linear_probe_curve():
    probe = {"dtd": {k: summary(30 + k) for k in (1, 2, 4, 8, 16)},
             "eurosat": {k: summary(20 + k) for k in (1, 2, 4)}}
    fig = figures.few_shot_figure(few_shot_series(), None, probe)
    dtd, eurosat, average = [ax for ax in fig.axes if ax.get_visible()]
    for ax, shots, means in ((dtd, [1, 2, 4, 8, 16], [31 + k for k in (1, 2, 4, 8, 16)]),
                             (eurosat, [1, 2, 4], [21 + k for k in (1, 2, 4)]),
                             (average, [1, 2, 4], [26 + k for k in (1, 2, 4)])):  # the shots both have
        (line,) = linear_probe_lines(ax)
        assert list(line.get_xdata()) == shots and list(line.get_ydata()) == means and line.get_linestyle() == ":"
    assert figures.LINEAR_PROBE_LABEL in [t.get_text() for t in dtd.get_legend().get_texts()]
    text = " ".join(caption(fig).split())
    assert "Dotted: linear-probe CLIP" in text and "No linear-probe result" not in text

    fig = figures.few_shot_figure(few_shot_series(), None, {"dtd": probe["dtd"], "eurosat": {1: SeedSummary()}})
    dtd, eurosat, average = [ax for ax in fig.axes if ax.get_visible()]
    assert len(linear_probe_lines(dtd)) == 1 and linear_probe_lines(eurosat) == linear_probe_lines(average) == []
    assert "No linear-probe result for: eurosat (" in " ".join(caption(fig).split())


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


def test_the_sweeps_few_shot_figure_has_the_zero_shot_line_and_the_linear_probe_curve(repo_root, tmp_path, monkeypatch):
    from mutual_prompt.tools.sweep import plots
    from mutual_prompt.tools.sweep.plan import Settings, expand

    s = Settings(repo_root=repo_root, data=str(tmp_path / "data"), output=str(tmp_path / "out"), cfg="toy",
                 datasets=("toy_shapes",), shot_list=(1, 2, 4), seeds=(1,))
    variants = expand("few_shot", s)
    for run in variants[0].runs:
        write_log(run.output_dir, f"{run.end_signal}\n* accuracy: {70.0 if run.kind == 'zero_shot' else 60.0}%\n")
    drawn = {}
    monkeypatch.setattr(figures, "save", lambda fig, path: drawn.setdefault(os.path.basename(path), fig) and path)
    plots.write_figures(repo_root, variants, str(tmp_path / "figures"))
    (ax,) = [ax for ax in drawn["few_shot.png"].axes if ax.get_visible()]
    (line,) = zero_shot_lines(ax)
    assert list(line.get_ydata()) == [70.0, 70.0]
    assert tick_labels(ax) == ["1", "2", "4"]
    (probe,) = linear_probe_lines(ax)  # the linear probe's runs, read from their folders
    assert list(probe.get_xdata()) == [1, 2, 4] and list(probe.get_ydata()) == [60.0, 60.0, 60.0]
