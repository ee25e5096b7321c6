"""The sweep's option values: where each comes from, and the checks they pass before anything runs.

An option is taken from its flag, else from the ``--config`` file, else (``status`` only) from the
last run into the output folder (``remembered``), else from the scripts' environment variable (empty
counts as unset, as in the scripts), else the scripts' default. Every error names where the bad value
came from: ``--seeds``, ``SEEDS``, ``sweep.yaml: seeds`` or ``--seeds (remembered from the run of ...)``.
"""
import argparse
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence

from mutual_prompt.names import unknown_name

from .. import doctor
from ..dataset_catalog import RENDERED_DATASETS
from .plan import Ablation, Settings

if TYPE_CHECKING:
    from .remembered import Remembered


class UsageError(ValueError):
    """A bad option value; the message names the flag, config key or environment variable."""


@dataclass(frozen=True)
class Option:
    dest: str
    env: str = ""  # the scripts' environment variable that gives the default
    many: bool = False  # a list of values
    cast: Callable[[Any], Any] = str

    @property
    def flag(self) -> str:
        return "--" + self.dest.replace("_", "-")


OPTIONS = (
    Option("data", "DATA"), Option("output", "OUTPUT"), Option("trainer", "TRAINER"), Option("cfg", "CFG"),
    Option("shots", "SHOTS", cast=int), Option("seeds", "SEEDS", many=True, cast=int),
    Option("datasets", "DATASETS", many=True), Option("targets", "TARGETS", many=True), Option("source", "SOURCE"),
    Option("shot_list", "SHOT_LIST", many=True, cast=int), Option("sub", "SUB"),
    Option("load_epoch", "LOADEP", cast=int), Option("jobs", cast=int), Option("gpus"),
)
OPTION_DESTS = frozenset(o.dest for o in OPTIONS)
SUBSETS = ("new", "base")
# The datasets each protocol reads (Settings fields).
PROTOCOL_DATASETS = {"base2new": ("datasets",), "few_shot": ("datasets",), "xd": ("source", "targets")}


def _cast(option: Option, item: Any, source: str) -> Any:
    if option.cast is int:
        if isinstance(item, bool) or not isinstance(item, (int, str)):
            raise UsageError(f"{source}: expected an integer; got {item!r}")
        try:
            return int(item)
        except ValueError:
            raise UsageError(f"{source}: expected an integer; got {item!r}") from None
    if isinstance(item, (dict, list)):
        raise UsageError(f"{source}: expected a single value; got {item!r}")
    return str(item)


def convert(option: Option, raw: Any, source: str) -> Any:
    """A value from the config file (YAML: a scalar or a list) or the environment (a string; a list
    separated by spaces, as the scripts read it)."""
    if not option.many:
        if isinstance(raw, list):
            raise UsageError(f"{source}: expected a single value; got {raw!r}")
        return _cast(option, raw, source)
    items = raw.split() if isinstance(raw, str) else raw if isinstance(raw, list) else [raw]
    if not items:
        raise UsageError(f"{source}: expected at least one value")
    return [_cast(option, item, source) for item in items]


def resolve(args: argparse.Namespace, file: Dict[str, Any], config: Optional[str],
            remembered: Optional["Remembered"] = None, dests: Optional[Sequence[str]] = None) -> Dict[str, str]:
    """Fill each option the command line left out from the config file, else from ``remembered`` (the
    last run's options, for ``status``), else from its environment variable; returns where each given
    value came from (options left at their default are absent). ``dests``: only these options."""
    sources: Dict[str, str] = {}
    for option in OPTIONS:
        if not hasattr(args, option.dest) or (dests is not None and option.dest not in dests):
            continue  # an option of the other command, or one not asked for
        if getattr(args, option.dest) is not None:
            sources[option.dest] = option.flag
            continue
        if option.dest in file:
            source, raw = f"{config}: {option.dest}", file[option.dest]
        elif remembered is not None and option.dest in remembered.options:
            source, raw = remembered.source(option.dest), remembered.options[option.dest]
        elif option.env and os.environ.get(option.env, "").strip():
            source, raw = option.env, os.environ[option.env]
        else:
            continue
        setattr(args, option.dest, convert(option, raw, source))
        sources[option.dest] = source
    return sources


def _check_each(args: argparse.Namespace, sources: Dict[str, str], dest: str, ok: Callable[[Any], bool],
                expected: str) -> None:
    """Every item of the option ``dest`` (if given) passes ``ok`` and none is given twice."""
    value = getattr(args, dest, None)
    if value is None:
        return
    items = value if isinstance(value, list) else [value]
    for item in items:
        if not ok(item):
            raise UsageError(f"{sources[dest]}: expected {expected}; got {item!r}")
    for i, item in enumerate(items):
        if item in items[:i]:
            raise UsageError(f"{sources[dest]}: {item!r} is given twice (two runs would write into one folder)")


def _gpu_ids_ok(value: str) -> bool:
    return all(gpu.strip() for gpu in value.split(","))


