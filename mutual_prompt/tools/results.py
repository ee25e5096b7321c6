"""Read accuracies from Dassl/CoOp ``log.txt`` files and summarise them over seeds.

A run directory holds ``log.txt`` and, when it was restarted, ``log.txt-<timestamp>`` files (Dassl
never overwrites a log). The result of a run is the last ``* <keyword>: X%`` line that follows the end
signal ("Finish training" for training runs, "=> result" for test-only runs) in the newest log that
has one.
"""
import math
import os
import re
import statistics
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

TRAIN_END_SIGNAL = "Finish training"
TEST_END_SIGNAL = "=> result"
# The 11 datasets of the base-to-new and few-shot protocols (CoCoOp's order, as the scripts run them).
BENCHMARK_DATASETS = ("imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
                      "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101")
SEED_DIR = re.compile(r"^seed(\d+)$")


def _log_files(run_dir: str) -> List[str]:
    names = [n for n in os.listdir(run_dir) if n == "log.txt" or n.startswith("log.txt-")]
    # "log.txt" is the first log of a run; the timestamped ones follow in name order.
    names.sort(key=lambda n: (n != "log.txt", n))
    return [os.path.join(run_dir, n) for n in names]


def parse_log(fpath: str, keyword: str = "accuracy", end_signal: str = TRAIN_END_SIGNAL) -> Optional[float]:
    """The last ``* keyword: X%`` value after ``end_signal`` in one log file, or None."""
    pattern = re.compile(rf"\* {re.escape(keyword)}: ([\.\deE+-]+)%")
    seen_signal = False
    value = None
    with open(fpath, "r", encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if line == end_signal:
                seen_signal = True
            match = pattern.search(line)
            if match and seen_signal:
                value = float(match.group(1))
    return value


def parse_run(run_dir: str, keyword: str = "accuracy", end_signal: str = TRAIN_END_SIGNAL) -> Optional[float]:
    """The result of one run directory (newest log with a result), or None if it has none."""
    if not os.path.isdir(run_dir):
        return None
    for fpath in reversed(_log_files(run_dir)):
        value = parse_log(fpath, keyword, end_signal)
        if value is not None:
            return value
    return None


@dataclass
class SeedSummary:
    """Per-seed values of one experiment, and the seeds that had no result."""

    values: Dict[str, float] = field(default_factory=dict)
    missing: List[str] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values.values()) if self.values else math.nan

    @property
    def std(self) -> float:
        # Population std, as CoOp's parse_test_res.py (numpy's default).
        return statistics.pstdev(self.values.values()) if self.values else math.nan

    @property
    def ci95(self) -> float:
        n = len(self.values)
        return 1.96 * self.std / math.sqrt(n) if n else math.nan


def summarise_seeds(
    exp_dir: str,
    keyword: str = "accuracy",
    end_signal: str = TRAIN_END_SIGNAL,
    expected_seeds: Sequence[int] = (),
) -> SeedSummary:
    """Collect the result of every ``seed*`` (or other) sub-directory of ``exp_dir``."""
    summary = SeedSummary()
    subdirs = sorted(d for d in os.listdir(exp_dir) if not d.startswith(".") and os.path.isdir(os.path.join(exp_dir, d))) if os.path.isdir(exp_dir) else []
    for name in subdirs:
        value = parse_run(os.path.join(exp_dir, name), keyword, end_signal)
        if value is None:
            summary.missing.append(name)
        else:
            summary.values[name] = value
    for seed in expected_seeds:
        name = f"seed{seed}"
        if name not in summary.values and name not in summary.missing:
            summary.missing.append(name)
    return summary


def seed_summary_lines(directory: str, summary: SeedSummary, keyword: str = "accuracy",
                       end_signal: str = TRAIN_END_SIGNAL, ci95: bool = False) -> List[str]:
    """What CoOp's parse_test_res.py prints for one directory of seeds (each seed, then mean +- std)."""
    lines = [f"Parsing files in {directory}"]
    lines += [f"{name}: {keyword}: {value:.2f}%" for name, value in summary.values.items()]
    lines += [f"missing: {name} has no result after '{end_signal}'" for name in summary.missing]
    if summary.values:
        spread = summary.ci95 if ci95 else summary.std
        lines += ["===", f"Summary of directory: {directory}", f"* {keyword}: {summary.mean:.2f}% +- {spread:.2f}%", "==="]
    return lines


EPOCH_LINE = re.compile(r"^epoch \[(\d+)/\d+\] batch \[\d+/\d+\] .*")
METER = re.compile(r"(\w+) [-\d.eE+naif]+ \(([-\d.eE+naif]+)\)")


def training_curve(run_dir: str) -> Dict[str, Dict[int, float]]:
    """Per-epoch training averages (``loss``, ``acc``, ...) from the ``epoch [e/E] batch [b/B] ...``
    lines of a run's logs: the running average on the last line printed in each epoch. A resumed run's
    later log overrides the epochs it repeated."""
    curves: Dict[str, Dict[int, float]] = {}
    if not os.path.isdir(run_dir):
        return curves
    for fpath in _log_files(run_dir):
        with open(fpath, "r", encoding="utf-8", errors="replace") as f:
            for line in f:
                match = EPOCH_LINE.match(line.strip())
                if not match:
                    continue
                epoch = int(match.group(1))
                for name, avg in METER.findall(line.split("] ", 2)[-1]):
                    if name not in ("time", "data", "lr"):
                        curves.setdefault(name, {})[epoch] = float(avg)
    return curves


