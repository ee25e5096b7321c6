"""The run fingerprint, ``run_fingerprint.json`` beside a training run's ``log.txt``: the config
values the run was made with and the SHA-256 of its dataset's split file. It guards two things:

- resuming a run with other values is refused, naming each key (``--force-resume`` continues, and
  each change is logged and added to the file's ``history``);
- ``--eval-only`` of a run's checkpoint with other values of the keys that shape the model's output
  (``shapes_the_output``) is refused, with the overrides that restore them.

Every config key is fingerprinted except those in ``NOT_FINGERPRINTED`` and the exact speed-up keys
(``EXACT_SPEEDUP_KEYS``), so that a key added to the config is checked without being listed here.
Beside them, ``BACKBONE_IDENTITY_KEYS`` say which CLIP weights the run uses (``backbone_identity``):
their architecture, activation and the SHA-256 of the weights file. Where both fingerprints record
the same SHA-256, ``MODEL.BACKBONE.PATH`` is not compared (the same file moved elsewhere); otherwise
it is, so that another file is named by its path beside its hash, and a fingerprint without the hash
still checks the file by its path.

The file::

    {"config": {"OPTIM.LR": 0.002, ...,        every fingerprinted key, dotted, as JSON reads it back,
                "MODEL.BACKBONE.SHA256": "5806...", ...},   and the backbone's identity
     "split_sha256": "9f2c...",                 "" without a split file; absent when the dataset does not say
     "history": [{"time": "2025-01-31T10:04:05",
                  "resumed_from": "OUT/prompt_learner/model.pth.tar-3",
                  "changed": {"OPTIM.MAX_EPOCH": {"from": 10, "to": 20}},
                  "unchecked": ["INPUT.SIZE", ...]}]}

``history`` has one entry per resume that changed values (``--force-resume``) or could not check
some (``unchecked``: keys the stored fingerprint lacked, or every key where there was none); its
``config`` holds the newest values. A flat object of dotted keys, as written by earlier versions, is
read as ``config`` alone.
"""
import ast
import json
import os
import shlex
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from ..clip import backbone_identity
from ..files import read_json, write_json
from .checkpoints import has_checkpoints, newest_checkpoint

FINGERPRINT_FILE = "run_fingerprint.json"
# Keys that change neither the trained weights nor the reported number.
NOT_FINGERPRINTED = frozenset({
    "OUTPUT_DIR",  # where the run is written
    "RESUME",  # where it resumes from
    "DATASET.ROOT",  # where the data lies (the split file's hash checks what it holds)
    "USE_CUDA",
    "VERBOSE",
    "DATALOADER.NUM_WORKERS",  # how many processes load the images
    "TRAIN.PRINT_FREQ",
    "TRAIN.CHECKPOINT_FREQ",
    "TEST.PER_CLASS_RESULT",  # printed beside the accuracy
    "TEST.COMPUTE_CMAT",  # printed beside the accuracy
})
# Under every TRAINER.<METHOD> node: exact speed-ups of the text encoder (docs/METHOD.md).
EXACT_SPEEDUP_KEYS = frozenset({"TEXT_CHUNK", "TEXT_SHARED_PREFIX", "TEXT_TRUNCATE", "TEXT_CHECKPOINT"})
# The INPUT keys that decide the test-time image (resize, centre crop, normalisation).
TEST_INPUT_KEYS = frozenset({
    "INPUT.SIZE", "INPUT.INTERPOLATION", "INPUT.PIXEL_MEAN", "INPUT.PIXEL_STD", "INPUT.NO_TRANSFORM",
    "INPUT.TRANSFORMS",
})
# Of INPUT.TRANSFORMS, the steps the test transform applies; the others augment training images only.
TEST_TIME_TRANSFORMS = ("normalize", "instance_norm")
SPLIT_KEY = "split_sha256"
WEIGHTS_PATH_KEY = "MODEL.BACKBONE.PATH"
WEIGHTS_SHA256_KEY = "MODEL.BACKBONE.SHA256"
# Not config keys: what the weights in MODEL.BACKBONE.NAME / PATH are (mutual_prompt.clip.backbone_identity).
BACKBONE_IDENTITY_KEYS = ("MODEL.BACKBONE.ARCH", "MODEL.BACKBONE.ACTIVATION", WEIGHTS_SHA256_KEY)
FORCED = "Resuming with a changed configuration (--force-resume)"

Change = Tuple[str, Any, Any]  # key, stored value, value now


class FingerprintMismatch(ValueError):
    """The run to resume or evaluate was made with other values of keys that decide the result."""


