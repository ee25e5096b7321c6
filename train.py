"""Train or evaluate a prompt learner on CLIP, with CoOp's command line.

    python train.py --root DATA --trainer MutualPrompt \
        --dataset-config-file configs/datasets/caltech101.yaml \
        --config-file configs/trainers/MutualPrompt/vit_b16_c4_ep10_batch1_ctxv1.yaml \
        --output-dir output/caltech101/seed1 --seed 1 DATASET.NUM_SHOTS 16

The config is merged in CoOp's order: defaults and every trainer's keys, the dataset config file, the
method config file, the flags, then the trailing KEY VALUE overrides. Runs under real Dassl or the
built-in runtime (see ``mutual_prompt.backend``), and under ``torchrun`` with the built-in runtime.
"""
import argparse
import io
import os
import shlex
import signal
import sys
import textwrap
from typing import Dict, List, Optional

from mutual_prompt.run.start_up import (
    INTERRUPTS,
    default_interrupt_handlers,
    exit_on_interrupts,
    start_up_interruption_line,
)

if __name__ == "__main__":  # before the slow imports below: a Ctrl-C during them ends with one line
    exit_on_interrupts()

import torch

from mutual_prompt.backend import (
    DATASET_REGISTRY,
    TRAINER_REGISTRY,
    build_trainer,
    collect_env_info,
    get_cfg_default,
    set_random_seed,
    setup_logger,
)
from mutual_prompt.run import console
from mutual_prompt.run.config_checks import ConfigError, validate_cfg
from mutual_prompt.run.fingerprint import (
    FingerprintCheck,
    FingerprintMismatch,
    check_eval_fingerprint,
    check_resume_fingerprint,
)
from mutual_prompt.data.image_check import UnreadableImages, check_images_open
from mutual_prompt.data.paths import DatasetFileNotFound
from mutual_prompt.run.checkpoints import newest_checkpoint, repair_checkpoint_pointers
from mutual_prompt.run.output_dir import OutputDirLocked, lock_output_dir, remove_stale_temp_files

import datasets  # noqa: F401  (registers every dataset)
import trainers

CONFIG_ERRORS = (KeyError, ValueError, AssertionError, FileNotFoundError)
LOG_FILE_EXTENSIONS = (".txt", ".log")  # setup_logger takes such an output for the log file itself


def dataset_config_names() -> List[str]:
    """The datasets' config files, ``configs/datasets/<name>.yaml``, by name."""
    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "datasets")
    return sorted(n[: -len(".yaml")] for n in os.listdir(folder) if n.endswith(".yaml")) if os.path.isdir(folder) else []


def help_epilog() -> str:
    """The valid trainers and datasets, and the setup check, for ``--help``."""
    listed = [("trainers (--trainer)", sorted(TRAINER_REGISTRY.registered_names())),
              ("dataset configs (--dataset-config-file configs/datasets/NAME.yaml)", dataset_config_names()),
              ("dataset names (DATASET.NAME)", sorted(DATASET_REGISTRY.registered_names()))]
    paragraphs = [textwrap.fill(f"{title}: {', '.join(names)}", width=88, subsequent_indent="  ")
                  for title, names in listed]
    paragraphs.append("Check a data folder before a long run: python -m mutual_prompt.doctor --root DATA NAME ...")
    return "\n".join(paragraphs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0], epilog=help_epilog(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=str, default="",
                        help="the folder holding the datasets, DATA (default: the config's DATASET.ROOT)")
    parser.add_argument("--output-dir", type=str, default="",
                        help="the run's folder: log.txt, checkpoints (default: the config's OUTPUT_DIR)")
    parser.add_argument("--resume", type=str, default="",
                        help="a run folder to resume from (default: the output directory, if it holds checkpoints)")
    parser.add_argument("--seed", type=int, default=-1, help="a fixed seed; a negative value leaves it unfixed "
                        "(default: -1)")
    parser.add_argument("--source-domains", type=str, nargs="+", help="source domains, for domain generalisation")
    parser.add_argument("--target-domains", type=str, nargs="+", help="target domains, for domain generalisation")
    parser.add_argument("--transforms", type=str, nargs="+", help="training augmentations (default: the config's "
                        "INPUT.TRANSFORMS)")
    parser.add_argument("--config-file", type=str, default="",
                        help="the method's config, e.g. configs/trainers/MutualPrompt/vit_b16_c4_ep10_batch1_ctxv1.yaml")
    parser.add_argument("--dataset-config-file", type=str, default="",
                        help="the dataset's config, configs/datasets/NAME.yaml (names below)")
    parser.add_argument("--trainer", type=str, default="", help="the trainer (names below; default: the config's "
                        "TRAINER.NAME)")
    parser.add_argument("--backbone", type=str, default="", help="the CLIP model, e.g. ViT-B/16 (default: the "
                        "config's MODEL.BACKBONE.NAME)")
    parser.add_argument("--head", type=str, default="", help="Dassl's MODEL.HEAD.NAME; no CLIP trainer uses one")
    parser.add_argument("--eval-only", action="store_true", help="evaluate a trained model (see --model-dir) "
                        "instead of training")
    parser.add_argument("--model-dir", type=str, default="", help="with --eval-only: the training run's folder "
                        "whose checkpoint is evaluated")
    parser.add_argument("--load-epoch", type=int, help="with --eval-only: the epoch whose checkpoint is loaded "
                        "(default: model-best.pth.tar, saved by TEST.FINAL_MODEL best_val)")
    parser.add_argument("--no-train", action="store_true", help="build the trainer and stop, without training")
    parser.add_argument("--verbose", action="store_true", help="print the arguments, config and environment "
                        "here too (they always go to log.txt)")
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
        "opts", default=None, nargs=argparse.REMAINDER, metavar="KEY VALUE",
        help="config overrides, applied last, e.g. DATASET.NUM_SHOTS 16 OPTIM.MAX_EPOCH 5"
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


