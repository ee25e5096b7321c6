"""The sweep's status listing, its progress bar, and the summaries the scripts print at their end."""
import os
from collections import Counter
from typing import List, Sequence

from mutual_prompt.tools.results import (
    TEST_END_SIGNAL,
    base2new_rows,
    base2new_table,
    few_shot_summaries,
    format_mean,
    missing_lines,
    render,
    seed_summary_lines,
    summarise_seeds,
)

from .plan import Variant
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


def summary_lines(repo_root: str, variant: Variant) -> List[str]:
    """The tables ``reproduce_<protocol>.sh`` prints for this variant's runs."""
    s = variant.settings
    cfg = s.cfg_for(variant.protocol)
    root = os.path.join(repo_root, s.output)
    head = [f"== {variant.protocol}: {s.trainer} / {cfg}" + ("" if variant.name == "main" else f" (ablation {variant.name})")]
    if variant.protocol == "base2new":
        rows = base2new_rows(os.path.join(root, "base2new"), s.trainer, cfg, s.shots, list(s.datasets), list(s.seeds))
        header, body = base2new_table(rows)
        return head + [render(header, body)] + missing_lines(rows)
    if variant.protocol == "xd":
        lines = list(head)
        for target in s.targets:
            directory = os.path.join(s.output, "evaluation", s.trainer, f"{cfg}_{s.shots}shots", target)
            summary = summarise_seeds(os.path.join(repo_root, directory), end_signal=TEST_END_SIGNAL,
                                      expected_seeds=s.seeds)
            lines += seed_summary_lines(directory, summary, end_signal=TEST_END_SIGNAL)
        return lines
    table = few_shot_summaries(root, s.trainer, cfg, list(s.datasets), list(s.shot_list), list(s.seeds))
    lines = list(head)
    for ds, by_shots in table.items():
        for k, summary in by_shots.items():
            lines += seed_summary_lines(os.path.join(s.output, "few_shot", ds, s.trainer, f"{cfg}_{k}shots"), summary)
    header = ["Dataset", *(f"{k} shots" for k in s.shot_list)]
    body = [[ds, *(format_mean(sm.mean, sm.std) for sm in by_shots.values())]
            for ds, by_shots in table.items()]
    return lines + [render(header, body)]