def _flatten(node, prefix: str = "") -> Dict[str, Any]:
    out = {}
    for key in sorted(node.keys()):
        name = f"{prefix}{key}"
        if hasattr(node[key], "keys"):
            out.update(_flatten(node[key], f"{name}."))
        else:
            out[name] = node[key]
    return out


def is_fingerprinted(key: str) -> bool:
    if key in NOT_FINGERPRINTED:
        return False
    parts = key.split(".")
    return not (parts[0] == "TRAINER" and len(parts) > 2 and parts[-1] in EXACT_SPEEDUP_KEYS)


def _weights_identity(cfg) -> Dict[str, str]:
    """``backbone_identity`` of the run's CLIP weights; empty when it cannot be told (an unknown name, a
    missing or unreadable file, open_clip not installed: building the trainer reports that, or a trainer
    without CLIP)."""
    backbone = cfg.MODEL.BACKBONE
    try:
        return backbone_identity(backbone.NAME, getattr(backbone, "PATH", ""))
    except (ValueError, OSError, ImportError):
        return {}


def fingerprint_config(cfg) -> Dict[str, Any]:
    """Every fingerprinted key of ``cfg``, dotted, as JSON reads it back (tuples become lists), and the
    identity of its CLIP weights (``BACKBONE_IDENTITY_KEYS``)."""
    values = {key: value for key, value in _flatten(cfg).items() if is_fingerprinted(key)}
    values.update(_weights_identity(cfg))
    return json.loads(json.dumps(values))


def _is_method_node(node: str, trainer_name: str) -> bool:
    """Whether ``TRAINER.<node>`` holds the keys of trainer ``trainer_name`` (MUTUAL_PROMPT for
    MutualPrompt, ZEROSHOT_MP for ZeroshotMP, COOP for CoOp)."""
    return node.replace("_", "").upper() == trainer_name.replace("_", "").upper()


def shapes_the_output(key: str, trainer_name: str) -> bool:
    """Whether evaluating a checkpoint with another value of ``key`` gives another number for the
    same data: the trainer and its method keys (not PREC: evaluating in another precision is
    legitimate), the model, the test-time image."""
    if key == "TRAINER.NAME" or key.startswith("MODEL.") or key in TEST_INPUT_KEYS:
        return True
    parts = key.split(".")
    return parts[0] == "TRAINER" and len(parts) > 2 and _is_method_node(parts[1], trainer_name) and parts[-1] != "PREC"


def _as_tested(key: str, value: Any) -> Any:
    """``value`` as far as it acts at test time (for INPUT.TRANSFORMS, its test-time steps)."""
    if key == "INPUT.TRANSFORMS" and isinstance(value, list):
        return [name for name in value if name in TEST_TIME_TRANSFORMS]
    return value


@dataclass
class StoredFingerprint:
    config: Dict[str, Any]
    split_sha256: Optional[str] = None
    history: List[dict] = field(default_factory=list)


def read_fingerprint(directory: str) -> Optional[StoredFingerprint]:
    """The fingerprint in ``directory`` (None when there is none); ``ValueError`` naming the file if
    it cannot be read as one."""
    path = os.path.join(directory, FINGERPRINT_FILE)
    if not os.path.isfile(path):
        return None
    data = read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds no run fingerprint (a JSON object)")
    if "config" not in data:
        return StoredFingerprint(data)
    config, split, history = data["config"], data.get(SPLIT_KEY), data.get("history", [])
    if not isinstance(config, dict) or not isinstance(history, list) or not isinstance(split, (str, type(None))):
        raise ValueError(f"{path} is not a run fingerprint: 'config' must be an object, 'history' a list and "
                         f"'{SPLIT_KEY}' a string")
    return StoredFingerprint(config, split, history)


def _same_weights_file(stored: Dict[str, Any], current: Dict[str, Any]) -> bool:
    """Whether both fingerprints record the weights file's SHA-256 and it is the same."""
    return WEIGHTS_SHA256_KEY in stored and stored.get(WEIGHTS_SHA256_KEY) == current.get(WEIGHTS_SHA256_KEY)


def _compare(stored: Dict[str, Any], current: Dict[str, Any], keys) -> Tuple[List[Change], List[str]]:
    """(the keys whose values differ, with both values; the keys ``stored`` lacks). The weights file's
    path is no difference when its SHA-256 is the same."""
    changed, unchecked = [], []
    for key in sorted(keys):
        if key == WEIGHTS_PATH_KEY and _same_weights_file(stored, current):
            continue
        if key not in stored:
            unchecked.append(key)
        elif _as_tested(key, stored[key]) != _as_tested(key, current[key]):
            changed.append((key, stored[key], current[key]))
    return changed, unchecked