def output_dir_problem(output_dir: str) -> Optional[str]:
    """Why ``output_dir`` cannot be an output folder, or None."""
    if output_dir.lower().endswith(LOG_FILE_EXTENSIONS):
        return (f"--output-dir {output_dir}: an output directory is a folder, but setup_logger takes a name ending "
                f"in {' or '.join(LOG_FILE_EXTENSIONS)} for the log file itself; give the folder's name without "
                "the extension")
    return None


def line_buffered_stdout() -> None:
    """Print line by line even when stdout is a file or a pipe (the sweep captures it), so a killed
    run's captured output keeps every line it printed."""
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)


def run_details(args: argparse.Namespace, cfg) -> str:
    """The arguments, the merged config and the environment, as Dassl prints them."""
    lines = ["***************", "** Arguments **", "***************"]
    lines += [f"{key}: {getattr(args, key)}" for key in sorted(vars(args))]
    lines += ["************", "** Config **", "************", str(cfg)]
    lines += ["Collecting env info ...", f"** System info **\n{collect_env_info()}\n"]
    return "\n".join(lines)


class RunInterrupted(BaseException):
    """SIGINT or SIGTERM arrived; carries the signal's name.

    A BaseException, like KeyboardInterrupt, so that the ``except Exception`` blocks that turn a
    failure into a clearer error (an unreadable image, a checkpoint) do not swallow it.
    """


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


def _signal_name(interrupt: BaseException) -> str:
    return str(interrupt) if isinstance(interrupt, RunInterrupted) else "SIGINT"


def _exit_interrupted(line: str, signame: str) -> None:
    print(line)
    sys.stdout.flush()
    sys.exit(128 + signal.Signals[signame].value)


def interruption_line(signame: str, trainer, cfg, eval_only: bool) -> str:
    """Where the run stopped and how to continue it, in one line; ``cfg`` None: during start-up."""
    if cfg is None:
        return start_up_interruption_line(signame)
    if trainer is None:
        where = "while building the trainer"
    elif eval_only:
        where = "during evaluation"
    else:
        where = f"during epoch {trainer.epoch + 1}/{trainer.max_epoch}"
    newest = newest_checkpoint(cfg.OUTPUT_DIR)
    if eval_only:
        then = "an evaluation saves nothing; run the same command again to evaluate"
    elif newest:
        then = f"the newest checkpoint is {newest}; run the same command again to resume from it"
    else:
        then = (f"no checkpoint was saved yet ({checkpoint_schedule(cfg.TRAIN.CHECKPOINT_FREQ)}); "
                "running the same command again starts from scratch")
    return f"Interrupted by {signame} {where}: {then}"


def checkpoint_schedule(freq: int) -> str:
    """When a training run with ``TRAIN.CHECKPOINT_FREQ freq`` saves a checkpoint."""
    if freq == 1:
        return "TRAIN.CHECKPOINT_FREQ 1 saves one after every epoch"
    if freq > 1:
        return f"TRAIN.CHECKPOINT_FREQ {freq} saves one every {freq} epochs and after the last"
    return f"TRAIN.CHECKPOINT_FREQ {freq} saves only the last epoch"


class CheckpointNotLoaded(Exception):
    """--eval-only could not load the checkpoint it was asked for (none given, missing, or mismatching),
    or a training has checkpoints but none intact to resume from."""


class TrainerNotBuilt(Exception):
    """Building the trainer stopped on the data, the weights or the config (a ``ValueError`` or
    ``FileNotFoundError`` of their checks: a dataset layout, a split file, a weights file)."""


RUN_REFUSED = (OutputDirLocked, FingerprintMismatch, CheckpointNotLoaded, TrainerNotBuilt, UnreadableImages)


