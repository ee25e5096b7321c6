"""Interpret the learned prompts of a MutualPrompt checkpoint: nearest words, FTP and TVP.

    python interpret_prompt.py output/base2new/train_base/toy_shapes/shots_16/MutualPrompt/toy/seed1 3 --root DATA

CoOp's interpret_prompt.py and arguments (a checkpoint and top-k), extended: for each learned context
token its top-k nearest vocabulary words; for FTP the image-conditioned context averaged over the
test split (or --split val); for TVP how often the true class is among an image's top-k classes. The
tables go to stdout, progress to stderr. The config is the run's own (run_fingerprint.json beside log.txt), like
train.py --eval-only; config files and KEY VALUE overrides apply over it in train.py's order, and may
not change what shapes the model's output. See mutual_prompt/tools/interpret.py and docs/USAGE.md.
"""
import argparse
import contextlib
import sys
import warnings
from typing import List, Optional

from mutual_prompt.backend import build_trainer, get_cfg_default
from mutual_prompt.clip import load_frozen_clip, resolve_precision
from mutual_prompt.run.checkpoints import config_difference_hint, load_state_dict_strictly, read_checkpoint
from mutual_prompt.run.config_checks import TRAINER_PROBLEMS, raise_problems, validate_cfg
from mutual_prompt.run.fingerprint import FINGERPRINT_FILE, check_eval_fingerprint
from mutual_prompt.tools import interpret
from mutual_prompt.tools.exit_status import exit_status_of

import datasets  # noqa: F401  (registers every dataset)
import trainers

