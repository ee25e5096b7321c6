"""Summarise test results from log.txt files (ours or CoOp's) over seeds.

    python parse_test_res.py output/.../seed_parent_dir              # mean ± std over seed*/log.txt
    python parse_test_res.py output/.../seed_parent_dir --test-log   # test-only runs (--eval-only)
    python parse_test_res.py output/my_experiment --multi-exp        # one row per experiment
    python parse_test_res.py --base2new output/base2new --trainer MutualPrompt \
        --cfg vit_b16_c4_ep10_batch1_ctxv1 [--shots 16] [--format markdown|csv] [--plot fig.png]
"""
import argparse
import os
import sys

from mutual_prompt.tools.results import (
    TEST_END_SIGNAL,
    TRAIN_END_SIGNAL,
    base2new_rows,
    base2new_table,
    missing_lines,
    render,
    seed_summary_lines,
    summarise_seeds,
)


class NoResults(Exception):
    """A directory holds no log with the result line."""


def summarise_directory(directory: str, args: argparse.Namespace, end_signal: str) -> float:
    summary = summarise_seeds(directory, args.keyword, end_signal)
    lines = seed_summary_lines(directory, summary, args.keyword, end_signal, args.ci95)
    print("\n".join(lines))
    if not summary.values:
        raise NoResults(f"Nothing found in {directory}: no log.txt with '* {args.keyword}: X%' after '{end_signal}'")
    return summary.mean


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", nargs="?", help="directory whose sub-directories are seeds (or experiments)")
    parser.add_argument("--ci95", action="store_true", help="95%% confidence interval instead of std")
    parser.add_argument("--test-log", action="store_true", help="parse test-only logs (end signal '=> result')")
    parser.add_argument("--multi-exp", action="store_true", help="each sub-directory is an experiment of seeds")
    parser.add_argument("--keyword", default="accuracy", help="metric to extract (accuracy, error, macro_f1)")
    parser.add_argument("--base2new", metavar="ROOT", help="output root holding train_base/ and test_new/")
    parser.add_argument("--base-split", default="train_base", choices=["train_base", "test_base"],
                        help="read base accuracy from training runs or from test-only runs (zero-shot)")
    parser.add_argument("--trainer", default="MutualPrompt")
    parser.add_argument("--cfg", default="vit_b16_c4_ep10_batch1_ctxv1")
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--datasets", nargs="+", help="datasets to list (default: every one found)")
    parser.add_argument("--format", default="table", choices=["table", "markdown", "csv"])
    parser.add_argument("--plot", metavar="PATH", help="also write a figure (needs matplotlib): with --base2new the "
                        "Base/New/HM bars beside published numbers, else the training curves of each seed")
    args = parser.parse_args(argv)
    try:
        return summarise(parser, args)
    except (NoResults, FileNotFoundError) as e:
        parser.exit(2, f"{parser.prog}: error: {e}\n")


def summarise(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Print the table (and write the figure) that ``args`` ask for."""
    if args.base2new:
        rows = base2new_rows(args.base2new, args.trainer, args.cfg, args.shots, args.datasets, args.seeds, args.keyword, args.base_split)
        header, body = base2new_table(rows)
        print(render(header, body, args.format))
        for line in missing_lines(rows):
            print(line)
        if args.plot:
            from mutual_prompt.tools import figures

            fig = figures.base2new_figure({f"{args.trainer} {args.cfg}": rows}, figures.load_published())
            print(f"figure: {figures.save(fig, args.plot)}")
        return 0

    if not args.directory:
        parser.error("give a directory, or --base2new ROOT")
    if not os.path.isdir(args.directory):
        parser.error(f"{args.directory} is not a directory")
    end_signal = TEST_END_SIGNAL if args.test_log else TRAIN_END_SIGNAL
    if not args.multi_exp:
        summarise_directory(args.directory, args, end_signal)
        if args.plot:
            from mutual_prompt.tools import figures

            seeds = sorted(d for d in os.listdir(args.directory) if os.path.isdir(os.path.join(args.directory, d)))
            fig = figures.training_figure({d: os.path.join(args.directory, d) for d in seeds}, title=args.directory)
            print(f"figure: {figures.save(fig, args.plot)}")
        return 0
    body = []
    for name in sorted(d for d in os.listdir(args.directory) if not d.startswith(".")):
        exp_dir = os.path.join(args.directory, name)
        if os.path.isdir(exp_dir):
            mean = summarise_directory(exp_dir, args, end_signal)
            body.append([name, f"{mean:.2f}"])
    print("Average performance")
    print(render(["Experiment", args.keyword], body, args.format))
    return 0


if __name__ == "__main__":
    sys.exit(main())
