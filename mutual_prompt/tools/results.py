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
from typing import Dict, List, Optional, Sequence, Tuple, Union

TRAIN_END_SIGNAL = "Finish training"
TEST_END_SIGNAL = "=> result"
# The 11 datasets of the base-to-new and few-shot protocols (CoCoOp's order, as the scripts run them).
BENCHMARK_DATASETS = ("imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
                      "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101")
# The toy world's datasets: measured here, never beside the benchmark's published numbers.
TOY_DATASETS = ("toy_shapes",)
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
    def n(self) -> int:
        """The number of seeds with a result."""
        return len(self.values)

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


# A table cell: text as it is; a number (an average, an HM) with two decimals; a seeds' summary as
# ``mean ± std`` (the mean alone for one seed, "-" for none), or as mean, std and n columns in CSV.
Cell = Union[str, float, SeedSummary]
FORMATS = ("table", "markdown", "csv")


def subfolders(directory: str) -> List[str]:
    """The folders in ``directory``, sorted, hidden ones left out."""
    return sorted(d for d in os.listdir(directory)
                  if not d.startswith(".") and os.path.isdir(os.path.join(directory, d)))


def where_instead(path: str) -> str:
    """For a folder that holds no result: what is there instead. ``path`` itself when it exists, else
    its nearest existing parent, and the folders in it, e.g. ``out/eurosat/shots_16: no such folder;
    out/eurosat holds: shots_2, shots_4``."""
    if os.path.isdir(path):
        return f"{path} holds: {', '.join(subfolders(path)) or 'no folders'}"
    parent = os.path.dirname(os.path.normpath(path))
    while parent and not os.path.isdir(parent):
        parent = os.path.dirname(parent)
    parent = parent or "."
    return f"{path}: no such folder; {parent} holds: {', '.join(subfolders(parent)) or 'no folders'}"


def summarise_seeds(
    exp_dir: str,
    keyword: str = "accuracy",
    end_signal: str = TRAIN_END_SIGNAL,
    expected_seeds: Sequence[int] = (),
) -> SeedSummary:
    """Collect the result of every ``seed*`` (or other) sub-directory of ``exp_dir``."""
    summary = SeedSummary()
    for name in subfolders(exp_dir) if os.path.isdir(exp_dir) else []:
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
    """What CoOp's parse_test_res.py prints for one directory of seeds: each seed, then ``mean% +- std%``
    and the number of seeds (one seed: the mean alone, since it has no spread)."""
    lines = [f"Parsing files in {directory}"]
    lines += [f"{name}: {keyword}: {value:.2f}%" for name, value in summary.values.items()]
    lines += [f"missing: {name} has no result after '{end_signal}'" for name in summary.missing]
    if summary.n == 1:
        lines += ["===", f"Summary of directory: {directory}", f"* {keyword}: {summary.mean:.2f}% (1 seed, no std)",
                  "==="]
    elif summary.values:
        spread, what = (summary.ci95, "95% CI") if ci95 else (summary.std, "std")
        lines += ["===", f"Summary of directory: {directory}",
                  f"* {keyword}: {summary.mean:.2f}% +- {spread:.2f}% ({what} over {summary.n} seeds)", "==="]
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
        base_dir, new_dir = base2new_dirs(root, trainer, cfg, shots, ds, base_split)
        base = summarise_seeds(base_dir, keyword, base_signal, seeds)
        new = summarise_seeds(new_dir, keyword, TEST_END_SIGNAL, seeds)
        rows.append(Base2NewRow(ds, base, new, base_split))
    return rows


def base2new_dirs(root: str, trainer: str, cfg: str, shots: int, dataset: str,
                  base_split: str = "train_base") -> Tuple[str, str]:
    """The folders of ``dataset``'s base and new seeds under ``root`` (CoOp's base-to-new layout)."""
    tail = os.path.join(dataset, f"shots_{shots}", trainer, cfg)
    return os.path.join(root, base_split, tail), os.path.join(root, "test_new", tail)


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


