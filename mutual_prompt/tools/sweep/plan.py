"""Protocols as lists of runs: the same output folders and ``train.py`` command lines as ``scripts/``.

Each function mirrors one script (``base2new_train.sh``/``base2new_test.sh``, ``xd_train.sh``/
``xd_test.sh``, ``few_shot.sh``) and each protocol mirrors one ``reproduce_*.sh`` loop, in the same
order; ``tests/test_sweep_plan.py`` runs the scripts with a recording interpreter and checks that
both produce the same command lines.
"""
import os
import shlex
import sys
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Sequence, Tuple

import yaml

from mutual_prompt.tools.results import BENCHMARK_DATASETS, TEST_END_SIGNAL, TRAIN_END_SIGNAL

XD_TARGETS = BENCHMARK_DATASETS[1:] + ("imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r")
PROTOCOLS = ("base2new", "xd", "few_shot")
# Datasets that render themselves into the data folder on first use (the toy world's).
RENDERED_DATASETS = ("toy_shapes",)
# The config each protocol's scripts use when CFG is not set.
DEFAULT_CFG = {
    "base2new": "vit_b16_c4_ep10_batch1_ctxv1",
    "xd": "vit_b16_c4_ep5_batch4_ctxv1_xd",
    "few_shot": "vit_b16_c4_ep10_batch4_ctxv1_fewshot",
}


@dataclass(frozen=True)
class Run:
    """One ``train.py`` invocation: where it writes, how it is called, and what must finish first."""

    output_dir: str  # as passed to --output-dir (relative to the repository root unless absolute)
    args: Tuple[str, ...]  # train.py's arguments
    end_signal: str  # the log line after which the result is read (as the scripts' skip check)
    depends_on: Tuple[str, ...] = ()  # output_dir of runs that must be finished first
    kind: str = "train"  # "train" or "test"

    def command(self, python: str = sys.executable) -> List[str]:
        return [python, "train.py", *self.args]

    def shell(self, python: str = "python") -> str:
        return shlex.join(self.command(python))


@dataclass(frozen=True)
class Settings:
    """What the scripts read from the environment (DATA, OUTPUT, TRAINER, CFG, SHOTS, ...)."""

    repo_root: str
    data: str
    output: str = "output"
    trainer: str = "MutualPrompt"
    cfg: str = ""  # empty: the protocol's default config
    shots: int = 16
    seeds: Tuple[int, ...] = (1, 2, 3)
    datasets: Tuple[str, ...] = BENCHMARK_DATASETS
    targets: Tuple[str, ...] = XD_TARGETS
    source: str = "imagenet"
    shot_list: Tuple[int, ...] = (1, 2, 4, 8, 16)
    sub: str = "new"
    load_epoch: Optional[int] = None  # LOADEP; default: the MAX_EPOCH the training uses
    opts: Tuple[str, ...] = ()  # trailing KEY VALUE overrides

    def cfg_for(self, protocol: str) -> str:
        return self.cfg or DEFAULT_CFG[protocol]


@dataclass(frozen=True)
class Ablation:
    """A variant of a protocol: another config file and/or extra KEY VALUE overrides.

    A variant that only changes the config writes beside the main runs (its name is in the folder),
    as ``CFG=<cfg> bash scripts/reproduce_*.sh`` does; one with overrides writes under
    ``<output>/ablations/<name>``, as ``OUTPUT=<output>/ablations/<name> bash scripts/... KEY VALUE``."""

    name: str
    cfg: str = ""
    opts: Tuple[str, ...] = ()


@dataclass(frozen=True)
class Variant:
    name: str  # "main" or the ablation's name
    protocol: str
    settings: Settings
    runs: Tuple[Run, ...] = field(default=())


def config_max_epoch(settings: Settings, cfg: str) -> int:
    """The epoch whose checkpoint a test loads: LOADEP, else OPTIM.MAX_EPOCH from the overrides, else
    from the config file (default 10), as ``scripts/_common.sh`` reads it."""
    if settings.load_epoch is not None:
        return settings.load_epoch
    opts = list(settings.opts)
    for key, value in zip(opts[::2], opts[1::2]):
        if key == "OPTIM.MAX_EPOCH":
            try:
                return int(value)
            except ValueError:
                raise ValueError(f"override OPTIM.MAX_EPOCH: expected an integer; got {value!r}") from None
    path = os.path.join(settings.repo_root, "configs", "trainers", settings.trainer, f"{cfg}.yaml")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Config file {path} not found (trainer {settings.trainer!r}, cfg {cfg!r})")
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    return int((data.get("OPTIM") or {}).get("MAX_EPOCH", 10))


def _train_py_args(s: Settings, cfg: str, output_dir: str, dataset: str, seed: int, extra: Sequence[str]) -> Tuple[str, ...]:
    """``run_once`` in ``scripts/_common.sh``."""
    return ("--output-dir", output_dir, "--root", s.data, "--seed", str(seed), "--trainer", s.trainer,
            "--dataset-config-file", f"configs/datasets/{dataset}.yaml",
            "--config-file", f"configs/trainers/{s.trainer}/{cfg}.yaml", *extra)


