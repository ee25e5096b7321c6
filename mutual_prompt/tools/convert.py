"""Convert prompt checkpoints between CoOp/CoCoOp and MutualPrompt.

    python -m mutual_prompt.convert from-coop [--trust] CoCoOp_RUN/prompt_learner/model.pth.tar-10 OUT_DIR
    python -m mutual_prompt.convert to-coop OUR_RUN/prompt_learner/model.pth.tar-10 OUT_DIR

Both write ``OUT_DIR/prompt_learner/<the input's file name>``, so ``--model-dir OUT_DIR --load-epoch N``
evaluates it. ``from-coop`` reads the ``prompt_learner`` checkpoint of CoOp's ``CoOp`` or ``CoCoOp``
trainer: ``ctx`` is kept, ``meta_net.*`` becomes ``ftp.meta_net.*`` (CoCoOp's meta-net is FTP
``shared``), and ``token_prefix``/``token_suffix`` are dropped (they are the class-name embeddings
that the model rebuilds for whatever classes it is given, as CoOp's own ``load_model`` drops them).
``to-coop`` is the reverse, for our CoOp-equivalent (FTP ``none``) and CoCoOp-equivalent (FTP
``shared``) checkpoints with TVP off; the file has no ``token_prefix``/``token_suffix``, which CoOp's
and CoCoOp's ``load_model`` delete before loading anyway. Both keep ``epoch`` and ``val_result``
and write no optimizer or scheduler state: the result is for evaluation, not for resuming training.

CoOp's files pickle Python objects (Dassl's learning-rate scheduler), so ``torch.load`` with
``weights_only=True`` refuses them; ``--trust`` unpickles them fully (``read_checkpoint``'s
``trusted_pickle_module``), which can run code from the file: use it only for files you trust.
Classes the file names that do not import here (Dassl's) are read as empty stand-ins, since only the
weights are kept.
"""
import argparse
import os
import pickle
import types
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional

import torch

from ..run.checkpoints import (COOP_ONLY_KEYS, describe_prompt_learner, load_error_reason, read_checkpoint,
                               write_torch_file)

MODEL_NAME = "prompt_learner"
COOP_META_NET = "meta_net."
OUR_META_NET = "ftp.meta_net."


class _UnavailableClass:
    """Stands in for a pickled class that does not import here; keeps whatever state it is given."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _LenientUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            return type(name, (_UnavailableClass,), {"__module__": module})


_LENIENT_PICKLE = types.SimpleNamespace(Unpickler=_LenientUnpickler, load=pickle.load, __name__="pickle")


def read_coop_checkpoint(path: str, trust: bool = False) -> Dict[str, Any]:
    """A checkpoint written by CoOp's trainers; fully unpickled (with ``_LENIENT_PICKLE``) only with ``trust``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No checkpoint file at {path}")
    if trust:
        return read_checkpoint(path, trusted_pickle_module=_LENIENT_PICKLE)
    try:
        return read_checkpoint(path)
    except ValueError as e:
        reason = load_error_reason(e.__cause__) if e.__cause__ is not None else str(e)
        raise ValueError(
            f"{path} cannot be read with torch.load(weights_only=True) ({reason}): CoOp's and CoCoOp's "
            "checkpoints pickle Python objects (Dassl's learning-rate scheduler). If you trust the file "
            "(unpickling can run code from it), add --trust."
        ) from e


def coop_to_ours(state_dict: Mapping[str, torch.Tensor], source: str) -> "OrderedDict[str, torch.Tensor]":
    """CoOp/CoCoOp ``prompt_learner`` tensors under our names (float32), without the class-name buffers."""
    if "ctx" not in state_dict:
        raise ValueError(f"{source} has no 'ctx': not a CoOp or CoCoOp prompt_learner checkpoint (keys: {list(state_dict)})")
    if state_dict["ctx"].dim() != 2:
        raise ValueError(
            f"{source}: 'ctx' has shape {tuple(state_dict['ctx'].shape)}; only a unified context [n_ctx, dim] converts "
            "(CoOp's class-specific context, TRAINER.COOP.CSC True, has no MutualPrompt equivalent)"
        )
    converted: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    unknown: List[str] = []
    for key, value in state_dict.items():
        if key in COOP_ONLY_KEYS:
            continue
        if key == "ctx":
            converted[key] = value.float()
        elif key.startswith(COOP_META_NET):
            converted[OUR_META_NET + key[len(COOP_META_NET):]] = value.float()
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"{source} holds keys that CoOp's and CoCoOp's prompt learners do not have: {unknown}")
    return converted