def check_values(args: argparse.Namespace, sources: Dict[str, str]) -> None:
    """The values' ranges, before anything runs: a shot count or a seed out of range would make runs
    that look right and are not (a negative seed leaves a run unseeded, 0 shots trains on every image)."""
    _check_each(args, sources, "shots", lambda k: k >= 1, "a number of shots >= 1")
    _check_each(args, sources, "shot_list", lambda k: k >= 1, "numbers of shots >= 1")
    _check_each(args, sources, "seeds", lambda s: s >= 0, "seeds >= 0 (a negative seed leaves the run unseeded)")
    _check_each(args, sources, "load_epoch", lambda e: e >= 1, "an epoch >= 1")
    _check_each(args, sources, "sub", lambda s: s in SUBSETS, " or ".join(SUBSETS))
    _check_each(args, sources, "jobs", lambda n: n >= 1, "a number of processes >= 1")
    # A GPU id may be repeated (0,0,1,1 runs two on each), never empty.
    if getattr(args, "gpus", None) is not None and not _gpu_ids_ok(args.gpus):
        raise UsageError(f"{sources['gpus']}: expected comma-separated GPU ids such as 0,1,2,3; got {args.gpus!r}")
    if getattr(args, "gpus", None) is not None and getattr(args, "jobs", None) is not None:
        raise UsageError(f"{sources['gpus']} and {sources['jobs']} exclude each other (one run per GPU id, "
                         "or N processes on the CPU)")
    executor = getattr(args, "executor", "local")
    for dest in ("gpus", "jobs"):
        if executor != "local" and getattr(args, dest, None) is not None:
            raise UsageError(f"{sources[dest]} is for --executor local; with --executor {executor} each job "
                             "gets the resources of the SLURM options")


def dataset_names(repo_root: str) -> List[str]:
    """The datasets a run can name: the configs in ``configs/datasets`` (``plan`` passes
    ``configs/datasets/<name>.yaml`` to train.py)."""
    folder = os.path.join(repo_root, "configs", "datasets")
    names = os.listdir(folder) if os.path.isdir(folder) else []
    return sorted(n[:-len(".yaml")] for n in names if n.endswith(".yaml"))


def used_datasets(protocol: str, settings: Settings) -> Dict[str, Sequence[str]]:
    """The dataset names each option of ``protocol`` gives (by option)."""
    named = {}
    for dest in PROTOCOL_DATASETS[protocol]:
        value = getattr(settings, dest)
        named[dest] = (value,) if isinstance(value, str) else value
    return named


def check_datasets(protocol: str, settings: Settings, sources: Dict[str, str]) -> None:
    """Every dataset the protocol's options name has a config (a did-you-mean for a misspelt one)."""
    known = dataset_names(settings.repo_root)
    for dest, names in used_datasets(protocol, settings).items():
        for name in names:
            if name not in known:
                source = sources.get(dest, Option(dest).flag + " (default)")
                raise UsageError(f"{source}: {unknown_name('dataset', name, known)} "
                                 f"(the configs in {os.path.join(settings.repo_root, 'configs', 'datasets')})")


def check_configs(protocol: str, settings: Settings, ablations: Sequence[Ablation], sources: Dict[str, str]) -> None:
    """The trainer config of the main runs and of each ablation exists (train.py's --config-file)."""
    variants = [(sources.get("cfg") or sources.get("trainer", "--trainer (default)"), settings.cfg)]
    variants += [(f"ablation {a.name!r}", a.cfg) for a in ablations if a.cfg]
    for who, cfg in variants:
        path = os.path.join(settings.repo_root, "configs", "trainers", settings.trainer, f"{cfg}.yaml")
        if not os.path.isfile(path):
            raise UsageError(f"{who}: no config file {path} (trainer {settings.trainer!r}, cfg {cfg!r})")


# Keys the protocol sets and names its folders after: an override would put runs in folders named otherwise.
PROTOCOL_KEYS = {"DATASET.NUM_SHOTS": "--shots (or --shot-list for few_shot)",
                 "DATASET.SUBSAMPLE_CLASSES": "--sub (base2new's tests)"}


def check_overrides(who: str, opts: Sequence[str]) -> None:
    """``opts`` comes in KEY VALUE pairs and sets none of the keys the protocol sets itself."""
    if len(opts) % 2:
        raise UsageError(f"{who}: overrides come in KEY VALUE pairs; got {list(opts)}")
    for key in opts[::2]:
        if key in PROTOCOL_KEYS:
            raise UsageError(f"{who}: {key} is set by the protocol, which names the run folders after it; "
                             f"give {PROTOCOL_KEYS[key]} instead")


def check_ablations(ablations: Sequence[Ablation]) -> None:
    for a in ablations:
        check_overrides(f"ablation {a.name!r}", a.opts)


def check_data(protocol: str, settings: Settings, sources: Dict[str, str], stop: bool) -> str:
    """The doctor's checks of the datasets the protocol reads (the toy world renders its own), as its
    table ("" when every dataset renders itself). With ``stop``, a missing data folder or a dataset
    that is not usable raises ``UsageError`` (with the table) before anything runs."""
    path = os.path.join(settings.repo_root, settings.data)
    names = [n for n in dict.fromkeys(n for names in used_datasets(protocol, settings).values() for n in names)
             if n not in RENDERED_DATASETS]
    if not names:
        return ""
    if stop and not os.path.isdir(path):
        if "data" in sources:
            raise UsageError(f"{sources['data']}: no data folder {path}")
        raise UsageError(f"no data folder {path} (the default: <repo>/data); give --data or set DATA")
    reports = doctor.check_datasets(path, names)
    table = f"Datasets under {path} (python -m mutual_prompt.doctor):\n{doctor.table(reports)}"
    if doctor.usable(reports):
        return table
    if stop:
        raise UsageError(f"not every dataset is usable; nothing was started\n{table}")
    return f"{table}\nwarning: not every dataset is usable here; the runs that read one fail unless it is usable " \
           "where they run"
