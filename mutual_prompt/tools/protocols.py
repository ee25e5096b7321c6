"""The protocols as ``scripts/protocols.sh`` defines them, read strictly, and the epoch a test loads.

``scripts/protocols.sh`` is the one definition of each protocol: the run scripts source it, the sweep
reads it here. It holds comments and ``NAME=VALUE`` lines only; a line bash would read otherwise
(``$(...)``, backquotes, backslashes, an unknown ``{NAME}`` in a template) or a name that is unknown,
missing or given twice is an error naming the file and the line.
"""
import os
import re
from dataclasses import dataclass
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

import yaml

from mutual_prompt.tools import PACKAGE_CHECKOUT
from mutual_prompt.tools.results import TRAIN_END_SIGNAL, parse_run

PROTOCOLS_FILE = os.path.join(PACKAGE_CHECKOUT, "scripts", "protocols.sh")
# The sweep's protocols, by the prefix of their names in the file.
PREFIXES = {"base2new": "BASE2NEW_", "xd": "XD_", "few_shot": "FEW_SHOT_"}
# Names (after the prefix) that give the default of a sweep option (a ``Settings`` field).
DEFAULT_FIELDS = {"CFG": "cfg", "SHOTS": "shots", "SEEDS": "seeds", "DATASETS": "datasets", "SOURCE": "source",
                  "TARGETS": "targets", "SHOT_LIST": "shot_list", "SUB": "sub"}

# The trainers of the reference runs of few_shot: zero-shot CLIP (one seed), linear-probe CLIP.
ZERO_SHOT_TRAINER = "ZeroshotMP"
ZERO_SHOT_SEED = 1
LINEAR_PROBE_TRAINER = "LinearProbeMP"

_ASSIGNMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)")
_VALUE = re.compile(r"""'(?P<single>[^']*)'|"(?P<double>[^"\\`]*)"|(?P<bare>[A-Za-z0-9_.,:+%@/{}-]*)""")
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_EPOCH_CHECKPOINT = re.compile(r"^model\.pth\.tar-(\d+)$")  # Dassl's name; run/checkpoints.py would import torch


class ProtocolFileError(ValueError):
    """``scripts/protocols.sh`` is malformed; the message names the file, the line and what was expected."""


@dataclass(frozen=True)
class Template:
    """A ``*_DIR`` or ``*_OPTS`` value: text with ``{NAME}`` placeholders that each run fills in."""

    text: str

    def fill(self, **values: object) -> str:
        return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), self.text)


@dataclass(frozen=True)
class Protocol:
    """One protocol of the sweep: its option defaults and the templates of its runs."""

    name: str
    defaults: Mapping[str, object]  # Settings field -> default (cfg, shots, seeds, datasets, ...)
    train_dir: Template
    train_opts: Template
    test_dir: Optional[Template] = None  # protocols without test runs have none
    test_opts: Optional[Template] = None
    zeroshot_dir: Optional[Template] = None  # zero-shot CLIP's folder of seeds, once per dataset (few_shot)
    linear_probe_dir: Optional[Template] = None  # linear-probe CLIP's folder of seeds, per dataset and shots


Parse = Callable[[str], object]  # a value's text -> its typed value; raises ValueError(expected)


def _word(text: str) -> str:
    if len(text.split()) != 1:
        raise ValueError("one word")
    return text


def _number(text: str) -> int:
    if not text.isdigit():
        raise ValueError("a number")
    return int(text)


def _words(text: str) -> Tuple[str, ...]:
    if not text.split():
        raise ValueError("a list of words")
    return tuple(text.split())


def _numbers(text: str) -> Tuple[int, ...]:
    if not text.split() or not all(w.isdigit() for w in text.split()):
        raise ValueError("a list of numbers")
    return tuple(int(w) for w in text.split())


def _template(*names: str, pairs: bool = False) -> Parse:
    """A template that may use the placeholders ``names`` (the values its runs have)."""

    def parse(text: str) -> Template:
        for name in _PLACEHOLDER.findall(text):
            if name not in names:
                raise ValueError(f"a template using only {' '.join('{' + n + '}' for n in names)}; "
                                 f"{{{name}}} is none of them")
        if pairs and len(text.split()) % 2:
            raise ValueError("KEY VALUE pairs")
        if not pairs and not text.strip():
            raise ValueError("a folder template")
        return Template(text)

    return parse


