"""Protocols as lists of runs: the output folders and ``train.py`` command lines of ``scripts/``.

Each protocol's defaults, folders and overrides come from ``scripts/protocols.sh`` (through
``mutual_prompt.tools.protocols``), which the scripts source too. The runs are made in the order of
the ``reproduce_*.sh`` loops; ``tests/test_sweep_plan.py`` runs the scripts with a recording
interpreter and checks that both produce the same command lines.
"""
import os
import shlex
import sys
from dataclasses import dataclass, field, fields, replace
from typing import Dict, List, Optional, Sequence, Tuple

from mutual_prompt.tools import protocols
from mutual_prompt.tools.results import TEST_END_SIGNAL, TRAIN_END_SIGNAL

PROTOCOLS = tuple(protocols.PREFIXES)
# Datasets that render themselves into the data folder on first use (the toy world's).


@dataclass(frozen=True)
class Run:
    """One ``train.py`` invocation: where it writes, how it is called, and what must finish first."""

    output_dir: str  # as passed to --output-dir (relative to the repository root unless absolute)
    args: Tuple[str, ...]  # train.py's arguments
    end_signal: str  # the log line after which the result is read (as the scripts' skip check)
    depends_on: Tuple[str, ...] = ()  # output_dir of runs that must be finished first
    # "train", "test", or few_shot's reference runs, shared by its variants: "zero_shot", "linear_probe"
    kind: str = "train"

    def command(self, python: str = sys.executable) -> List[str]:
        return [python, "train.py", *self.args]

    def shell(self, python: str = "python") -> str:
        return shlex.join(self.command(python))


@dataclass(frozen=True)
class Settings:
    """What the scripts read from the environment (DATA, OUTPUT, TRAINER, CFG, SHOTS, ...). A field
    left empty ("", None, ()) takes the protocol's default from ``scripts/protocols.sh``."""

    repo_root: str
    data: str
    output: str = "output"
    trainer: str = "MutualPrompt"
    cfg: str = ""
    shots: Optional[int] = None
    seeds: Tuple[int, ...] = ()
    datasets: Tuple[str, ...] = ()
    targets: Tuple[str, ...] = ()
    source: str = ""
    shot_list: Tuple[int, ...] = ()
    sub: str = ""
    load_epoch: Optional[int] = None  # LOADEP; default: the MAX_EPOCH the training uses
    opts: Tuple[str, ...] = ()  # trailing KEY VALUE overrides


def with_defaults(protocol: str, settings: Settings) -> Settings:
    """``settings`` with each empty field that ``protocol`` has a default for set to that default."""
    defaults = protocols.protocol(protocol).defaults
    empty = {f.name: defaults[f.name] for f in fields(Settings)
             if f.name in defaults and getattr(settings, f.name) in ("", None, ())}
    return replace(settings, **empty)


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


def load_epoch(s: Settings) -> int:
    """The epoch whose checkpoint a test loads: LOADEP, else the training's last epoch."""
    if s.load_epoch is not None:
        return s.load_epoch
    return protocols.max_epoch(os.path.join(s.repo_root, "configs", "trainers", s.trainer, f"{s.cfg}.yaml"), s.opts)


def filled(template: protocols.Template, s: Settings, **values: object) -> str:
    """``template`` filled in as ``fill`` in ``scripts/_common.sh`` does: OUTPUT, TRAINER, CFG and SHOTS
    from ``s``, then the run's own ``values`` (DATASET, SOURCE, SUB; SHOTS of a few-shot run)."""
    return template.fill(**{"OUTPUT": s.output, "TRAINER": s.trainer, "CFG": s.cfg, "SHOTS": s.shots, **values})


def _train_py_args(s: Settings, output_dir: str, dataset: str, seed: int, extra: Sequence[str]) -> Tuple[str, ...]:
    """``run_once`` in ``scripts/_common.sh``."""
    return ("--output-dir", output_dir, "--root", s.data, "--seed", str(seed), "--trainer", s.trainer,
            "--dataset-config-file", f"configs/datasets/{dataset}.yaml",
            "--config-file", f"configs/trainers/{s.trainer}/{s.cfg}.yaml", *extra)


def train_run(s: Settings, p: protocols.Protocol, dataset: str, seed: int, **values: object) -> Run:
    """``run_train`` in ``scripts/_common.sh``: the protocol's training on ``dataset``."""
    out = f"{filled(p.train_dir, s, **values)}/seed{seed}"
    extra = (*filled(p.train_opts, s, **values).split(), *s.opts)
    return Run(out, _train_py_args(s, out, dataset, seed, extra), TRAIN_END_SIGNAL)


def eval_run(s: Settings, p: protocols.Protocol, dataset: str, seed: int, model: Run, **values: object) -> Run:
    """``run_test`` in ``scripts/_common.sh``: the protocol's test on ``dataset`` of ``model``'s checkpoint."""
    assert p.test_dir is not None and p.test_opts is not None, f"{p.name} has no test runs"
    out = f"{filled(p.test_dir, s, **values)}/seed{seed}"
    extra = ("--model-dir", model.output_dir, "--load-epoch", str(load_epoch(s)), "--eval-only",
             *filled(p.test_opts, s, **values).split(), *s.opts)
    return Run(out, _train_py_args(s, out, dataset, seed, extra), TEST_END_SIGNAL, (model.output_dir,), "test")


