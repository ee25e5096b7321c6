"""Figures of a protocol's results (matplotlib, the optional extra ``plot``).

Each function returns the ``matplotlib.figure.Figure`` it drew, so that callers (and tests) can read
the bars and lines back; ``save`` writes it atomically. Published numbers of other methods come from
``mutual_prompt/tools/published_base2new_vitb16.csv``, each row with its source, and are drawn hatched
and labelled "published" (they were not re-run here); they share axes only with measured numbers of
the 11 benchmark datasets, never with the toy world's. Each figure's caption says what its bars or
lines and error bars are.
"""
import csv
import math
import os
import statistics
import textwrap
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from mutual_prompt.files import atomic_path
from mutual_prompt.tools.results import (
    BENCHMARK_DATASETS,
    TOY_DATASETS,
    Base2NewRow,
    SeedSummary,
    base2new_average,
    complete_rows,
    harmonic_mean,
    training_curve,
)

PUBLISHED_BASE2NEW = os.path.join(os.path.dirname(os.path.abspath(__file__)), "published_base2new_vitb16.csv")
METRICS = ("Base", "New", "HM")
NOTHING_TO_DRAW = "No dataset has both a Base and a New result yet: nothing to draw."
PUBLISHED_DATASETS = BENCHMARK_DATASETS + ("Average",)


def _pyplot():
    try:
        import matplotlib
    except ImportError as e:
        raise SystemExit('Figures need matplotlib: pip install -e ".[plot]" (or pip install matplotlib)') from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@dataclass(frozen=True)
class PublishedResult:
    method: str
    dataset: str  # a dataset name as in configs/datasets/, or "Average"
    base: float
    new: float
    hm: float
    source: str


def load_published(path: str = PUBLISHED_BASE2NEW) -> List[PublishedResult]:
    """The published rows of ``path``, checked: known dataset names, one row per method and dataset, a
    source on every row, and numbers consistent with each other (see ``published_inconsistencies``)."""
    with open(path, encoding="utf-8") as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    out = []
    seen = set()
    for i, row in enumerate(rows, start=2):
        try:
            result = PublishedResult(row["method"], row["dataset"], float(row["base"]), float(row["new"]),
                                     float(row["hm"]), row["source"].strip())
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"{path}: row {i} needs method, dataset, base, new, hm, source as numbers/text: {row}") from e
        if result.dataset not in PUBLISHED_DATASETS:
            raise ValueError(f"{path}: row {i}: dataset {result.dataset!r} is not one of {', '.join(PUBLISHED_DATASETS)}")
        if not result.source:
            raise ValueError(f"{path}: row {i}: {result.method} {result.dataset} has no source")
        if (result.method, result.dataset) in seen:
            raise ValueError(f"{path}: row {i}: a second row for {result.method} {result.dataset}")
        seen.add((result.method, result.dataset))
        out.append(result)
    problems = published_inconsistencies(out)
    if problems:
        raise ValueError(f"{path}: numbers that do not agree with each other: " + "; ".join(problems))
    return out


def _hm_tolerance(base: float, new: float) -> float:
    """How far a published HM may be from 2BN/(B+N) of the published B and N, all three rounded to 0.01:
    0.005 for the HM's own rounding plus 0.005 times the sum of dHM/dB and dHM/dN, 2(B^2+N^2)/(B+N)^2."""
    return 0.005 + 0.005 * 2 * (base ** 2 + new ** 2) / (base + new) ** 2 + 1e-9