TRAINER = "MutualPrompt"
SPLITS = ("test", "val")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0], epilog=__doc__.split("\n", 2)[2].strip(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("fpath", help="a MutualPrompt training run's output folder, or a checkpoint file "
                        "(prompt_learner/model.pth.tar-N, model-best.pth.tar)")
    parser.add_argument("topk", type=int, help="how many nearest words per context token")
    parser.add_argument("--load-epoch", type=int, help="with a run folder: the epoch whose checkpoint is read "
                        "(default: model-best.pth.tar where there is one, else the newest)")
    parser.add_argument("--root", default="", help="the folder holding the datasets, DATA: needed for the FTP and "
                        "TVP analyses (a run's fingerprint does not record it)")
    parser.add_argument("--config-file", default="", help="a method config, for a checkpoint without "
                        f"{FINGERPRINT_FILE} (e.g. converted from CoOp)")
    parser.add_argument("--dataset-config-file", default="", help="a dataset config, configs/datasets/NAME.yaml, "
                        f"for a checkpoint without {FINGERPRINT_FILE}")
    parser.add_argument("--backbone", default="", help="the CLIP model, e.g. ViT-B/16 (default: the run's "
                        "MODEL.BACKBONE.NAME)")
    parser.add_argument("--split", choices=SPLITS, default="test", help="the split whose images the FTP and TVP "
                        "analyses read (default: test)")
    parser.add_argument("--words-only", action="store_true", help="only the nearest words of the learned context: "
                        "no dataset is read")
    parser.add_argument("--sets", type=int, default=5, help="how many of TVP's most frequent class sets to list "
                        "(default: 5)")
    parser.add_argument("--csv", default="", metavar="FILE", help="also write every table into FILE as CSV")
    parser.add_argument("--figure", default="", metavar="FILE", help="also draw the word tables into FILE (PNG, "
                        "PDF or SVG by its extension; needs matplotlib)")
    parser.add_argument("opts", default=None, nargs="*", metavar="KEY VALUE",
                        help="config overrides, applied last, e.g. DATASET.SUBSAMPLE_CLASSES new")
    return parser


def setup_cfg(args: argparse.Namespace, run_dir: str):
    """(the frozen config, the fingerprint's path or None): defaults and every trainer's keys, the
    run's fingerprint, then train.py's order: dataset file, method file, flags, overrides."""
    cfg = get_cfg_default()
    trainers.extend_cfg(cfg)
    fingerprint = interpret.apply_fingerprint(cfg, run_dir)
    if args.dataset_config_file:
        cfg.merge_from_file(args.dataset_config_file)
    if args.config_file:
        cfg.merge_from_file(args.config_file)
    if args.root:
        cfg.DATASET.ROOT = args.root
    if args.backbone:
        cfg.MODEL.BACKBONE.NAME = args.backbone
    cfg.merge_from_list(args.opts or [])
    if cfg.TRAINER.NAME not in ("", TRAINER):
        raise ValueError(f"TRAINER.NAME is {cfg.TRAINER.NAME!r}: interpret_prompt.py reads {TRAINER} checkpoints")
    cfg.TRAINER.NAME = TRAINER
    cfg.freeze()
    return cfg, fingerprint


def interpretation(args: argparse.Namespace, checkpoint_path: str, run_dir: str) -> interpret.Interpretation:
    checkpoint = read_checkpoint(checkpoint_path)
    cfg, fingerprint = setup_cfg(args, run_dir)
    notes = check_eval_fingerprint(run_dir, cfg).log_lines() if fingerprint else [
        f"no {FINGERPRINT_FILE} beside the checkpoint: the config is the given files, flags and overrides"]
    state_dict = checkpoint["state_dict"]
    with_images = not args.words_only and interpret.needs_images(state_dict)
    if with_images:
        validate_cfg(cfg, training=False, trainer=TRAINER)
        if not cfg.DATASET.NAME or not cfg.DATASET.ROOT:
            raise ValueError("the FTP and TVP analyses read the evaluated split: give --root DATA (and, without "
                             f"{FINGERPRINT_FILE}, --dataset-config-file), or --words-only for the words alone")
        with contextlib.redirect_stdout(sys.stderr):  # the trainer's progress; stdout holds the tables
            trainer = build_trainer(cfg)
        model = trainer.model
        load_state_dict_strictly(model.prompt_learner, state_dict, checkpoint_path,
                                 config_difference_hint(state_dict, model.prompt_learner.state_dict()))
        clip_model = model.clip_model
    else:
        raise_problems(TRAINER_PROBLEMS[TRAINER](cfg))  # no dataset is read: only the method's keys
        if not cfg.MODEL.BACKBONE.NAME and not cfg.MODEL.BACKBONE.PATH:
            raise ValueError(f"the backbone is unknown (no {FINGERPRINT_FILE}): give --backbone NAME or --config-file")
        with contextlib.redirect_stdout(sys.stderr):
            precision = resolve_precision(cfg.TRAINER.MUTUAL_PROMPT.PREC, "cpu", "TRAINER.MUTUAL_PROMPT.PREC")
            clip_model = load_frozen_clip(cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.PATH, "cpu", precision)
    result = interpret.context_interpretation(checkpoint_path, checkpoint, clip_model.token_embedding.weight,
                                              args.topk, cfg.TRAINER.MUTUAL_PROMPT.CTX_INIT)
    result.notes = [line[len("Note: "):] if line.startswith("Note: ") else line for line in notes]
    if with_images:
        loader = trainer.val_loader if args.split == "val" else trainer.test_loader
        if loader is None:
            raise ValueError(f"--split {args.split}: {cfg.DATASET.NAME} has no {args.split} split")
        print(f"Encoding the {args.split} split ...", file=sys.stderr)
        interpret.add_split_analyses(result, model, loader, trainer.dm.dataset.classnames, args.split, trainer.device,
                                     trainer.precision, args.sets)
    return result


def main(argv: Optional[List[str]] = None) -> None:
    parser = build_parser()
    args = parser.parse_intermixed_args(argv)
    if args.topk < 1 or args.sets < 0:
        parser.error(f"topk must be >= 1 and --sets >= 0; got topk {args.topk}, --sets {args.sets}")
    if args.figure and interpret.figure_problem():
        parser.error(f"--figure: {interpret.figure_problem()}")
    try:
        checkpoint_path, run_dir = interpret.locate_checkpoint(args.fpath, args.load_epoch)
        result = interpretation(args, checkpoint_path, run_dir)
    except (ValueError, FileNotFoundError, KeyError) as e:
        parser.exit(2, f"{parser.prog}: error: {e.args[0] if isinstance(e, KeyError) and e.args else e}\n")
    print(interpret.render_text(result))
    if args.csv:
        print(f"Wrote {interpret.write_csv(result, args.csv)}", file=sys.stderr)
    if args.figure:
        from mutual_prompt.tools.figures import save

        with warnings.catch_warnings():  # a word the font cannot draw (an emoji token) is drawn as a box
            warnings.filterwarnings("ignore", message="Glyph .* missing from font")
            print(f"Wrote {save(interpret.draw(result), args.figure)}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(exit_status_of(main))