def ours_to_coop(state_dict: Mapping[str, torch.Tensor], source: str) -> "OrderedDict[str, torch.Tensor]":
    """Our CoOp/CoCoOp-equivalent ``prompt_learner`` tensors under CoOp's/CoCoOp's names."""
    described = describe_prompt_learner(state_dict)
    mode = described.get("TRAINER.MUTUAL_PROMPT.FTP.MODE")
    if described.get("TRAINER.MUTUAL_PROMPT.TVP.ENABLED") or mode not in ("none", "shared"):
        raise ValueError(
            f"{source} was trained with FTP.MODE {mode} and TVP {'on' if described.get('TRAINER.MUTUAL_PROMPT.TVP.ENABLED') else 'off'}; "
            "only the CoOp-equivalent (FTP.MODE none, TVP off) and the CoCoOp-equivalent (FTP.MODE shared, TVP off) "
            "have a CoOp/CoCoOp checkpoint"
        )
    converted: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for key, value in state_dict.items():
        if key == "ctx":
            converted[key] = value
        elif key.startswith(OUR_META_NET):
            converted[COOP_META_NET + key[len(OUR_META_NET):]] = value
        else:
            raise ValueError(f"{source}: unexpected key {key!r} in a MutualPrompt prompt_learner checkpoint")
    return converted


def converted_checkpoint(checkpoint: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor]) -> Dict[str, Any]:
    """Dassl's checkpoint fields with the weights only: no optimizer or scheduler state."""
    val_result = checkpoint.get("val_result")
    return {
        "state_dict": state_dict,
        "epoch": checkpoint.get("epoch"),
        "optimizer": None,
        "scheduler": None,
        "val_result": float(val_result) if isinstance(val_result, (int, float)) else None,
    }


def output_path(source: str, out_dir: str, force: bool) -> str:
    path = os.path.join(out_dir, MODEL_NAME, os.path.basename(source))
    if os.path.exists(path) and not force:
        raise FileExistsError(f"{path} exists; choose another OUT_DIR or pass --force to replace it")
    return path


def from_coop(source: str, out_dir: str, trust: bool = False, force: bool = False) -> str:
    """Write ``source`` (CoOp/CoCoOp) in our format under ``out_dir``; return the written path."""
    path = output_path(source, out_dir, force)
    checkpoint = read_coop_checkpoint(source, trust)
    state_dict = coop_to_ours(checkpoint["state_dict"], source)
    write_torch_file(converted_checkpoint(checkpoint, state_dict), path)
    n_ctx = state_dict["ctx"].shape[0]
    epoch = os.path.basename(source).rsplit("-", 1)[-1]
    mode = "shared" if any(k.startswith(OUR_META_NET) for k in state_dict) else "none"
    print(f"{'CoCoOp' if mode == 'shared' else 'CoOp'} checkpoint {source} (epoch {checkpoint.get('epoch')}) -> {path}")
    print(f"Evaluate it with TRAINER.MUTUAL_PROMPT.FTP.MODE {mode}, TVP.ENABLED False and {n_ctx} context tokens "
          f"(CTX_INIT of {n_ctx} words, or CTX_INIT \"\" N_CTX {n_ctx}), the same backbone, and "
          f"--model-dir {out_dir}" + (f" --load-epoch {epoch}" if epoch.isdigit() else ""))
    return path


def to_coop(source: str, out_dir: str, force: bool = False) -> str:
    """Write our CoOp/CoCoOp-equivalent checkpoint ``source`` in CoOp's format under ``out_dir``."""
    path = output_path(source, out_dir, force)
    if not os.path.isfile(source):
        raise FileNotFoundError(f"No checkpoint file at {source}")
    checkpoint = read_checkpoint(source)
    state_dict = ours_to_coop(checkpoint["state_dict"], source)
    write_torch_file(converted_checkpoint(checkpoint, state_dict), path)
    trainer = "CoCoOp" if any(k.startswith(COOP_META_NET) for k in state_dict) else "CoOp"
    print(f"MutualPrompt checkpoint {source} -> {path}, for CoOp's {trainer} trainer (--model-dir {out_dir}; "
          f"{trainer}'s N_CTX/CTX_INIT must give {state_dict['ctx'].shape[0]} context tokens)")
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mutual_prompt.convert", description=__doc__.split("\n", 1)[0])
    commands = parser.add_subparsers(dest="command", required=True)
    imp = commands.add_parser("from-coop", help="CoOp/CoCoOp prompt_learner checkpoint -> MutualPrompt")
    imp.add_argument("source", help="CoOp's or CoCoOp's <run>/prompt_learner/model.pth.tar-N (or model-best.pth.tar)")
    imp.add_argument("out_dir", help="writes OUT_DIR/prompt_learner/<same file name>")
    imp.add_argument("--trust", action="store_true",
                     help="unpickle the file fully (it pickles Python objects; this can run code from it)")
    imp.add_argument("--force", action="store_true", help="replace an existing output file")
    exp = commands.add_parser("to-coop", help="MutualPrompt (FTP none/shared, TVP off) -> CoOp/CoCoOp checkpoint")
    exp.add_argument("source", help="our <run>/prompt_learner/model.pth.tar-N (or model-best.pth.tar)")
    exp.add_argument("out_dir", help="writes OUT_DIR/prompt_learner/<same file name>")
    exp.add_argument("--force", action="store_true", help="replace an existing output file")
    return parser


def main(argv: Optional[List[str]] = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "from-coop":
            from_coop(args.source, args.out_dir, trust=args.trust, force=args.force)
        else:
            to_coop(args.source, args.out_dir, force=args.force)
    except (ValueError, OSError) as e:  # OSError: the source or the output file cannot be read or written
        parser.exit(2, f"{parser.prog}: error: {e}\n")


if __name__ == "__main__":
    main()
