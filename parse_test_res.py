"""Summarise test results from log.txt files (ours or CoOp's) over seeds.

examples:
  python parse_test_res.py output/.../SEED_PARENT               mean and std over SEED_PARENT/seed*/log.txt
  python parse_test_res.py output/.../SEED_PARENT --test-log    the same for test-only runs (--eval-only)
  python parse_test_res.py output/my_experiment --multi-exp     one row per experiment folder of seeds
  python parse_test_res.py --base2new output/base2new --trainer MutualPrompt --format csv
                                                                Base / New / HM per dataset and their average

A result is the last '* accuracy: X%' line after 'Finish training' (training runs) or '=> result'
(test-only runs). A table value is the mean over seeds, with '± std' (population std) when there are
two or more; CSV has mean, std and n (seeds) in separate columns, and is all that goes to stdout
(the other lines go to stderr). When nothing matches, the error names the folders that do exist at
the nearest level, and the exit status is 2.
"""
import argparse
import os
import sys

from mutual_prompt.tools.exit_status import exit_status_of
from mutual_prompt.tools.results import (
    FORMATS,
    TEST_END_SIGNAL,
    TRAIN_END_SIGNAL,
    SeedSummary,
    base2new_dirs,
    base2new_rows,
    base2new_table,
    missing_lines,
    render,
    seed_summary_lines,
    subfolders,
    summarise_seeds,
    where_instead,
)

DEFAULT_CFG = "vit_b16_c4_ep10_batch1_ctxv1"
DEFAULT_SEEDS = (1, 2, 3)
# How many folders a "nothing found" error describes, at most.
WHERE_LINES = 6


class NoResults(Exception):
    """A directory holds no log with the result line."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The description as written, and each option's default (lists as the command line takes them)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        default = action.default
        if default in (None, False, argparse.SUPPRESS) or "(default" in (action.help or ""):
            return action.help or ""
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
        return f"{action.help} (default: {shown.replace('%', '%%')})"


def notes(args: argparse.Namespace):
    """Where the lines around a table go: stderr for CSV, so that stdout is the CSV file alone."""
    return sys.stderr if args.format == "csv" else sys.stdout


def summarise_directory(directory: str, args: argparse.Namespace, end_signal: str) -> SeedSummary:
    summary = summarise_seeds(directory, args.keyword, end_signal)
    lines = seed_summary_lines(directory, summary, args.keyword, end_signal, args.ci95)
    print("\n".join(lines), file=notes(args))
    if not summary.values:
        folders = subfolders(directory)
        raise NoResults(f"Nothing found in {directory}: no log.txt with '* {args.keyword}: X%' after '{end_signal}' "
                        f"in its folders ({', '.join(folders) if folders else 'it has none'})")
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("directory", nargs="?",
                        help="folder whose sub-folders are the seeds (seed1, seed2, ...), or with --multi-exp the "
                             "experiments")
    parser.add_argument("--ci95", action="store_true", help="95%% confidence interval instead of the std")
    parser.add_argument("--test-log", action="store_true",
                        help=f"read test-only logs (the result follows '{TEST_END_SIGNAL}', not '{TRAIN_END_SIGNAL}')")
    parser.add_argument("--multi-exp", action="store_true",
                        help="each sub-folder of DIRECTORY is an experiment whose sub-folders are seeds")
    parser.add_argument("--keyword", default="accuracy",
                        help="the metric to read from the '* KEYWORD: X%%' lines: accuracy, error or macro_f1")
    parser.add_argument("--base2new", metavar="ROOT",
                        help="base-to-new table of the runs under ROOT/train_base (or test_base) and ROOT/test_new, "
                             "in the folders the scripts write: <dataset>/shots_SHOTS/TRAINER/CFG/seedN")
    parser.add_argument("--base-split", default="train_base", choices=["train_base", "test_base"],
                        help="with --base2new: read the base accuracy from training runs, or from test-only runs "
                             "(a model that is not trained, e.g. zero-shot CLIP)")
    parser.add_argument("--trainer", default="MutualPrompt", help="with --base2new: the trainer's folder name")
    parser.add_argument("--cfg", default=DEFAULT_CFG, help="with --base2new: the config's folder name")
    parser.add_argument("--shots", type=int, default=16, help="with --base2new: the shots_<SHOTS> folder")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS),
                        help="with --base2new: the seeds expected (a missing one is listed)")
    parser.add_argument("--datasets", nargs="+",
                        help="with --base2new: the datasets to list (default: every one found under ROOT)")
    parser.add_argument("--format", default="table", choices=FORMATS,
                        help="plain text table, markdown table, or CSV (mean, std and n in separate columns)")
    parser.add_argument("--plot", metavar="PATH",
                        help="also write a figure (needs matplotlib): with --base2new the Base / New / HM bars "
                             "(benchmark datasets beside published numbers, the toy world on its own panels), "
                             "else the training curves of each seed")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return summarise(parser, args)
    except (NoResults, FileNotFoundError) as e:
        parser.exit(2, f"{parser.prog}: error: {e}\n")


def nothing_matched(args: argparse.Namespace, rows) -> str:
    """The error for a --base2new table without a single result: where each expected folder is not."""
    folders = []
    for row in rows:
        for folder in base2new_dirs(args.base2new, args.trainer, args.cfg, args.shots, row.dataset, args.base_split):
            if folder not in folders:
                folders.append(folder)
    lines = [f"no result under {args.base2new} for --trainer {args.trainer} --cfg {args.cfg} --shots {args.shots}"
             f" --base-split {args.base_split}:"]
    lines += [f"  {where_instead(folder)}" for folder in folders[:WHERE_LINES]]
    if len(folders) > WHERE_LINES:
        lines.append(f"  ... and {len(folders) - WHERE_LINES} more folders like these")
    return "\n".join(lines)


def summarise(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Print the table (and write the figure) that ``args`` ask for."""
    if args.base2new:
        rows = base2new_rows(args.base2new, args.trainer, args.cfg, args.shots, args.datasets, args.seeds,
                             args.keyword, args.base_split)
        if not any(r.base.values or r.new.values for r in rows):
            raise NoResults(nothing_matched(args, rows))
        header, body = base2new_table(rows)
        print(render(header, body, args.format))
        for line in missing_lines(rows):
            print(line, file=notes(args))
        if args.plot:
            from mutual_prompt.tools import figures

            fig = figures.base2new_figure({f"{args.trainer} {args.cfg}": rows}, figures.load_published())
            print(f"figure: {figures.save(fig, args.plot)}", file=notes(args))
        return 0

    if not args.directory:
        parser.error("give a directory, or --base2new ROOT")
    if not os.path.isdir(args.directory):
        raise NoResults(where_instead(args.directory))
    end_signal = TEST_END_SIGNAL if args.test_log else TRAIN_END_SIGNAL
    if not args.multi_exp:
        summarise_directory(args.directory, args, end_signal)
        if args.plot:
            from mutual_prompt.tools import figures

            seeds = subfolders(args.directory)
            fig = figures.training_figure({d: os.path.join(args.directory, d) for d in seeds}, title=args.directory)
            print(f"figure: {figures.save(fig, args.plot)}")
        return 0
    body = []
    for name in subfolders(args.directory):
        body.append([name, summarise_directory(os.path.join(args.directory, name), args, end_signal)])
    print("Average performance", file=notes(args))
    print(render(["Experiment", args.keyword], body, args.format))
    return 0


if __name__ == "__main__":
    sys.exit(exit_status_of(main))