def published_inconsistencies(rows: Sequence[PublishedResult]) -> List[str]:
    """What in ``rows`` does not add up: an HM that is not the harmonic mean of its Base and New, and, for a
    method with all 11 datasets and an Average row, an average Base or New that is not the mean of its
    datasets' (within 0.01, the rounding of the 11 numbers and of their mean)."""
    problems = []
    for r in rows:
        hm = harmonic_mean(r.base, r.new)
        if abs(hm - r.hm) > _hm_tolerance(r.base, r.new):
            problems.append(f"{r.method} {r.dataset}: HM {r.hm:.2f}, but 2BN/(B+N) = {hm:.3f}")
    for method in dict.fromkeys(r.method for r in rows):
        by_dataset = {r.dataset: r for r in rows if r.method == method}
        if "Average" not in by_dataset or not set(BENCHMARK_DATASETS) <= set(by_dataset):
            continue
        for name in ("base", "new"):
            mean = statistics.fmean(getattr(by_dataset[ds], name) for ds in BENCHMARK_DATASETS)
            published = getattr(by_dataset["Average"], name)
            if abs(mean - published) > 0.01 + 1e-9:
                problems.append(f"{method} Average: {name} {published:.2f}, but the mean of its 11 datasets is {mean:.3f}")
    return problems


def _measured_values(rows: Sequence[Base2NewRow]) -> Dict[str, tuple]:
    """dataset -> ((base, new, hm), (base std, new std, nan)), std nan where fewer than two seeds, plus
    "Average" (no std) over the complete rows when there are two or more."""
    def std(summary: SeedSummary) -> float:
        return summary.std if summary.n >= 2 else math.nan

    complete = complete_rows(rows)
    values = {r.dataset: ((r.base.mean, r.new.mean, r.hm), (std(r.base), std(r.new), math.nan)) for r in complete}
    average = base2new_average(rows)
    if average and len(complete) > 1:
        values["Average"] = (average, (math.nan,) * 3)
    return values


@dataclass
class _Part:
    """One row of Base / New / HM panels: its groups of bars and its series (label -> group -> values)."""

    label: str  # "" for the benchmark datasets, else what the panels' titles add ("toy world")
    groups: List[str]
    series: Dict[str, Dict[str, tuple]]

    @property
    def stacked(self) -> bool:  # many groups: Base, New and HM one above the other, each the full width
        return len(self.groups) > 4

    def width(self) -> float:
        if self.stacked:
            return max(9.0, len(self.groups) * (0.3 + 0.2 * len(self.series)))
        return max(9.0, 0.9 * len(self.groups) * 3)


def _groups(series: Mapping[str, Mapping[str, tuple]]) -> List[str]:
    groups: List[str] = []
    for vals in series.values():
        groups += [g for g in vals if g not in groups and g != "Average"]
    return groups + (["Average"] if any("Average" in vals for vals in series.values()) else [])


def _benchmark_part(measured: Mapping[str, Sequence[Base2NewRow]], published: Sequence[PublishedResult]):
    """The part of the benchmark datasets, with published bars, and per published method the groups it
    has no number for (None when no benchmark dataset was measured)."""
    series = {f"{name} (measured)": _measured_values([r for r in rows if r.dataset in BENCHMARK_DATASETS])
              for name, rows in measured.items()}
    series = {label: vals for label, vals in series.items() if vals}
    if not series:
        return None, {}
    groups = _groups(series)
    # A published average is over the 11 benchmark datasets: beside ours only when we ran those 11.
    published_avg = "Average" if set(groups) - {"Average"} == set(BENCHMARK_DATASETS) else "11-dataset average"
    missing = {}
    for method in dict.fromkeys(p.method for p in published):
        vals = {published_avg if p.dataset == "Average" else p.dataset: ((p.base, p.new, p.hm), (math.nan,) * 3)
                for p in published if p.method == method}
        if published_avg in vals and published_avg not in groups:
            groups.append(published_avg)
        if any(g in vals for g in groups):
            series[f"{method} (published)"] = vals
        # Where a published number could stand: every group but our own average when it is not over the 11.
        missing[method] = [g for g in groups if g not in vals and (g != "Average" or published_avg == "Average")]
    return _Part("", groups, series), missing