_RUN = ("OUTPUT", "TRAINER", "CFG", "SHOTS")
SCHEMA: Dict[str, Parse] = {
    "BENCHMARK_DATASETS": _words,
    "BASE2NEW_CFG": _word, "BASE2NEW_DATASETS": _words, "BASE2NEW_SEEDS": _numbers, "BASE2NEW_SHOTS": _number,
    "BASE2NEW_SUB": _word,
    "BASE2NEW_TRAIN_DIR": _template(*_RUN, "DATASET"),
    "BASE2NEW_TRAIN_OPTS": _template(*_RUN, "DATASET", pairs=True),
    "BASE2NEW_TEST_DIR": _template(*_RUN, "DATASET", "SUB"),
    "BASE2NEW_TEST_OPTS": _template(*_RUN, "DATASET", "SUB", pairs=True),
    "XD_CFG": _word, "XD_SOURCE": _word, "DG_TARGETS": _words, "XD_TARGETS": _words, "XD_SEEDS": _numbers,
    "XD_SHOTS": _number,
    "XD_TRAIN_DIR": _template(*_RUN, "SOURCE"),
    "XD_TRAIN_OPTS": _template(*_RUN, "SOURCE", pairs=True),
    "XD_TEST_DIR": _template(*_RUN, "SOURCE", "DATASET"),
    "XD_TEST_OPTS": _template(*_RUN, "SOURCE", "DATASET", pairs=True),
    "FEW_SHOT_CFG": _word, "FEW_SHOT_DATASETS": _words, "FEW_SHOT_SEEDS": _numbers, "FEW_SHOT_SHOT_LIST": _numbers,
    "FEW_SHOT_TRAIN_DIR": _template(*_RUN, "DATASET"),
    "FEW_SHOT_TRAIN_OPTS": _template(*_RUN, "DATASET", pairs=True),
    "FEW_SHOT_ZEROSHOT_DIR": _template("OUTPUT", "CFG", "DATASET"),
    "FEW_SHOT_LINEAR_PROBE_DIR": _template("OUTPUT", "CFG", "DATASET", "SHOTS"),
}


def _value_text(raw: str, texts: Mapping[str, str], where: str) -> str:
    """The text bash assigns for ``raw`` (the part after ``=``), ``${NAME}`` of a name above included."""
    match = _VALUE.fullmatch(raw.rstrip()) or _VALUE.fullmatch(re.sub(r"\s+#.*$", "", raw))
    if match is None:
        raise ProtocolFileError(f"{where}: expected a word, a \"list of words\" or a 'template' (no $(...), "
                                f"backquotes, backslashes or spaces outside quotes); got {raw!r}")
    if match.group("double") is None:
        return match.group("single") if match.group("single") is not None else match.group("bare")

    def reference(m: "re.Match[str]") -> str:
        if m.group(1) not in texts:
            raise ProtocolFileError(f"{where}: ${{{m.group(1)}}} is not a name defined above")
        return texts[m.group(1)]

    if "$" in _REFERENCE.sub("", match.group("double")):
        raise ProtocolFileError(f"{where}: expected no $ but ${{NAME}} of a name above; got {raw!r}")
    return _REFERENCE.sub(reference, match.group("double"))


