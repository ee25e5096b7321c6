"""Figures of a protocol's results (matplotlib, the optional extra ``plot``).

Each function returns the ``matplotlib.figure.Figure`` it drew, so that callers (and tests) can read
the bars and lines back; ``save`` writes it atomically. Published numbers of other methods come from
``mutual_prompt/tools/published_base2new_vitb16.csv``, each row with its source, and are drawn hatched
and labelled "published" (they were not re-run here).
"""
import csv
import math
import os
import statistics
import textwrap
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence

from mutual_prompt.files import atomic_path
from mutual_prompt.tools.results import (
    BENCHMARK_DATASETS,
    Base2NewRow,
    SeedSummary,
    base2new_average,
    complete_rows,
    harmonic_mean,
    training_curve,
)

PUBLISHED_BASE2NEW = os.path.join(os.path.dirname(os.path.abspath(__file__)), "published_base2new_vitb16.csv")
METRICS = ("Base", "New", "HM")
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
    """dataset -> ((base, new, hm), (base std, new std, 0)), plus "Average" over complete rows."""
    values = {r.dataset: ((r.base.mean, r.new.mean, r.hm), (r.base.std, r.new.std, 0.0)) for r in complete_rows(rows)}
    average = base2new_average(rows)
    if average:
        values["Average"] = (average, (0.0, 0.0, 0.0))
    return values


def base2new_figure(measured: Mapping[str, Sequence[Base2NewRow]], published: Sequence[PublishedResult] = (),
                    title: str = "Base-to-new generalisation"):
    """Three panels (Base, New, HM); one group of bars per dataset and the average, one bar per method.

    ``measured`` maps a label (e.g. "MutualPrompt") to its rows; published methods add a bar to each
    group they report (none to datasets they do not, e.g. the toy world), and the figure's caption names,
    per method, the datasets it has no published number for."""
    plt = _pyplot()
    series = {f"{name} (measured)": _measured_values(rows) for name, rows in measured.items()}
    groups: List[str] = []
    for vals in series.values():
        groups += [g for g in vals if g not in groups and g != "Average"]
    groups.append("Average")
    # A published average is over the 11 benchmark datasets: beside ours only when we ran those 11.
    published_avg = "Average" if set(groups[:-1]) == set(BENCHMARK_DATASETS) else "11-dataset average"
    published_vals = {}
    for method in dict.fromkeys(p.method for p in published):
        vals = {published_avg if p.dataset == "Average" else p.dataset: ((p.base, p.new, p.hm), (0.0, 0.0, 0.0))
                for p in published if p.method == method}
        if published_avg in vals and published_avg not in groups:
            groups.append(published_avg)
        if any(g in vals for g in groups):
            series[f"{method} (published)"] = vals
        published_vals[method] = vals
    # Where a published number could stand: every group but our own average when it is not over the 11.
    comparable = [g for g in groups if g != "Average" or published_avg == "Average"]
    missing = {method: [g for g in comparable if g not in vals] for method, vals in published_vals.items()}
    stacked = len(groups) > 4  # many groups: Base, New and HM one above the other, each the full width
    if stacked:
        fig, axes = plt.subplots(3, 1, figsize=(max(9.0, len(groups) * (0.3 + 0.2 * len(series))), 9.5))
    else:
        fig, axes = plt.subplots(1, 3, figsize=(max(9.0, 0.9 * len(groups) * 3), 4.4), sharey=True)
    width = 0.8 / max(1, len(series))
    for m, (ax, metric) in enumerate(zip(axes, METRICS)):
        for i, (label, vals) in enumerate(series.items()):
            xs = [g + i * width - 0.4 + width / 2 for g, name in enumerate(groups) if name in vals]
            ys = [vals[name][0][m] for name in groups if name in vals]
            errs = [vals[name][1][m] for name in groups if name in vals]
            published_bar = label.endswith("(published)")
            ax.bar(xs, ys, width, yerr=None if published_bar else errs, label=label, hatch="//" if published_bar else None,
                   alpha=0.6 if published_bar else 1.0, capsize=2)
        ax.set_title(metric)
        ax.set_xticks(range(len(groups)), groups, rotation=30 if stacked else 45, ha="right")
        ax.set_ylim(0, 100)
        if stacked or m == 0:
            ax.set_ylabel("accuracy (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    height = fig.get_figheight()
    caption_height = 0.0
    if published:
        caption = _published_caption(missing, width_chars=int(fig.get_figwidth() * 14))
        caption_height = (0.16 * (caption.count("\n") + 1) + 0.05) / height
        fig.text(0.5, 0.01, caption, ha="center", va="bottom", fontsize="x-small")
    legend_rows = math.ceil(len(labels) / 3)
    fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.01 + caption_height),
               ncol=min(3, len(labels)), fontsize="small")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.02 + caption_height + (0.22 * legend_rows + 0.15) / height, 1, 1))
    return fig


def _published_caption(missing: Mapping[str, Sequence[str]], width_chars: int) -> str:
    """Says that hatched bars are published numbers, and for which of our datasets there are none."""
    lines = [f"Hatched: published numbers, not re-run here (each with its source in {os.path.basename(PUBLISHED_BASE2NEW)})."]
    by_gap: Dict[tuple, List[str]] = {}
    for method, datasets in missing.items():
        if datasets:
            by_gap.setdefault(tuple(datasets), []).append(method)
    for datasets, methods in by_gap.items():
        lines.append(f"No published number for {', '.join(methods)} on: {', '.join(datasets)}.")
    return "\n".join(textwrap.fill(line, width_chars) for line in lines)


def few_shot_figure(series: Mapping[str, Mapping[str, Mapping[int, SeedSummary]]], title: str = "Few-shot learning"):
    """Accuracy vs shots: one panel per dataset plus their average, one line per series (mean ± std)."""
    plt = _pyplot()
    datasets = list(dict.fromkeys(ds for by_ds in series.values() for ds in by_ds))
    panels = datasets + (["Average"] if len(datasets) > 1 else [])
    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        for label, by_ds in series.items():
            if panel == "Average":
                shots = sorted({k for ds in by_ds.values() for k in ds})
                means = [statistics.fmean(by_ds[ds][k].mean for ds in by_ds) for k in shots]
                ax.plot(shots, means, marker="o", label=label)
            elif panel in by_ds:
                shots = sorted(by_ds[panel])
                ax.errorbar(shots, [by_ds[panel][k].mean for k in shots], yerr=[by_ds[panel][k].std for k in shots],
                            marker="o", capsize=2, label=label)
        ax.set_title(panel)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("shots per class")
        ax.set_ylabel("accuracy (%)")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


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