def _draw_part(fig, grid, row: int, part: _Part) -> int:
    """Draw ``part``'s three panels from grid row ``row``; return the next free row."""
    n_series = len(part.series)
    width = 0.8 / max(1, n_series)
    for m, metric in enumerate(METRICS):
        ax = fig.add_subplot(grid[row + m, :] if part.stacked else grid[row, m])
        for i, (label, vals) in enumerate(part.series.items()):
            names = [name for name in part.groups if name in vals]
            xs = [part.groups.index(name) + i * width - 0.4 + width / 2 for name in names]
            ys = [vals[name][0][m] for name in names]
            published_bar = label.endswith("(published)")
            ax.bar(xs, ys, width, label=label, hatch="//" if published_bar else None,
                   alpha=0.6 if published_bar else 1.0)
            spread = [(x, y, vals[name][1][m]) for x, y, name in zip(xs, ys, names) if not math.isnan(vals[name][1][m])]
            if spread:
                ax.errorbar([x for x, _, _ in spread], [y for _, y, _ in spread], yerr=[e for _, _, e in spread],
                            fmt="none", ecolor="black", capsize=2, label="_nolegend_")
        ax.set_title(f"{metric}: {part.label}" if part.label else metric)
        ax.set_xticks(range(len(part.groups)), part.groups, rotation=30 if part.stacked else 45, ha="right")
        ax.set_ylim(0, 100)
        if part.stacked or m == 0:
            ax.set_ylabel("accuracy (%)")
    return row + (3 if part.stacked else 1)


def _seeds_phrase(summaries: Sequence[SeedSummary], what: str) -> str:
    """``what`` (e.g. "Bars") and the error bars, as in "Bars: mean over 3 seeds; error bars: ± 1 std"."""
    counts = sorted({s.n for s in summaries if s.n})
    if counts == [1]:
        return f"{what}: one seed's result (no error bars)."
    over = f"{counts[0]} seeds" if len(counts) == 1 else f"{counts[0]} to {counts[-1]} seeds"
    where = "" if counts[0] >= 2 else " where there are two or more"
    return f"{what}: mean over {over}; error bars: ± 1 std over the seeds (population std){where}."


def base2new_figure(measured: Mapping[str, Sequence[Base2NewRow]], published: Sequence[PublishedResult] = (),
                    title: str = "Base-to-new generalisation"):
    """Base, New and HM panels; one group of bars per dataset (and the average of two or more), one bar
    per method.

    ``measured`` maps a label (e.g. "MutualPrompt") to its rows. Rows of the 11 benchmark datasets are
    drawn beside the published methods' bars; any other dataset (the toy world) gets its own row of
    panels, without published numbers, which are not comparable with it. The caption says what the bars
    and error bars are, and per published method the datasets it has no number for."""
    plt = _pyplot()
    part, missing = _benchmark_part(measured, published)
    parts = [part] if part else []
    others = [r for rows in measured.values() for r in rows if r.dataset not in BENCHMARK_DATASETS]
    if others:
        label = "toy world" if all(r.dataset in TOY_DATASETS for r in others) else "not benchmark datasets"
        series = {f"{name} (measured)": _measured_values([r for r in rows if r.dataset not in BENCHMARK_DATASETS])
                  for name, rows in measured.items()}
        series = {name: vals for name, vals in series.items() if vals}
        if series:
            parts.append(_Part(label, _groups(series), series))
    if not parts:  # e.g. a sweep whose runs failed: the figure says so rather than stopping the report
        fig = plt.figure(figsize=(9.0, 2.0))
        fig.text(0.5, 0.5, NOTHING_TO_DRAW, ha="center", va="center")
        fig.suptitle(title)
        return fig
    heights = [3.0 if p.stacked else 3.6 for p in parts for _ in range(3 if p.stacked else 1)]
    fig = plt.figure(figsize=(max(p.width() for p in parts), sum(heights) + 0.5))
    grid = fig.add_gridspec(len(heights), 3, height_ratios=heights)
    row = 0
    for p in parts:
        row = _draw_part(fig, grid, row, p)
    summaries = [s for rows in measured.values() for r in complete_rows(rows) for s in (r.base, r.new)]
    average = " Average: the mean of the datasets' means;" if any("Average" in p.groups for p in parts) else ""
    lines = [f"{_seeds_phrase(summaries, 'Bars')}{average} HM: the harmonic mean of Base and New "
             f"({'neither has' if average else 'no'} error bars)."]
    if published and part:
        lines += _published_caption(missing)
    if published and others:
        lines.append("The toy world has its own panels: the published numbers are for the 11 real benchmark "
                     "datasets and say nothing about it." if parts[-1].label == "toy world" else
                     "Datasets outside the 11 of the benchmark have their own panels, without published numbers.")
    width_chars = int(fig.get_figwidth() * 14)
    caption = "\n".join(textwrap.fill(line, width_chars) for line in lines)
    height = fig.get_figheight()
    caption_height = (0.16 * (caption.count("\n") + 1) + 0.05) / height
    fig.text(0.5, 0.01, caption, ha="center", va="bottom", fontsize="x-small")
    handles, labels = _unique_handles(fig.axes)
    legend_rows = math.ceil(len(labels) / 3)
    fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.01 + caption_height),
               ncol=min(3, len(labels)), fontsize="small")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.02 + caption_height + (0.22 * legend_rows + 0.15) / height, 1, 1))
    return fig