def load(path: str) -> Dict[str, Protocol]:
    """The sweep's protocols as the file at ``path`` defines them, every line checked."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    texts: Dict[str, str] = {}
    values: Dict[str, object] = {}
    line_of: Dict[str, int] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        assignment = _ASSIGNMENT.fullmatch(line)
        if assignment is None:
            raise ProtocolFileError(f"{path}, line {number}: expected a comment or NAME=VALUE; got {line!r}")
        name, raw = assignment.groups()
        where = f"{path}, line {number}: {name}"
        if name not in SCHEMA:
            raise ProtocolFileError(f"{path}, line {number}: unknown name {name!r}; expected one of "
                                    f"{', '.join(SCHEMA)}")
        if name in line_of:
            raise ProtocolFileError(f"{where} is defined twice (lines {line_of[name]} and {number})")
        texts[name] = _value_text(raw, texts, where)
        try:
            values[name] = SCHEMA[name](texts[name])
        except ValueError as e:
            raise ProtocolFileError(f"{where}: expected {e}; got {texts[name]!r}") from None
        line_of[name] = number
    missing = [name for name in SCHEMA if name not in values]
    if missing:
        raise ProtocolFileError(f"{path}: no {', '.join(missing)} (every name of the protocols is needed)")
    protocols = {}
    for protocol, prefix in PREFIXES.items():
        defaults = {field: values[prefix + key] for key, field in DEFAULT_FIELDS.items() if prefix + key in values}
        runs = {key: values.get(prefix + key.upper())
                for key in ("train_dir", "train_opts", "test_dir", "test_opts", "zeroshot_dir", "linear_probe_dir")}
        protocols[protocol] = Protocol(protocol, defaults, **runs)
    return protocols


def protocol(name: str) -> Protocol:
    """The protocol ``name`` as ``PROTOCOLS_FILE`` (``scripts/protocols.sh``) defines it."""
    return load(PROTOCOLS_FILE)[name]


def _backbone(config_file: str, opts: Sequence[str] = ()) -> str:
    """``MODEL.BACKBONE.NAME`` of ``config_file``, or of the KEY VALUE overrides ``opts`` when they set it."""
    for key, value in zip(opts[::2], opts[1::2]):
        if key == "MODEL.BACKBONE.NAME":
            return value
    if not os.path.isfile(config_file):
        raise FileNotFoundError(f"Config file {config_file} not found")
    with open(config_file, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    return str(((data.get("MODEL") or {}).get("BACKBONE") or {}).get("NAME", ""))


def reference(trainer: str, config_file: str, opts: Sequence[str] = ()) -> Tuple[str, Tuple[str, ...]]:
    """The reference run of ``trainer`` that goes with a training of ``config_file`` (and overrides
    ``opts``): the name of the ``configs/trainers/<trainer>`` config of the same backbone, and the
    overrides of ``opts`` it takes (``MODEL.BACKBONE.*``: the same weights). ValueError says why there
    is none."""
    backbone = _backbone(config_file, opts)
    folder = os.path.join(os.path.dirname(os.path.dirname(config_file)), trainer)
    names = sorted(n for n in os.listdir(folder) if n.endswith(".yaml")) if os.path.isdir(folder) else []
    for name in names:
        if _backbone(os.path.join(folder, name)) == backbone:
            pairs = [(k, v) for k, v in zip(opts[::2], opts[1::2]) if k.startswith("MODEL.BACKBONE.")]
            return name[:-len(".yaml")], tuple(word for pair in pairs for word in pair)
    what = {ZERO_SHOT_TRAINER: "zero-shot CLIP line",
            LINEAR_PROBE_TRAINER: "linear-probe CLIP curve"}.get(trainer, f"{trainer} run")
    raise ValueError(f"no {what}: no config in {folder} has MODEL.BACKBONE.NAME {backbone!r}, the "
                     f"backbone of {config_file}")


def zero_shot(config_file: str, opts: Sequence[str] = ()) -> Tuple[str, Tuple[str, ...]]:
    """``reference`` of zero-shot CLIP (``ZeroshotMP``)."""
    return reference(ZERO_SHOT_TRAINER, config_file, opts)


def linear_probe(config_file: str, opts: Sequence[str] = ()) -> Tuple[str, Tuple[str, ...]]:
    """``reference`` of linear-probe CLIP (``LinearProbeMP``)."""
    return reference(LINEAR_PROBE_TRAINER, config_file, opts)


def max_epoch(config_file: str, opts: Sequence[str] = (), model_dir: str = "") -> int:
    """The epoch whose checkpoint a test loads unless LOADEP is set: the training's OPTIM.MAX_EPOCH,
    from the KEY VALUE overrides ``opts``, else the last epoch of the finished training in ``model_dir``
    (so that a training run with ``OPTIM.MAX_EPOCH N`` is tested at epoch N without repeating the
    override), else from ``config_file``, else 10 (the config default)."""
    for key, value in zip(opts[::2], opts[1::2]):
        if key == "OPTIM.MAX_EPOCH":
            try:
                return int(value)
            except ValueError:
                raise ValueError(f"override OPTIM.MAX_EPOCH: expected an integer; got {value!r}") from None
    trained = last_trained_epoch(model_dir) if model_dir else None
    if trained is not None:
        return trained
    if not os.path.isfile(config_file):
        raise FileNotFoundError(f"Config file {config_file} not found")
    with open(config_file, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    return int((data.get("OPTIM") or {}).get("MAX_EPOCH", 10))


def last_trained_epoch(model_dir: str) -> Optional[int]:
    """The newest epoch checkpoint (``<model>/model.pth.tar-N``) of the training in ``model_dir`` when
    its log says it finished (under Dassl or not, the last epoch is always saved), else None."""
    if parse_run(model_dir, end_signal=TRAIN_END_SIGNAL) is None:
        return None
    epochs = [int(match.group(1))
              for folder in os.listdir(model_dir) if os.path.isdir(os.path.join(model_dir, folder))
              for match in map(_EPOCH_CHECKPOINT.match, os.listdir(os.path.join(model_dir, folder))) if match]
    return max(epochs) if epochs else None
