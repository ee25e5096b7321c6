"""Train or evaluate a prompt learner on CLIP, with CoOp's command line.

    python train.py --root DATA --trainer MutualPrompt \
        --dataset-config-file configs/datasets/caltech101.yaml \
        --config-file configs/trainers/MutualPrompt/vit_b16_c4_ep10_batch1_ctxv1.yaml \
        --output-dir output/caltech101/seed1 --seed 1 DATASET.NUM_SHOTS 16

The config is merged in CoOp's order: defaults and every trainer's keys, the dataset config file, the
method config file, the flags, then the trailing KEY VALUE overrides. Runs under real Dassl or the
built-in engine (see ``mutual_prompt.backend``), and under ``torchrun`` with the built-in engine.
"""
import argparse
import os
import signal
import sys
from typing import List, Optional

import torch

from mutual_prompt.backend import build_trainer, collect_env_info, get_cfg_default, set_random_seed, setup_logger
from mutual_prompt.fingerprint import (
    FingerprintCheck,
    FingerprintMismatch,
    check_eval_fingerprint,
    check_resume_fingerprint,
)
from mutual_prompt.resume import newest_checkpoint, repair_checkpoint_pointers
from mutual_prompt.run_dir import OutputDirLocked, lock_output_dir, remove_stale_temp_files

import datasets  # noqa: F401  (registers every dataset)
import trainers