def _unique_handles(axes) -> Tuple[list, List[str]]:
    """The legend entries of all ``axes``, each label once."""
    handles, labels = [], []
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    return handles, labels


def _published_caption(missing: Mapping[str, Sequence[str]]) -> List[str]:
    """Says that hatched bars are published numbers, and for which of our datasets there are none."""
    lines = [f"Hatched: published numbers, not re-run here (each with its source in {os.path.basename(PUBLISHED_BASE2NEW)})."]
    by_gap: Dict[tuple, List[str]] = {}
    for method, datasets in missing.items():
        if datasets:
            by_gap.setdefault(tuple(datasets), []).append(method)
    for datasets, methods in by_gap.items():
        lines.append(f"No published number for {', '.join(methods)} on: {', '.join(datasets)}.")
    return lines


def few_shot_figure(series: Mapping[str, Mapping[str, Mapping[int, SeedSummary]]],
                    zero_shot: Optional[Mapping[str, SeedSummary]] = None,
                    linear_probe: Optional[Mapping[str, Mapping[int, SeedSummary]]] = None,
                    title: str = "Few-shot learning"):
    """Accuracy vs shots per class (ticks at the shots run: 1, 2, 4, 8, 16 on a log scale): one panel per
    dataset plus their average, one line per series (mean, error bars ± 1 std over seeds), zero-shot
    CLIP as a dashed horizontal line where ``zero_shot`` (dataset -> its result) has it, and linear-probe
    CLIP as a dotted gray curve where ``linear_probe`` (dataset -> shots -> its result) has results (CoOp's
    figure). The caption says what the lines and error bars are, and which datasets have no reference
    result."""
    plt = _pyplot()
    from matplotlib.ticker import NullLocator

    zero_shot = {ds: s for ds, s in (zero_shot or {}).items() if s.n}
    linear_probe = {ds: {k: s for k, s in by_k.items() if s.n} for ds, by_k in (linear_probe or {}).items()}
    linear_probe = {ds: by_k for ds, by_k in linear_probe.items() if by_k}
    datasets = list(dict.fromkeys(ds for by_ds in series.values() for ds in by_ds))
    panels = datasets + (["Average"] if len(datasets) > 1 else [])
    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(5.0, 3.2 * cols), 2.8 * rows + 0.8), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        shots_drawn: List[int] = []
        for label, by_ds in series.items():
            if panel == "Average":
                shots = sorted({k for ds in by_ds.values() for k in ds})
                means = [statistics.fmean(by_ds[ds][k].mean for ds in by_ds) for k in shots]
                ax.plot(shots, means, marker="o", label=label)
            elif panel in by_ds:
                shots = sorted(by_ds[panel])
                spread = [by_ds[panel][k].std if by_ds[panel][k].n >= 2 else 0.0 for k in shots]
                ax.errorbar(shots, [by_ds[panel][k].mean for k in shots], yerr=spread if any(spread) else None,
                            marker="o", capsize=2, label=label)
            else:
                continue
            shots_drawn += [k for k in shots if k not in shots_drawn]
        if panel == "Average" and all(ds in zero_shot for ds in datasets):
            ax.axhline(statistics.fmean(zero_shot[ds].mean for ds in datasets), color="gray", linestyle="--",
                       label="zero-shot CLIP")
        elif panel in zero_shot:
            ax.axhline(zero_shot[panel].mean, color="gray", linestyle="--", label="zero-shot CLIP")
        probe = _linear_probe_curve(linear_probe, panel, datasets)
        if probe:
            ax.plot(list(probe), list(probe.values()), color="gray", linestyle=":", marker="s", markersize=4,
                    label=LINEAR_PROBE_LABEL)
            shots_drawn += [k for k in probe if k not in shots_drawn]
        ax.set_title(panel)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(shots_drawn), [str(k) for k in sorted(shots_drawn)])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("shots per class")
        ax.set_ylabel("accuracy (%)")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    axes.flat[0].legend(*_unique_handles(axes.flat), fontsize="small")
    summaries = [s for by_ds in series.values() for by_k in by_ds.values() for s in by_k.values()]
    average = " Average: the mean over the datasets (no error bars)." if "Average" in panels else ""
    lines = [_seeds_phrase(summaries, "Lines") + average]
    absent = [ds for ds in datasets if ds not in zero_shot]
    if len(absent) < len(datasets):
        lines.append("Dashed: zero-shot CLIP on the same test set (ZeroshotMP, the same backbone, no training).")
    if absent:
        lines.append(f"No zero-shot result for: {', '.join(absent)} (run bash scripts/reproduce_few_shot.sh or the "
                     "few_shot sweep, which evaluate it once per dataset).")
    no_probe = [ds for ds in datasets if ds not in linear_probe]
    if len(no_probe) < len(datasets):
        lines.append("Dotted: linear-probe CLIP (LinearProbeMP: logistic regression on the same backbone's image "
                     "features, the same shots; mean over its seeds).")
    if no_probe:
        lines.append(f"No linear-probe result for: {', '.join(no_probe)} (the few_shot protocol fits it with each "
                     "number of shots and seed).")
    caption = "\n".join(textwrap.fill(line, int(fig.get_figwidth() * 14)) for line in lines)
    fig.text(0.5, 0.01, caption, ha="center", va="bottom", fontsize="x-small")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, (0.16 * (caption.count("\n") + 1) + 0.1) / fig.get_figheight(), 1, 1))
    return fig