def harmonic_mean(base: float, new: float) -> float:
    if math.isnan(base) or math.isnan(new) or base + new == 0:
        return math.nan
    return 2 * base * new / (base + new)


@dataclass
class Base2NewRow:
    dataset: str
    base: SeedSummary
    new: SeedSummary
    base_split: str = "train_base"

    @property
    def hm(self) -> float:
        return harmonic_mean(self.base.mean, self.new.mean)


def base2new_rows(
    root: str,
    trainer: str,
    cfg: str,
    shots: int = 16,
    datasets: Optional[Sequence[str]] = None,
    seeds: Sequence[int] = (1, 2, 3),
    keyword: str = "accuracy",
    base_split: str = "train_base",
) -> List[Base2NewRow]:
    """Pair ``<root>/train_base/<ds>/shots_<S>/<trainer>/<cfg>/seed*`` (base accuracy, read after
    training) with ``<root>/test_new/...`` (new accuracy, test-only logs) for each dataset.

    ``base_split="test_base"`` reads the base accuracy from test-only runs instead (a model that is
    not trained, such as zero-shot CLIP, or a re-test with ``SUB=base``)."""
    if base_split not in ("train_base", "test_base"):
        raise ValueError(f"base_split must be 'train_base' or 'test_base', got {base_split!r}")
    base_signal = TRAIN_END_SIGNAL if base_split == "train_base" else TEST_END_SIGNAL
    train_root = os.path.join(root, base_split)
    if datasets is None:
        found = set()
        for split in (base_split, "test_new"):
            split_dir = os.path.join(root, split)
            if os.path.isdir(split_dir):
                found.update(d for d in os.listdir(split_dir) if not d.startswith("."))
        datasets = sorted(found)
    if not datasets:
        raise FileNotFoundError(f"No datasets found under {train_root} or {os.path.join(root, 'test_new')}")
    rows = []
    for ds in datasets:
        tail = os.path.join(ds, f"shots_{shots}", trainer, cfg)
        base = summarise_seeds(os.path.join(root, base_split, tail), keyword, base_signal, seeds)
        new = summarise_seeds(os.path.join(root, "test_new", tail), keyword, TEST_END_SIGNAL, seeds)
        rows.append(Base2NewRow(ds, base, new, base_split))
    return rows


def format_mean(mean: float, std: float, with_std: bool = True) -> str:
    """``mean ± std`` (or the mean alone) with two decimals; "-" when there is no result."""
    if math.isnan(mean):
        return "-"
    return f"{mean:.2f} ± {std:.2f}" if with_std else f"{mean:.2f}"


def complete_rows(rows: Sequence[Base2NewRow]) -> List[Base2NewRow]:
    """The rows that have both a base and a new result."""
    return [r for r in rows if not math.isnan(r.base.mean) and not math.isnan(r.new.mean)]


def base2new_average(rows: Sequence[Base2NewRow]) -> Optional[Tuple[float, float, float]]:
    """(base, new, HM) of the Average row: means over the complete rows (None when there is none)."""
    complete = complete_rows(rows)
    if not complete:
        return None
    base = statistics.fmean(r.base.mean for r in complete)
    new = statistics.fmean(r.new.mean for r in complete)
    return base, new, harmonic_mean(base, new)


def base2new_table(rows: Sequence[Base2NewRow], with_std: bool = True) -> Tuple[List[str], List[List[str]]]:
    """Header and rows (Dataset, Base, New, HM), with an Average row over datasets that have both."""
    header = ["Dataset", "Base", "New", "HM"]
    body = [[r.dataset, format_mean(r.base.mean, r.base.std, with_std), format_mean(r.new.mean, r.new.std, with_std),
             format_mean(r.hm, 0.0, False)] for r in rows]
    average = base2new_average(rows)
    if average:
        body.append(["Average", *(f"{value:.2f}" for value in average)])
    return header, body


def missing_lines(rows: Sequence[Base2NewRow]) -> List[str]:
    lines = []
    for r in rows:
        for split, summary in ((r.base_split, r.base), ("test_new", r.new)):
            if summary.missing:
                lines.append(f"missing: {r.dataset} {split} {', '.join(summary.missing)}")
    return lines


def render(header: Sequence[str], body: Sequence[Sequence[str]], fmt: str = "table") -> str:
    """Render rows as a plain tabulate table, a markdown table or CSV."""
    if fmt == "csv":
        import csv
        import io

        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(body)
        return buf.getvalue().rstrip("\n")
    from tabulate import tabulate

    if fmt == "markdown":
        return tabulate(body, headers=header, tablefmt="github", disable_numparse=True)
    if fmt == "table":
        return tabulate(body, headers=header, tablefmt="simple", disable_numparse=True)
    raise ValueError(f"--format must be one of table, markdown, csv; got {fmt!r}")