CONFIG_ERRORS = (KeyError, ValueError, AssertionError, FileNotFoundError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--root", type=str, default="", help="path to dataset")
    parser.add_argument("--output-dir", type=str, default="", help="output directory")
    parser.add_argument("--resume", type=str, default="", help="checkpoint directory (from which the training resumes)")
    parser.add_argument("--seed", type=int, default=-1, help="only a non-negative value enables a fixed seed")
    parser.add_argument("--source-domains", type=str, nargs="+", help="source domains for DA/DG")
    parser.add_argument("--target-domains", type=str, nargs="+", help="target domains for DA/DG")
    parser.add_argument("--transforms", type=str, nargs="+", help="data augmentation methods")
    parser.add_argument("--config-file", type=str, default="", help="path to config file")
    parser.add_argument("--dataset-config-file", type=str, default="", help="path to config file for dataset setup")
    parser.add_argument("--trainer", type=str, default="", help="name of trainer")
    parser.add_argument("--backbone", type=str, default="", help="name of CNN backbone")
    parser.add_argument("--head", type=str, default="", help="name of head")
    parser.add_argument("--eval-only", action="store_true", help="evaluation only")
    parser.add_argument("--model-dir", type=str, default="", help="load model from this directory for eval-only mode")
    parser.add_argument("--load-epoch", type=int, help="load model weights at this epoch for evaluation")
    parser.add_argument("--no-train", action="store_true", help="do not call trainer.train()")
    parser.add_argument(
        "--force-resume",
        action="store_true",
        help="resume even if the output directory holds a run with other config values (each change is "
        "logged and recorded in run_fingerprint.json)",
    )
    parser.add_argument(
        "--no-load", action="store_true",
        help="with --eval-only: evaluate without loading a checkpoint (the untrained weights), on purpose",
    )
    parser.add_argument(
        "opts", default=None, nargs=argparse.REMAINDER, help="modify config options using the command-line"
    )
    return parser


def reset_cfg(cfg, args: argparse.Namespace) -> None:
    """Apply the flags that were given (step 3 of the merge)."""
    if args.root:
        cfg.DATASET.ROOT = args.root
    if args.output_dir:
        cfg.OUTPUT_DIR = args.output_dir
    if args.resume:
        cfg.RESUME = args.resume
    if args.seed >= 0:
        cfg.SEED = args.seed
    if args.source_domains:
        cfg.DATASET.SOURCE_DOMAINS = args.source_domains
    if args.target_domains:
        cfg.DATASET.TARGET_DOMAINS = args.target_domains
    if args.transforms:
        cfg.INPUT.TRANSFORMS = args.transforms
    if args.trainer:
        cfg.TRAINER.NAME = args.trainer
    if args.backbone:
        cfg.MODEL.BACKBONE.NAME = args.backbone
    if args.head:
        cfg.MODEL.HEAD.NAME = args.head


def setup_cfg(args: argparse.Namespace):
    """The frozen config: defaults + trainers' keys, dataset file, method file, flags, overrides."""
    cfg = get_cfg_default()
    trainers.extend_cfg(cfg)
    if args.dataset_config_file:
        cfg.merge_from_file(args.dataset_config_file)
    if args.config_file:
        cfg.merge_from_file(args.config_file)
    reset_cfg(cfg, args)
    cfg.merge_from_list(args.opts or [])
    cfg.freeze()
    return cfg


def print_args(args: argparse.Namespace, cfg) -> None:
    print("***************")
    print("** Arguments **")
    print("***************")
    for key in sorted(vars(args)):
        print(f"{key}: {getattr(args, key)}")
    print("************")
    print("** Config **")
    print("************")
    print(cfg)


class RunInterrupted(BaseException):
    """SIGINT or SIGTERM arrived; carries the signal's name.

    A BaseException, like KeyboardInterrupt, so that the ``except Exception`` blocks that turn a
    failure into a clearer error (an unreadable image, a checkpoint) do not swallow it.
    """


INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


def _restore_handlers(handlers: dict) -> None:
    """Put the previous handlers back; a signal arriving meanwhile waits and then meets them.

    Without the mask, a SIGTERM landing after SIGINT's handler is restored but before SIGTERM's
    would raise RunInterrupted outside the ``try`` that reports it. (Windows has no signal mask.)
    """
    mask = getattr(signal, "pthread_sigmask", None)
    blocked = mask(signal.SIG_BLOCK, INTERRUPTS) if mask else None
    try:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    finally:
        if mask:
            mask(signal.SIG_SETMASK, blocked)


def _raise_interrupted(signum: int, frame) -> None:
    raise RunInterrupted(signal.Signals(signum).name)


def interruption_line(signame: str, trainer, cfg, eval_only: bool) -> str:
    """Where the run stopped and how to continue it, in one line."""
    if trainer is None:
        where = "while building the trainer"
    elif eval_only:
        where = "during evaluation"
    else:
        where = f"during epoch {trainer.epoch + 1}/{trainer.max_epoch}"
    newest = newest_checkpoint(cfg.OUTPUT_DIR)
    if newest:
        then = f"the newest checkpoint is {newest}; run the same command again to resume from it"
    else:
        then = ("no checkpoint was saved yet (TRAIN.CHECKPOINT_FREQ 0 saves only the last epoch); "
                "running the same command again starts from scratch")
    return f"Interrupted by {signame} {where}: {then}"


class CheckpointNotLoaded(Exception):
    """--eval-only could not load the checkpoint it was asked for (none given, missing, or mismatching)."""


def is_main_rank() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def main(argv: Optional[List[str]] = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.no_load and (args.model_dir or not args.eval_only):
        parser.error("--no-load goes with --eval-only and without --model-dir (it evaluates untrained weights)")
    try:
        cfg = setup_cfg(args)
    except CONFIG_ERRORS as e:
        parser.error(e.args[0] if e.args else str(e))

    training = not args.eval_only and not args.no_train
    lock, fingerprint = None, None
    try:
        if cfg.OUTPUT_DIR and is_main_rank():
            lock = lock_output_dir(cfg.OUTPUT_DIR)
        if training:
            fingerprint = check_resume_fingerprint(cfg.RESUME or cfg.OUTPUT_DIR, cfg, args.force_resume)
        elif args.eval_only and args.model_dir:
            fingerprint = check_eval_fingerprint(args.model_dir, cfg)
        run(args, cfg, training, fingerprint)
    except (OutputDirLocked, FingerprintMismatch, CheckpointNotLoaded) as e:
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    finally:
        if lock is not None:
            lock.release()


def run(args: argparse.Namespace, cfg, training: bool, fingerprint: Optional[FingerprintCheck]) -> None:
    """Log, seed, build the trainer and train or evaluate; SIGINT/SIGTERM end it with one line."""
    setup_logger(cfg.OUTPUT_DIR)
    if is_main_rank():
        for path in remove_stale_temp_files(cfg.OUTPUT_DIR):
            print(f"Removed the temporary file of an interrupted write: {path}")
    if cfg.SEED >= 0:
        print(f"Setting fixed seed: {cfg.SEED}")
        set_random_seed(cfg.SEED)
    if torch.cuda.is_available() and cfg.USE_CUDA:
        torch.backends.cudnn.benchmark = True

    print_args(args, cfg)
    print("Collecting env info ...")
    print(f"** System info **\n{collect_env_info()}\n")

    for line in fingerprint.log_lines() if fingerprint else []:
        print(line)
    if training:
        try:
            repairs = repair_checkpoint_pointers(cfg.RESUME or cfg.OUTPUT_DIR)
        except RuntimeError as e:
            print(f"Error: {e}")
            sys.exit(2)
        for line in repairs:
            print(f"Resume: {line}")

    trainer = None
    handlers = {}
    try:
        for sig in INTERRUPTS:
            handlers[sig] = signal.signal(sig, _raise_interrupted)
        trainer = build_trainer(cfg)
        if training:
            for line in fingerprint.accept_split(trainer):
                print(line)
            if is_main_rank():
                fingerprint.write(cfg.OUTPUT_DIR)
        if args.eval_only:
            if args.no_load:
                print("--no-load: evaluating without loading a checkpoint")
            else:
                try:
                    trainer.load_model(args.model_dir, epoch=args.load_epoch)
                except (ValueError, FileNotFoundError) as e:  # no, a missing or a mismatching checkpoint
                    raise CheckpointNotLoaded(str(e)) from e
            trainer.test()
        elif training:
            trainer.train()
    except (RunInterrupted, KeyboardInterrupt) as e:
        signame = str(e) if isinstance(e, RunInterrupted) else "SIGINT"
        print(interruption_line(signame, trainer, cfg, args.eval_only))
        sys.stdout.flush()
        sys.exit(128 + signal.Signals[signame].value)
    finally:
        _restore_handlers(handlers)


if __name__ == "__main__":
    main()