def base2new_train(s: Settings, cfg: str, dataset: str, seed: int) -> Run:
    out = f"{s.output}/base2new/train_base/{dataset}/shots_{s.shots}/{s.trainer}/{cfg}/seed{seed}"
    extra = ("DATASET.NUM_SHOTS", str(s.shots), "DATASET.SUBSAMPLE_CLASSES", "base", *s.opts)
    return Run(out, _train_py_args(s, cfg, out, dataset, seed, extra), TRAIN_END_SIGNAL)


def base2new_test(s: Settings, cfg: str, dataset: str, seed: int) -> Run:
    common = f"{dataset}/shots_{s.shots}/{s.trainer}/{cfg}/seed{seed}"
    model_dir = f"{s.output}/base2new/train_base/{common}"
    out = f"{s.output}/base2new/test_{s.sub}/{common}"
    extra = ("--model-dir", model_dir, "--load-epoch", str(config_max_epoch(s, cfg)), "--eval-only",
             "DATASET.NUM_SHOTS", str(s.shots), "DATASET.SUBSAMPLE_CLASSES", s.sub, *s.opts)
    return Run(out, _train_py_args(s, cfg, out, dataset, seed, extra), TEST_END_SIGNAL, (model_dir,), "test")


def xd_train(s: Settings, cfg: str, seed: int) -> Run:
    out = f"{s.output}/{s.source}/{s.trainer}/{cfg}_{s.shots}shots/seed{seed}"
    extra = ("DATASET.NUM_SHOTS", str(s.shots), *s.opts)
    return Run(out, _train_py_args(s, cfg, out, s.source, seed, extra), TRAIN_END_SIGNAL)


def xd_test(s: Settings, cfg: str, dataset: str, seed: int) -> Run:
    model_dir = f"{s.output}/{s.source}/{s.trainer}/{cfg}_{s.shots}shots/seed{seed}"
    out = f"{s.output}/evaluation/{s.trainer}/{cfg}_{s.shots}shots/{dataset}/seed{seed}"
    extra = ("--model-dir", model_dir, "--load-epoch", str(config_max_epoch(s, cfg)), "--eval-only", *s.opts)
    return Run(out, _train_py_args(s, cfg, out, dataset, seed, extra), TEST_END_SIGNAL, (model_dir,), "test")


def few_shot(s: Settings, cfg: str, dataset: str, shots: int, seed: int) -> Run:
    out = f"{s.output}/few_shot/{dataset}/{s.trainer}/{cfg}_{shots}shots/seed{seed}"
    extra = ("DATASET.NUM_SHOTS", str(shots), *s.opts)
    return Run(out, _train_py_args(s, cfg, out, dataset, seed, extra), TRAIN_END_SIGNAL)


def protocol_runs(protocol: str, s: Settings) -> List[Run]:
    """The runs of ``scripts/reproduce_<protocol>.sh``, in the order the script makes them."""
    cfg = s.cfg_for(protocol)
    if protocol == "base2new":
        return [run for ds in s.datasets for seed in s.seeds
                for run in (base2new_train(s, cfg, ds, seed), base2new_test(s, cfg, ds, seed))]
    if protocol == "xd":
        return [run for seed in s.seeds
                for run in (xd_train(s, cfg, seed), *(xd_test(s, cfg, ds, seed) for ds in s.targets))]
    if protocol == "few_shot":
        return [few_shot(s, cfg, ds, k, seed) for ds in s.datasets for k in s.shot_list for seed in s.seeds]
    raise ValueError(f"Unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")


def variant_settings(s: Settings, ablation: Ablation) -> Settings:
    output = f"{s.output}/ablations/{ablation.name}" if ablation.opts else s.output
    return replace(s, cfg=ablation.cfg or s.cfg, output=output, opts=tuple(s.opts) + tuple(ablation.opts))


def expand(protocol: str, settings: Settings, ablations: Sequence[Ablation] = ()) -> List[Variant]:
    """The main protocol and each ablation, with their runs; two runs into one folder are an error."""
    variants = [Variant("main", protocol, settings, tuple(protocol_runs(protocol, settings)))]
    for ablation in ablations:
        vs = variant_settings(settings, ablation)
        variants.append(Variant(ablation.name, protocol, vs, tuple(protocol_runs(protocol, vs))))
    seen: Dict[str, str] = {}
    for v in variants:
        for run in v.runs:
            if run.output_dir in seen:
                raise ValueError(f"Two runs of the sweep write into {run.output_dir} ({seen[run.output_dir]} and "
                                 f"{v.name}); give the ablation overrides or another config")
            seen[run.output_dir] = v.name
    return variants


def all_runs(variants: Sequence[Variant]) -> List[Run]:
    return [run for v in variants for run in v.runs]