def _unchecked_note(path: str, keys: List[str]) -> str:
    return (f"{path} lacks {len(keys)} of the keys checked now (written by an earlier version or under another "
            f"backend), so these could not be checked: {', '.join(keys)}")


_WAY_ON = (f"use another --output-dir to start a new run, or pass --force-resume to continue this one with the "
           f"new values (each change is logged and recorded in {FINGERPRINT_FILE})")


def _forced_line(change: Change) -> str:
    key, old, new = change
    return f"{FORCED}: {key} {old!r} -> {new!r}"


def _restored_optim_note(changed: List[Change], checkpoint: Optional[str]) -> str:
    """Say which changed OPTIM values a resume from ``checkpoint`` does not apply: the optimizer's and
    the scheduler's states are restored from it (their learning rate, momentum, ... and a schedule
    made for the old OPTIM.MAX_EPOCH); OPTIM.MAX_EPOCH itself sets how many epochs run. "" if none."""
    optim = [(key, old) for key, old, _ in changed if key.startswith("OPTIM.")]
    if not optim or not checkpoint:
        return ""
    overridden = [key for key, _ in optim if key != "OPTIM.MAX_EPOCH"]
    parts = []
    if overridden:
        parts.append(f"{', '.join(overridden)} {'does' if len(overridden) == 1 else 'do'} not take effect")
    if any(key == "OPTIM.MAX_EPOCH" for key, _ in optim):
        old_epochs = next(old for key, old in optim if key == "OPTIM.MAX_EPOCH")
        parts.append(f"OPTIM.MAX_EPOCH sets how many epochs run, on the restored schedule made for {old_epochs}")
    return (f"Note: the optimizer and learning-rate scheduler are restored from {checkpoint}, so "
            + "; ".join(parts) + " (to train with the new values from the start, use another --output-dir)")


@dataclass
class FingerprintCheck:
    """What checking a run's fingerprint found: notes for ``log.txt``, and for a training run what
    ``accept_split`` and ``write`` need."""
    config: Dict[str, Any]
    source: str = ""
    stored: Optional[StoredFingerprint] = None
    changed: List[Change] = field(default_factory=list)
    unchecked: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    force: bool = False
    split_sha256: Optional[str] = None

    def log_lines(self) -> List[str]:
        """The notes, then one line per value changed with --force-resume, then what of the changed
        OPTIM values the restored optimizer and scheduler override."""
        lines = [f"Note: {note}" for note in self.notes] + [_forced_line(change) for change in self.changed]
        restored = _restored_optim_note(self.changed, newest_checkpoint(self.source) if self.source else None)
        return lines + ([restored] if restored else [])

    def accept_split(self, trainer) -> List[str]:
        """Take the split hash of the trainer's dataset (``dm.dataset.split_sha256``; unknown when the
        dataset has no such attribute). Another hash than the stored one raises ``FingerprintMismatch``
        naming both, unless ``force``; return the lines to log."""
        dataset = getattr(getattr(trainer, "dm", None), "dataset", None)
        self.split_sha256 = getattr(dataset, SPLIT_KEY, None)
        if self.split_sha256 is None or self.stored is None:
            return []
        stored = self.stored.split_sha256
        if stored is None:
            self.unchecked.append(SPLIT_KEY)
            return [f"Note: {os.path.join(self.source, FINGERPRINT_FILE)} has no {SPLIT_KEY}, so it could not be "
                    "checked that the run continues on the same split"]
        if stored == self.split_sha256:
            return []
        if not self.force:
            split_path = getattr(dataset, "split_path", "") or "the dataset's split file"
            raise FingerprintMismatch(
                f"{self.source} holds a run made on another split: its split file had SHA-256 {stored!r}, "
                f"{split_path} has {self.split_sha256!r} now. Resuming would mix two runs: " + _WAY_ON
            )
        change = (SPLIT_KEY, stored, self.split_sha256)
        self.changed.append(change)
        return [_forced_line(change)]

    def write(self, directory: str) -> None:
        """Write the fingerprint of this run into ``directory``, its history extended by this resume
        when it changed values or could not check some."""
        history = list(self.stored.history) if self.stored else []
        if self.changed or self.unchecked:
            history.append({
                "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "resumed_from": newest_checkpoint(self.source),
                "changed": {key: {"from": old, "to": new} for key, old, new in self.changed},
                "unchecked": self.unchecked,
            })
        data: Dict[str, Any] = {"config": self.config}
        if self.split_sha256 is not None:
            data[SPLIT_KEY] = self.split_sha256
        data["history"] = history
        write_json(data, os.path.join(directory, FINGERPRINT_FILE))