def base2new_table(rows: Sequence[Base2NewRow]) -> Tuple[List[str], List[List[Cell]]]:
    """Header and rows (Dataset, Base, New, HM), with an Average row over datasets that have both.
    Base and New are the seeds' summaries (``render`` writes mean ± std, or mean, std and n in CSV)."""
    header = ["Dataset", "Base", "New", "HM"]
    body: List[List[Cell]] = [[r.dataset, r.base, r.new, r.hm] for r in rows]
    average = base2new_average(rows)
    if average:
        body.append(["Average", *average])
    return header, body


def missing_lines(rows: Sequence[Base2NewRow]) -> List[str]:
    lines = []
    for r in rows:
        for split, summary in ((r.base_split, r.base), ("test_new", r.new)):
            if summary.missing:
                lines.append(f"missing: {r.dataset} {split} {', '.join(summary.missing)}")
    return lines


def format_cell(cell: Cell) -> str:
    """A cell as the text and markdown tables show it."""
    if isinstance(cell, SeedSummary):
        if cell.n == 0:
            return "-"
        return f"{cell.mean:.2f}" if cell.n == 1 else f"{cell.mean:.2f} ± {cell.std:.2f}"
    if isinstance(cell, float):
        return "-" if math.isnan(cell) else f"{cell:.2f}"
    return str(cell)


def _csv_number(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.2f}"


def _csv_table(header: Sequence[str], body: Sequence[Sequence[Cell]]) -> Tuple[List[str], List[List[str]]]:
    """A column holding seeds' summaries becomes three: ``<name> mean``, ``<name> std`` (empty for
    fewer than two seeds) and ``<name> n`` (seeds); other cells of such a column (an Average) fill the
    mean only."""
    summary_columns = {i for row in body for i, cell in enumerate(row) if isinstance(cell, SeedSummary)}
    out_header: List[str] = []
    for i, name in enumerate(header):
        out_header += [f"{name} mean", f"{name} std", f"{name} n"] if i in summary_columns else [name]
    out_body = []
    for row in body:
        out_row: List[str] = []
        for i, cell in enumerate(row):
            if isinstance(cell, SeedSummary):
                out_row += [_csv_number(cell.mean), _csv_number(cell.std) if cell.n >= 2 else "", str(cell.n)]
            else:
                text = _csv_number(cell) if isinstance(cell, float) else str(cell)
                out_row += [text, "", ""] if i in summary_columns else [text]
        out_body.append(out_row)
    return out_header, out_body


def seeds_note(body: Sequence[Sequence[Cell]]) -> Optional[str]:
    """What the ± in a table means and over how many seeds (None when no cell is over seeds)."""
    counts = sorted({cell.n for row in body for cell in row if isinstance(cell, SeedSummary) and cell.n})
    if not counts:
        return None
    if counts == [1]:
        return "(1 seed: each value is that seed's result, with no std)"
    if len(counts) == 1:
        return f"(mean ± std over {counts[0]} seeds; std is the population std, as CoOp's parse_test_res.py)"
    return (f"(mean ± std over {counts[0]} to {counts[-1]} seeds, population std; a value without ± is one seed; "
            "the missing: lines name the seeds without a result)")


def render(header: Sequence[str], body: Sequence[Sequence[Cell]], fmt: str = "table") -> str:
    """Rows as a plain text table or a markdown table, each followed by a line saying what ± means
    and over how many seeds (``seeds_note``), or as CSV with mean, std and n in their own columns."""
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    if fmt == "csv":
        import csv
        import io

        csv_header, csv_body = _csv_table(header, body)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(csv_header)
        writer.writerows(csv_body)
        return buf.getvalue().rstrip("\n")
    from tabulate import tabulate

    cells = [[format_cell(cell) for cell in row] for row in body]
    table = tabulate(cells, headers=header, tablefmt="github" if fmt == "markdown" else "simple",
                     disable_numparse=True)
    note = seeds_note(body)
    if note is None:
        return table
    return f"{table}\n\n{note}" if fmt == "markdown" else f"{table}\n{note}"