def is_main_rank() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def main(argv: Optional[List[str]] = None) -> None:
    line_buffered_stdout()
    parser = build_parser()
    args = parser.parse_args(argv)
    console.set_verbose(args.verbose)
    if args.no_load and (args.model_dir or not args.eval_only):
        parser.error("--no-load goes with --eval-only and without --model-dir (it evaluates untrained weights)")
    handlers = {}
    try:
        for sig in INTERRUPTS:
            handlers[sig] = signal.signal(sig, _raise_interrupted)
        start(parser, args)
    except (RunInterrupted, KeyboardInterrupt) as e:
        signame = _signal_name(e)
        _exit_interrupted(interruption_line(signame, None, None, args.eval_only), signame)
    finally:
        _restore_handlers(handlers)


def checked_cfg(parser: argparse.ArgumentParser, args: argparse.Namespace, training: bool):
    """The merged config, validated; any problem with it ends the run with ``parser.error``."""
    try:
        cfg = setup_cfg(args)
    except CONFIG_ERRORS as e:
        parser.error(e.args[0] if e.args else str(e))
    problem = output_dir_problem(cfg.OUTPUT_DIR)
    if problem:
        parser.error(problem)
    try:
        validate_cfg(cfg, training)
    except ConfigError as e:
        parser.error(str(e))
    return cfg


def start(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Config, output-directory lock, fingerprint check, then ``run``; refusals end with ``parser.exit(2)``."""
    training = not args.eval_only and not args.no_train
    cfg = checked_cfg(parser, args, training)
    lock, fingerprint = None, None
    try:
        if cfg.OUTPUT_DIR and is_main_rank():
            lock = lock_output_dir(cfg.OUTPUT_DIR)
        if training:
            fingerprint = check_resume_fingerprint(cfg.RESUME or cfg.OUTPUT_DIR, cfg, args.force_resume)
        elif args.eval_only and args.model_dir:
            fingerprint = check_eval_fingerprint(args.model_dir, cfg)
        run(args, cfg, training, fingerprint)
    except RUN_REFUSED as e:
        console.log_only(f"{parser.prog}: error: {e}")
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

    console.detail(run_details(args, cfg))
    if not args.verbose and console.log_file() is not None:
        print(f"Arguments, config and environment: {console.log_file().name} (--verbose prints them here too)")

    for line in fingerprint.log_lines() if fingerprint else []:
        print(line)
    if training:
        try:
            repairs = repair_checkpoint_pointers(cfg.RESUME or cfg.OUTPUT_DIR)
        except RuntimeError as e:
            raise CheckpointNotLoaded(str(e)) from e
        for line in repairs:
            print(f"Resume: {line}")

    trainer = None
    try:
        try:
            trainer = build_trainer(cfg)
        except (ValueError, FileNotFoundError, ImportError) as e:  # ImportError: an optional extra (open_clip)
            raise TrainerNotBuilt(with_doctor_command(e, cfg)) from e
        if training:
            for line in fingerprint.accept_split(trainer):
                print(line)
            if is_main_rank():
                fingerprint.write(cfg.OUTPUT_DIR)
        if training or args.eval_only:
            try:
                check_images_open(images_read(cfg, trainer.dm.dataset, args.eval_only))
            except UnreadableImages as e:
                raise UnreadableImages(with_doctor_command(e, cfg)) from e
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
        signame = _signal_name(e)
        _exit_interrupted(interruption_line(signame, trainer, cfg, args.eval_only), signame)


def with_doctor_command(error: Exception, cfg) -> str:
    """The message of ``error``; one about the dataset's files ends with the doctor's command, which
    checks the whole dataset at once instead of stopping at the first problem."""
    if not isinstance(error, (DatasetFileNotFound, UnreadableImages)):
        return str(error)
    return (f"{error} (python -m mutual_prompt.doctor --root {shlex.quote(cfg.DATASET.ROOT)} {cfg.DATASET.NAME} "
            "checks the whole dataset)")


def images_read(cfg, dataset, eval_only: bool) -> Dict[str, list]:
    """The parts of ``dataset`` the run reads, by name: the evaluated split for ``--eval-only``; else
    the training images, the validation images with TEST.FINAL_MODEL best_val and the test images
    unless TEST.NO_TEST."""
    evaluated = "val" if cfg.TEST.SPLIT == "val" and dataset.val else "test"
    if eval_only:
        return {evaluated: getattr(dataset, evaluated)}
    parts = {"train_x": dataset.train_x}
    if not cfg.TEST.NO_TEST:
        if cfg.TEST.FINAL_MODEL == "best_val" and dataset.val:
            parts["val"] = dataset.val
        parts[evaluated] = getattr(dataset, evaluated)
    return parts


if __name__ == "__main__":
    try:
        main()
    finally:
        default_interrupt_handlers()  # once main() has run, the start-up line would be wrong