def check_resume_fingerprint(directory: str, cfg, force: bool) -> FingerprintCheck:
    """Compare ``cfg`` with the fingerprint in ``directory``, the run a training run continues.

    Differences raise ``FingerprintMismatch`` listing key, stored value and value now, unless
    ``force``. Keys the stored fingerprint lacks are not differences; a note names them.
    """
    config = fingerprint_config(cfg)
    path = os.path.join(directory, FINGERPRINT_FILE)
    try:
        stored = read_fingerprint(directory)
    except ValueError as e:
        if not force:
            raise FingerprintMismatch(f"{e}: cannot check that {directory} holds this run; " + _WAY_ON) from e
        return FingerprintCheck(config, directory, unchecked=sorted(config), force=force,
                                notes=[f"{e}: continuing without checking (--force-resume)"])
    if stored is None:
        if not has_checkpoints(directory):
            return FingerprintCheck(config, directory, force=force)
        return FingerprintCheck(config, directory, unchecked=sorted(config), force=force, notes=[
            f"{directory} holds checkpoints but no {FINGERPRINT_FILE} (written before it existed, or by another "
            "tool): cannot check that they come from this configuration"])
    changed, unchecked = _compare(stored.config, config, config)
    if changed and not force:
        details = "; ".join(f"{key}: {old!r} there, {new!r} now" for key, old, new in changed)
        raise FingerprintMismatch(
            f"{directory} holds a run with a different configuration ({details}). Resuming would mix two runs: "
            + _WAY_ON
        )
    notes = [_unchecked_note(path, unchecked)] if unchecked else []
    return FingerprintCheck(config, directory, stored, changed, unchecked, notes, force)


def _override(key: str, value: Any) -> str:
    """``KEY VALUE`` for train.py's command line, quoted for the shell, giving ``key`` ``value``."""
    if isinstance(value, str):
        try:
            ast.literal_eval(value)
            text = repr(value)  # else yacs would read it as a number, list, ...
        except (ValueError, SyntaxError):
            text = value
    else:
        text = repr(value)
    return f"{key} {shlex.quote(text)}"


def _restoring(changed: List[Change]) -> str:
    """How to evaluate with the trained values: the overrides of the config keys, and for weights that
    differ under the same name and path, the file to point MODEL.BACKBONE.PATH at."""
    overrides = " ".join(_override(key, old) for key, old, _ in changed if key not in BACKBONE_IDENTITY_KEYS)
    advice = [f"Set them to the trained values, e.g. append to the command: {overrides}"] if overrides else []
    changed_keys = {key for key, _, _ in changed}
    if WEIGHTS_SHA256_KEY in changed_keys and not changed_keys & {WEIGHTS_PATH_KEY, "MODEL.BACKBONE.NAME"}:
        trained = next(old for key, old, _ in changed if key == WEIGHTS_SHA256_KEY)
        advice.append(f"MODEL.BACKBONE.PATH holds another file than the one the model was trained with: point it "
                      f"at the weights file with SHA-256 {trained}")
    return "; ".join(advice)


def check_eval_fingerprint(model_dir: str, cfg) -> FingerprintCheck:
    """Compare the keys that shape the model's output (``shapes_the_output``) with the fingerprint of
    the run that trained ``model_dir``. Differences raise ``FingerprintMismatch`` listing key,
    trained value and value now, and the overrides that restore them; keys the fingerprint lacks,
    or a model folder with checkpoints and no fingerprint (CoOp's, older runs), give a note."""
    config = fingerprint_config(cfg)
    try:
        stored = read_fingerprint(model_dir)
    except ValueError as e:
        raise FingerprintMismatch(f"{e}: cannot check that --model-dir {model_dir} was trained with this "
                                  "configuration; repair or delete the file") from e
    if stored is None:
        notes = [f"--model-dir {model_dir} has no {FINGERPRINT_FILE} (trained by another tool or an earlier "
                 "version): cannot check that it was trained with this configuration"]
        return FingerprintCheck(config, model_dir, notes=notes if has_checkpoints(model_dir) else [])
    keys = [key for key in config if shapes_the_output(key, cfg.TRAINER.NAME)]
    changed, unchecked = _compare(stored.config, config, keys)
    if changed:
        details = "; ".join(f"{key}: {old!r} trained, {new!r} now" for key, old, new in changed)
        raise FingerprintMismatch(
            f"--model-dir {model_dir} was trained with other values of keys that shape the model's output "
            f"({details}): the accuracy would not be that of the trained model. {_restoring(changed)}"
        )
    path = os.path.join(model_dir, FINGERPRINT_FILE)
    return FingerprintCheck(config, model_dir, stored, notes=[_unchecked_note(path, unchecked)] if unchecked else [])