def zero_shot_run(s: Settings, p: protocols.Protocol, dataset: str) -> Run:
    """``run_zero_shot`` in ``scripts/_common.sh``: zero-shot CLIP on ``dataset`` with the ZeroshotMP
    config of the training config's backbone; ValueError says why there is none."""
    assert p.zeroshot_dir is not None, f"{p.name} has no zero-shot runs"
    config = os.path.join(s.repo_root, "configs", "trainers", s.trainer, f"{s.cfg}.yaml")
    cfg, opts = protocols.zero_shot(config, s.opts)
    zs = replace(s, trainer=protocols.ZERO_SHOT_TRAINER, cfg=cfg)
    seed = protocols.ZERO_SHOT_SEED
    out = f"{filled(p.zeroshot_dir, zs, DATASET=dataset)}/seed{seed}"
    return Run(out, _train_py_args(zs, out, dataset, seed, ("--eval-only", "--no-load", *opts)), TEST_END_SIGNAL,
               kind="zero_shot")


def linear_probe_runs(s: Settings, p: protocols.Protocol, dataset: str, shots: int) -> List[Run]:
    """``run_linear_probe`` in ``scripts/_common.sh``: linear-probe CLIP on ``dataset`` with ``shots``
    shots, each seed, with the LinearProbeMP config of the training config's backbone; ValueError says
    why there is none."""
    assert p.linear_probe_dir is not None, f"{p.name} has no linear-probe runs"
    config = os.path.join(s.repo_root, "configs", "trainers", s.trainer, f"{s.cfg}.yaml")
    cfg, opts = protocols.linear_probe(config, s.opts)
    lp = replace(s, trainer=protocols.LINEAR_PROBE_TRAINER, cfg=cfg, opts=opts)
    lp_protocol = replace(p, train_dir=p.linear_probe_dir)
    return [replace(train_run(lp, lp_protocol, dataset, seed, DATASET=dataset, SHOTS=shots), kind="linear_probe")
            for seed in s.seeds]


def protocol_runs(protocol: str, settings: Settings) -> List[Run]:
    """The runs of ``scripts/reproduce_<protocol>.sh``, in the order the script makes them."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"Unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    s = with_defaults(protocol, settings)
    p = protocols.protocol(protocol)
    runs: List[Run] = []
    if protocol == "base2new":
        for ds in s.datasets:
            for seed in s.seeds:
                train = train_run(s, p, ds, seed, DATASET=ds)
                runs += [train, eval_run(s, p, ds, seed, train, DATASET=ds, SUB=s.sub)]
    elif protocol == "xd":
        for seed in s.seeds:
            train = train_run(s, p, s.source, seed, SOURCE=s.source)
            runs += [train, *(eval_run(s, p, ds, seed, train, SOURCE=s.source, DATASET=ds) for ds in s.targets)]
    else:
        for ds in s.datasets:
            try:
                runs.append(zero_shot_run(s, p, ds))
            except ValueError:  # no ZeroshotMP config of this backbone: the few-shot table says so
                pass
            for k in s.shot_list:
                runs += [train_run(s, p, ds, seed, DATASET=ds, SHOTS=k) for seed in s.seeds]
                if s.trainer != protocols.LINEAR_PROBE_TRAINER:  # else these are the runs above
                    try:
                        runs += linear_probe_runs(s, p, ds, k)
                    except ValueError:  # no LinearProbeMP config of this backbone: the few-shot table says so
                        pass
    return runs


def variant_settings(s: Settings, ablation: Ablation) -> Settings:
    output = f"{s.output}/ablations/{ablation.name}" if ablation.opts else s.output
    return replace(s, cfg=ablation.cfg or s.cfg, output=output, opts=tuple(s.opts) + tuple(ablation.opts))


def expand(protocol: str, settings: Settings, ablations: Sequence[Ablation] = ()) -> List[Variant]:
    """The main protocol and each ablation, with their runs (and their settings, the protocol's
    defaults filled in). A reference run (zero-shot, linear probe) that an earlier variant already makes
    (an ablation with another config of the same backbone) is made once; any other two runs into one
    folder are an error."""
    settings = with_defaults(protocol, settings)
    variants = [Variant("main", protocol, settings, tuple(protocol_runs(protocol, settings)))]
    for ablation in ablations:
        vs = variant_settings(settings, ablation)
        variants.append(Variant(ablation.name, protocol, vs, tuple(protocol_runs(protocol, vs))))
    seen: Dict[str, Tuple[str, Run]] = {}
    kept = []
    for v in variants:
        runs = []
        for run in v.runs:
            if run.output_dir in seen:
                if run.kind in ("zero_shot", "linear_probe") and seen[run.output_dir][1] == run:
                    continue
                raise ValueError(f"Two runs of the sweep write into {run.output_dir} ({seen[run.output_dir][0]} and "
                                 f"{v.name}); give the ablation overrides or another config")
            seen[run.output_dir] = (v.name, run)
            runs.append(run)
        kept.append(replace(v, runs=tuple(runs)))
    return kept


def all_runs(variants: Sequence[Variant]) -> List[Run]:
    return [run for v in variants for run in v.runs]
