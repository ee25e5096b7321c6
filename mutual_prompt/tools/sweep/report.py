"""The sweep's status listing, its progress bar, and the summaries the scripts print at their end."""
import os
from collections import Counter
from typing import Dict, List, Sequence, Tuple

from mutual_prompt.tools.protocols import LINEAR_PROBE_TRAINER, protocol
from mutual_prompt.tools.results import (
    TEST_END_SIGNAL,
    SeedSummary,
    base2new_rows,
    base2new_table,
    missing_lines,
    render,
    seed_summary_lines,
    summarise_seeds,
)

from .plan import Settings, Variant, filled, linear_probe_runs, zero_shot_run
from .state import BLOCKED, DONE, FAILED, INTERRUPTED, PENDING, QUEUED, RUNNING, RunStatus

ORDER = (DONE, RUNNING, QUEUED, INTERRUPTED, FAILED, BLOCKED, PENDING)
STATE_WIDTH = len(INTERRUPTED)


def progress_bar(statuses: Sequence[RunStatus], width: int = 30) -> str:
    counts = Counter(s.state for s in statuses)
    total = len(statuses) or 1
    filled = round(width * counts[DONE] / total)
    parts = ", ".join(f"{counts[state]} {state}" for state in ORDER[1:] if counts[state])
    return f"[{'#' * filled}{'.' * (width - filled)}] {counts[DONE]}/{len(statuses)} done" + (f", {parts}" if parts else "")


def status_lines(statuses: Sequence[RunStatus], tail_lines: int = 8) -> List[str]:
    """One line per run (state, result or detail, folder); a failed run adds the last lines it printed."""
    lines = []
    for s in statuses:
        what = f"{s.result:.2f}%" if s.result is not None else s.detail
        lines.append(f"{s.state:<{STATE_WIDTH}} {s.run.output_dir}" + (f"  ({what})" if what else ""))
        if s.state == FAILED and s.tail:
            lines += [f"    | {line}" for line in s.tail[-tail_lines:]]
    return lines


def few_shot_results(repo_root: str, s: Settings) -> Dict[str, Dict[int, SeedSummary]]:
    """The few-shot results by dataset and number of shots, from the folders of ``FEW_SHOT_TRAIN_DIR``."""
    folder = protocol("few_shot").train_dir
    return {ds: {k: summarise_seeds(os.path.join(repo_root, filled(folder, s, DATASET=ds, SHOTS=k)),
                                    expected_seeds=s.seeds) for k in s.shot_list} for ds in s.datasets}


def zero_shot_results(repo_root: str, s: Settings) -> Tuple[Dict[str, SeedSummary], List[str]]:
    """Zero-shot CLIP's result on each dataset (from ``FEW_SHOT_ZEROSHOT_DIR``; no seeds where it has not
    run), and one line saying what is absent, if anything."""
    p = protocol("few_shot")
    try:
        runs = {ds: zero_shot_run(s, p, ds) for ds in s.datasets}
    except ValueError as e:
        return {ds: SeedSummary() for ds in s.datasets}, [str(e)]
    results = {ds: summarise_seeds(os.path.join(repo_root, os.path.dirname(run.output_dir)), end_signal=TEST_END_SIGNAL)
               for ds, run in runs.items()}
    absent = [ds for ds, summary in results.items() if not summary.n]
    if not absent:
        return results, []
    return results, [f"no zero-shot CLIP result yet for {', '.join(absent)} (its run: "
                     f"{runs[absent[0]].output_dir}{', ...' if len(absent) > 1 else ''})"]


def linear_probe_results(repo_root: str, s: Settings) -> Tuple[Dict[str, Dict[int, SeedSummary]], List[str]]:
    """Linear-probe CLIP's results by dataset and number of shots (from ``FEW_SHOT_LINEAR_PROBE_DIR``;
    none where it has not run), and one line saying what is absent, if anything. With TRAINER
    LinearProbeMP the protocol's own runs are the linear probe: none here."""
    if s.trainer == LINEAR_PROBE_TRAINER:
        return {}, []
    p = protocol("few_shot")
    try:
        folders = {(ds, k): os.path.dirname(linear_probe_runs(s, p, ds, k)[0].output_dir)
                   for ds in s.datasets for k in s.shot_list}
    except ValueError as e:
        return {}, [str(e)]
    results = {ds: {k: summarise_seeds(os.path.join(repo_root, folders[ds, k]), expected_seeds=s.seeds)
                    for k in s.shot_list} for ds in s.datasets}
    absent = {ds: [k for k, summary in by_shots.items() if not summary.n] for ds, by_shots in results.items()}
    absent = {ds: shots for ds, shots in absent.items() if shots}
    if not absent:
        return results, []
    what = ", ".join(ds if len(shots) == len(s.shot_list) else f"{ds} ({', '.join(map(str, shots))} shots)"
                     for ds, shots in absent.items())
    ds, shots = next(iter(absent.items()))
    more = ", ..." if len(absent) > 1 or len(shots) > 1 else ""
    return results, [f"no linear-probe CLIP result yet for {what} (its runs: {folders[ds, shots[0]]}/seed*{more})"]


def few_shot_table(repo_root: str, s: Settings) -> List[str]:
    """The few-shot table: a row per dataset, zero-shot CLIP then each number of shots, below it a row
    of linear-probe CLIP where it has results, and a line for each absent reference result."""
    zero_shot, absent = zero_shot_results(repo_root, s)
    linear_probe, absent_probe = linear_probe_results(repo_root, s)
    header = ["Dataset", "zero-shot CLIP", *(f"{k} shot{'s' if k > 1 else ''}" for k in s.shot_list)]
    body = []
    for ds, by_shots in few_shot_results(repo_root, s).items():
        body.append([ds, zero_shot[ds], *by_shots.values()])
        if any(summary.n for summary in linear_probe.get(ds, {}).values()):
            body.append([f"{ds} linear probe", "", *linear_probe[ds].values()])
    return [render(header, body)] + absent + absent_probe


def summary_lines(repo_root: str, variant: Variant) -> List[str]:
    """The tables ``reproduce_<protocol>.sh`` prints for this variant's runs."""
    s = variant.settings
    p = protocol(variant.protocol)
    root = os.path.join(repo_root, s.output)
    head = [f"== {variant.protocol}: {s.trainer} / {s.cfg}" + ("" if variant.name == "main" else f" (ablation {variant.name})")]
    if variant.protocol == "base2new":
        rows = base2new_rows(os.path.join(root, "base2new"), s.trainer, s.cfg, s.shots, list(s.datasets), list(s.seeds))
        header, body = base2new_table(rows)
        return head + [render(header, body)] + missing_lines(rows)
    if variant.protocol == "xd":
        lines = list(head)
        for target in s.targets:
            directory = filled(p.test_dir, s, SOURCE=s.source, DATASET=target)
            summary = summarise_seeds(os.path.join(repo_root, directory), end_signal=TEST_END_SIGNAL,
                                      expected_seeds=s.seeds)
            lines += seed_summary_lines(directory, summary, end_signal=TEST_END_SIGNAL)
        return lines
    lines = list(head)
    for ds, by_shots in few_shot_results(repo_root, s).items():
        for k, summary in by_shots.items():
            lines += seed_summary_lines(filled(p.train_dir, s, DATASET=ds, SHOTS=k), summary)
    return lines + few_shot_table(repo_root, s)