LINEAR_PROBE_LABEL = "linear-probe CLIP"


def _linear_probe_curve(linear_probe: Mapping[str, Mapping[int, SeedSummary]], panel: str,
                        datasets: Sequence[str]) -> Dict[int, float]:
    """Shots -> mean accuracy of linear-probe CLIP on ``panel``; on the Average panel, the mean over
    the datasets at the shots every dataset has."""
    if panel != "Average":
        return {k: linear_probe[panel][k].mean for k in sorted(linear_probe.get(panel, {}))}
    if not all(ds in linear_probe for ds in datasets):
        return {}
    shots = sorted(set.intersection(*(set(linear_probe[ds]) for ds in datasets)))
    return {k: statistics.fmean(linear_probe[ds][k].mean for ds in datasets) for k in shots}


def training_figure(run_dirs: Mapping[str, str], title: str = "Training"):
    """Per-epoch training loss and accuracy (from each run's log.txt), one line per run."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for label, run_dir in run_dirs.items():
        curves = training_curve(run_dir)
        for ax, name in zip(axes, ("loss", "acc")):
            points = sorted(curves.get(name, {}).items())
            if points:
                ax.plot([e for e, _ in points], [v for _, v in points], marker="o", label=label)
    from matplotlib.ticker import MaxNLocator

    for ax, name in zip(axes, ("training loss", "training accuracy (%)")):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
    if 0 < len(axes[0].get_lines()) <= 12:  # beyond that a legend hides the curves
        axes[0].legend(fontsize="x-small")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def save(fig, path: str, dpi: Optional[int] = 110) -> str:
    """Write the figure atomically (format from the extension) and close it."""
    plt = _pyplot()
    ext = os.path.splitext(path)[1].lstrip(".") or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=ext, dpi=dpi)
    plt.close(fig)
    return path
