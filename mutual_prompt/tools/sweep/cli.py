"""Command line of ``python -m mutual_prompt.sweep``: run a whole protocol (plan, execute, report).

The help texts (``DESCRIPTION`` and each option's) are plain text with true defaults: the protocols'
come from ``scripts/protocols.sh``, the dataset names from ``configs/datasets/``. Every option is
checked before anything runs (``options``); a bad one ends the sweep with one line and status 2.
"""
import argparse
import os
import signal
import sys
import textwrap
import time
from dataclasses import replace
from typing import Any, Dict, List, NoReturn, Optional, Sequence, Tuple

import yaml

from mutual_prompt.names import unknown_name

from .. import PACKAGE_CHECKOUT, protocols
from ..protocols import ProtocolFileError
from ..results import BENCHMARK_DATASETS
from . import remembered, slurm
from .options import (
    OPTION_DESTS,
    UsageError,
    check_ablations,
    check_configs,
    check_overrides,
    check_data,
    check_datasets,
    check_values,
    dataset_names,
    resolve,
)
from .plan import PROTOCOLS, Ablation, Settings, Variant, all_runs, expand, with_defaults
from .plots import require_matplotlib
from .report import STATE_WIDTH, progress_bar, status_lines, summary_lines
from .slurm import SLURM_OPTIONS, SlurmOptions
from .state import BLOCKED, FAILED, sweep_status

PROG = "python -m mutual_prompt.sweep"
EXECUTORS = ("local", "slurm", "submitit-local")


DESCRIPTION = """Run a whole protocol (base-to-new, cross-dataset, few-shot) as exactly the runs of
scripts/reproduce_<protocol>.sh, into the same folders, on every local GPU, N CPU processes or SLURM.

  python -m mutual_prompt.sweep run base2new --gpus 0,1,2,3         every local GPU, one run each
  python -m mutual_prompt.sweep run base2new --jobs 2 --dry-run     the plan: runs, commands, done
  python -m mutual_prompt.sweep run few_shot --executor slurm --partition gpu --time 720
  python -m mutual_prompt.sweep status base2new --output OUT        the last run into OUT, any shell
  python -m mutual_prompt.sweep run base2new ... OPTIM.MAX_EPOCH 5  trailing KEY VALUE overrides

An option not given takes its value from the --config file, else from the scripts' environment
variable (DATA, OUTPUT, TRAINER, CFG, SHOTS, SEEDS, DATASETS, TARGETS, SOURCE, SHOT_LIST, SUB,
LOADEP), else the protocol's default in scripts/protocols.sh. status first uses the options of the
last run into the output folder (flags and --config given to status override them).
Details: docs/SWEEP.md. "run --help" and "status --help" list the options."""


def default_repo_root() -> str:
    """The checkout holding train.py: the current folder if it has one, else the package's parent."""
    if os.path.isfile("train.py"):
        return os.getcwd()
    return PACKAGE_CHECKOUT


def _shown(value: Any) -> str:
    if value == BENCHMARK_DATASETS:
        return f"the {len(value)} benchmark datasets"
    return " ".join(str(v) for v in value) if isinstance(value, tuple) else str(value)


def protocol_default(field_name: str) -> str:
    """"default: X" from scripts/protocols.sh, or "default: base2new X; xd Y" where the protocols differ."""
    try:
        values = {name: protocols.protocol(name).defaults.get(field_name) for name in PROTOCOLS}
    except (ProtocolFileError, OSError):
        return "default: see scripts/protocols.sh"
    values = {name: value for name, value in values.items() if value not in (None, "", ())}
    if len(set(values.values())) == 1:  # the protocols that use the option agree
        return f"default: {_shown(next(iter(values.values())))}"
    return "default: " + "; ".join(f"{name} {_shown(value)}" for name, value in values.items())


def names_epilog(repo_root: str) -> str:
    """The valid protocols and dataset names, for the end of a command's help."""
    datasets = ", ".join(dataset_names(repo_root)) or "(none: no configs/datasets/ folder)"
    return "\n".join([f"protocols: {', '.join(PROTOCOLS)}",
                      *textwrap.wrap(f"datasets (configs/datasets/ of {repo_root}): {datasets}", width=100,
                                     subsequent_indent="  ")])


def build_parser() -> Tuple[argparse.ArgumentParser, Dict[str, argparse.ArgumentParser]]:
    """The parser and its two sub-parsers (run, status), which share the options of what to run."""
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{run,status}")
    epilog = names_epilog(default_repo_root())
    slurm_defaults = SlurmOptions()
    commands = {}
    for name, help_text in (("run", "execute the unfinished runs of a protocol"),
                            ("status", "show each run's state and the results so far (by default, of the "
                                       "last run into the output folder)")):
        p = commands[name] = sub.add_parser(name, help=help_text, description=help_text, epilog=epilog,
                                            formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("protocol", metavar="PROTOCOL", help=f"one of {', '.join(PROTOCOLS)}")
        p.add_argument("opts", nargs="*", metavar="KEY VALUE",
                       help="config overrides passed to every run, e.g. OPTIM.MAX_EPOCH 5 (default: none)")
        p.add_argument("--config", help="YAML file with any of these options (flags override it)")
        order = "the last run into the output folder, else " if name == "status" else ""
        g = p.add_argument_group("what to run", textwrap.fill(
            f"Each from its flag, else --config, else {order}the scripts' environment variable named first, else "
            "its default.", width=100))
        g.add_argument("--repo", default=None, help="checkout holding train.py (default: the current folder if it "
                                                    "holds train.py, else the checkout of this package)")
        g.add_argument("--data", help="DATA: the datasets' root folder (default: <repo>/data)")
        g.add_argument("--output", help="OUTPUT: where the runs write, relative to --repo unless absolute "
                                        "(default: output)")
        g.add_argument("--trainer", help="TRAINER (default: MutualPrompt)")
        g.add_argument("--cfg", help=f"CFG: a config in configs/trainers/<trainer>/ ({protocol_default('cfg')})")
        g.add_argument("--shots", type=int, help=f"SHOTS, base2new and xd ({protocol_default('shots')})")
        g.add_argument("--seeds", type=int, nargs="+", help=f"SEEDS ({protocol_default('seeds')})")
        g.add_argument("--datasets", nargs="+",
                       help=f"DATASETS, base2new and few_shot ({protocol_default('datasets')})")
        g.add_argument("--targets", nargs="+", help=f"TARGETS, xd: datasets to test on ({protocol_default('targets')})")
        g.add_argument("--source", help=f"SOURCE, xd: dataset to train on ({protocol_default('source')})")
        g.add_argument("--shot-list", type=int, nargs="+",
                       help=f"SHOT_LIST, few_shot: the numbers of shots ({protocol_default('shot_list')})")
        g.add_argument("--sub", choices=["new", "base"],
                       help=f"SUB, base2new: classes the test runs use ({protocol_default('sub')})")
        g.add_argument("--load-epoch", type=int,
                       help="LOADEP: checkpoint the tests load (default: the training's last epoch)")
        g.add_argument("--ablation", nargs=2, action="append", default=[], metavar=("NAME", "'KEY VALUE ...'"),
                       help="also run the protocol with these overrides, under <output>/ablations/NAME (default: none)")
        g.add_argument("--ablation-cfg", nargs=2, action="append", default=[], metavar=("NAME", "CFG"),
                       help="also run the protocol with another config file, beside the main runs (default: none)")
        g.add_argument("--plot", metavar="DIR", help="write the figures (PNG) into DIR at the end; needs matplotlib: "
                                                     'pip install -e ".[plot]" (default: no figures)')
        if name == "status":
            p.add_argument("--tables", action="store_true",
                           help="print the results only, not each run's state (what reproduce_<protocol>.sh ends "
                                "with; default: off)")
        if name == "run":
            e = p.add_argument_group("how to run")
            e.add_argument("--dry-run", action="store_true", help="print the plan and stop")
            e.add_argument("--executor", choices=EXECUTORS, default="local",
                           help="local processes, SLURM via submitit, or submitit's local executor (no cluster); "
                                'the last two need submitit: pip install -e ".[slurm]" (default: local)')
            e.add_argument("--gpus", help="local: comma-separated GPU ids, one run on each at a time "
                                          "(default: one run at a time on the default device)")
            e.add_argument("--jobs", type=int, help="local: N CPU processes at a time, no GPU (default: one run at "
                                                    "a time on the default device)")
            e.add_argument("--detach", action="store_true", help="slurm: return after submitting")
            s = p.add_argument_group("SLURM (also the 'slurm:' section of --config)")
            s.add_argument("--partition", help="(default: the cluster's default partition)")
            s.add_argument("--gpus-per-node", type=int, help=f"(default: {slurm_defaults.gpus_per_node})")
            s.add_argument("--cpus-per-task", type=int, help=f"(default: {slurm_defaults.cpus_per_task})")
            s.add_argument("--mem-gb", type=float, help=f"(default: {slurm_defaults.mem_gb:g})")
            s.add_argument("--time", dest="timeout_min", type=int,
                           help=f"time limit of each job, minutes (default: {slurm_defaults.timeout_min})")
            s.add_argument("--array-parallelism", type=int,
                           help=f"array tasks running at once (default: {slurm_defaults.array_parallelism})")
            s.add_argument("--max-timeouts", type=int, help="requeues after a time-out; preemptions: unlimited "
                                                            f"(default: {slurm_defaults.max_timeouts})")
            s.add_argument("--sbatch", action="append", default=[], metavar="KEY=VALUE",
                           help="any other #SBATCH option, e.g. --sbatch account=proj --sbatch qos=high "
                                "(default: none)")
    return parser, commands


def usage_exit(command: str, message: str) -> NoReturn:
    """A bad command line ends with one line, ``<prog> <command>: error: <message>``, and status 2."""
    sys.stderr.write(f"{PROG} {command}: error: {message}\n")
    sys.exit(2)


def load_config_file(path: str, command: argparse.ArgumentParser) -> Dict[str, Any]:
    """A YAML mapping of option names (``shot_list`` or ``shot-list``) plus ``slurm`` and ``ablations``."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as e:
        raise UsageError(f"cannot read --config {path}: {e}".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping of option names to values")
    actions = {a.dest: a for a in command._actions if a.dest not in ("help", "config", "command", "protocol")}
    out = {}
    for key, value in data.items():
        dest = str(key).replace("-", "_")
        if dest not in set(actions) | {"slurm", "ablations"}:
            raise UsageError(f"{path}: unknown option {key!r}; expected one of {', '.join(sorted(actions))}, "
                             "slurm, ablations")
        choices = actions[dest].choices if dest in actions else None
        if choices and dest not in OPTION_DESTS and value not in choices:
            raise UsageError(f"{path}: {dest}: expected one of {', '.join(choices)}; got {value!r}")
        out[dest] = value
    return out


def load_remembered(args: argparse.Namespace, file: Dict[str, Any]) -> Optional[remembered.Remembered]:
    """The last run into the output folder that ``status`` is given (flag, --config, OUTPUT or the default)."""
    probe = argparse.Namespace(**vars(args))
    resolve(probe, file, args.config, dests=("output",))
    repo = os.path.abspath(args.repo or default_repo_root())
    return remembered.load(remembered.remembered_path(repo, probe.output or "output", args.protocol))


def use_remembered(args: argparse.Namespace, memory: Optional[remembered.Remembered]) -> str:
    """Take from ``memory`` what status was not given: the checkout, the overrides and the ablations
    (the options are taken by ``resolve``); returns the line that says what was used and from when."""
    args.remembered_ablations = ()
    if memory is None:
        return ""
    used = {dest: memory.options[dest] for dest, source in args.sources.items() if source == memory.source(dest)}
    repo = ""
    if args.repo is None and memory.repo and memory.repo != os.path.abspath(default_repo_root()):
        args.repo = repo = memory.repo
    opts: Sequence[str] = ()
    if not args.opts and memory.opts:
        args.opts = list(memory.opts)
        opts = memory.opts
    given_ablations = args.ablation or args.ablation_cfg or args.file.get("ablations")
    args.remembered_ablations = () if given_ablations else memory.ablations
    if not (used or repo or opts or args.remembered_ablations):
        return ""
    return (f"Using the options of the last run into this output folder ({memory.time}; options given here override "
            f"them): {remembered.command_line(used, opts, args.remembered_ablations, repo)}")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The command line, the --config file and the environment (for status also the last run's
    options), checked; errors exit with status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, commands = build_parser()
    if not argv or argv[0] not in commands:
        if argv and not argv[0].startswith("-"):
            sys.stderr.write(f"{PROG}: error: {unknown_name('command', argv[0], commands)}\n")
            sys.exit(2)
        parser.parse_args(argv)  # help, or the error naming the commands
    command = commands[argv[0]]
    args = command.parse_intermixed_args(argv[1:])
    try:
        if args.protocol not in PROTOCOLS:
            raise UsageError(unknown_name("protocol", args.protocol, PROTOCOLS))
        file = load_config_file(args.config, command) if args.config else {}
        if file:
            command.set_defaults(**{k: v for k, v in file.items() if k not in OPTION_DESTS | {"slurm", "ablations"}})
            args = command.parse_intermixed_args(argv[1:])  # flags override the file
        args.command, args.file = argv[0], file
        memory = load_remembered(args, file) if args.command == "status" else None
        args.sources = resolve(args, file, args.config, memory)
        args.remembered_line = use_remembered(args, memory)
        check_values(args, args.sources)
        if len(args.opts) % 2:
            raise UsageError(f"config overrides come in KEY VALUE pairs; got {args.opts}")
    except UsageError as e:
        usage_exit(argv[0], str(e))
    return args


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The settings the options give; an option left out keeps the scripts' default (the protocol's
    from ``scripts/protocols.sh``)."""
    repo = os.path.abspath(args.repo or default_repo_root())
    given: Dict[str, Any] = {"data": os.path.join(repo, "data")}
    for dest in ("data", "output", "trainer", "cfg", "shots", "seeds", "datasets", "targets", "source", "shot_list",
                 "sub", "load_epoch"):
        value = getattr(args, dest)
        if value is not None:
            given[dest] = tuple(value) if isinstance(value, list) else value
    settings = Settings(repo_root=repo, **given, opts=tuple(str(o) for o in args.opts))
    return with_defaults(args.protocol, replace(settings, output=settings.output.rstrip("/")))


def ablations_from_args(args: argparse.Namespace) -> List[Ablation]:
    ablations = [Ablation(name, opts=tuple(spec.split())) for name, spec in args.ablation]
    ablations += [Ablation(name, cfg=cfg) for name, cfg in args.ablation_cfg]
    for name, spec in (args.file.get("ablations") or {}).items():
        if not isinstance(spec, dict) or set(spec) - {"cfg", "opts"}:
            raise UsageError(f"{args.config}: ablation {name!r} takes 'cfg' and/or 'opts' (a list of KEY, VALUE)")
        ablations.append(Ablation(str(name), cfg=spec.get("cfg", ""), opts=tuple(str(o) for o in spec.get("opts", []))))
    return ablations or list(args.remembered_ablations)


def slurm_options(args: argparse.Namespace) -> SlurmOptions:
    fields: Dict[str, Any] = {}
    section = args.file.get("slurm") or {}
    for key, value in section.items():
        if key not in SLURM_OPTIONS:
            raise UsageError(f"{args.config}: unknown slurm option {key!r}; expected one of {', '.join(SLURM_OPTIONS)}")
        fields[key] = value
    for key in (k for k in SLURM_OPTIONS if k != "sbatch"):  # --sbatch items are merged below
        value = getattr(args, key, None)
        if value is not None:
            fields[key] = value
    sbatch = dict(fields.get("sbatch") or {})
    for item in args.sbatch:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--sbatch takes KEY=VALUE (e.g. account=myproject); got {item!r}")
        sbatch[key.strip()] = value.strip()
    fields["sbatch"] = sbatch
    return SlurmOptions(**fields)


def print_plan(settings: Settings, variants: Sequence[Variant]) -> None:
    statuses = sweep_status(settings.repo_root, settings.output, all_runs(variants))
    print(f"Plan: {len(statuses)} runs ({', '.join(v.name for v in variants)}), from {settings.repo_root}")
    for s in statuses:
        deps = f"  after {', '.join(s.run.depends_on)}" if s.run.depends_on else ""
        print(f"{s.state:<{STATE_WIDTH}} {s.run.output_dir}{deps}")
        print(f"{'':<{STATE_WIDTH}} {s.run.shell()}")
    print(progress_bar(statuses))


def report(settings: Settings, variants: Sequence[Variant], plot_dir: Optional[str], tables_only: bool = False) -> int:
    """Each run's state (unless ``tables_only``), then each variant's results; 1 when a run failed."""
    statuses = sweep_status(settings.repo_root, settings.output, all_runs(variants))
    if not tables_only:
        print("\n".join(status_lines(statuses)))
        print(progress_bar(statuses))
    for i, variant in enumerate(variants):
        if i or not tables_only:
            print()
        print("\n".join(summary_lines(settings.repo_root, variant)))
    if plot_dir:
        from .plots import write_figures

        for path in write_figures(settings.repo_root, variants, plot_dir):
            print(f"figure: {path}")
    return 1 if any(s.state in (FAILED, BLOCKED) for s in statuses) else 0


def remember(args: argparse.Namespace, settings: Settings) -> None:
    """Record what this run was given, for ``status`` without options (``remembered``)."""
    given = {dest: getattr(args, dest) for dest in args.sources}
    remembered.remember(remembered.remembered_path(settings.repo_root, settings.output, args.protocol),
                        settings.repo_root, given, settings.opts, ablations_from_args(args))


def execute(args: argparse.Namespace, settings: Settings, variants: Sequence[Variant],
            options: Optional[SlurmOptions]) -> None:
    runs = all_runs(variants)
    env = dict(os.environ)
    if args.executor == "local":
        from .live import run_local

        run_local(settings, runs, args.gpus.split(",") if args.gpus else None, args.jobs, env)
        return
    from .live import run_submitit

    assert options is not None
    cluster = {"slurm": "slurm", "submitit-local": "local"}[args.executor]
    run_submitit(settings, runs, options, cluster, env, detach=args.detach)


def plan(args: argparse.Namespace) -> Tuple[Settings, List[Variant], Optional[SlurmOptions]]:
    """The settings, the variants with their runs and the SLURM options, every option checked first
    (raises UsageError)."""
    try:
        settings = settings_from_args(args)
    except ProtocolFileError as e:
        raise UsageError(str(e)) from None
    ablations = ablations_from_args(args)
    check_overrides("the overrides (KEY VALUE)", settings.opts)
    check_ablations(ablations)
    check_datasets(args.protocol, settings, args.sources)
    check_configs(args.protocol, settings, ablations, args.sources)
    running = args.command == "run" and not args.dry_run
    if args.plot and (running or args.command == "status"):  # not after hours of runs
        require_matplotlib()
    options = None
    if args.command == "run" and args.executor != "local":
        options = slurm_options(args)
        if running and slurm.submitit is None:
            raise UsageError(f"--executor {args.executor}: {slurm.SUBMITIT_MISSING}")
    if args.command == "run":  # a cluster's nodes may see folders this machine does not: SLURM only warns
        data_table = check_data(args.protocol, settings, args.sources, stop=running and args.executor != "slurm")
        if data_table:
            print(data_table)
    try:
        variants = expand(args.protocol, settings, ablations)
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(str(e)) from None
    return settings, variants, options


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        settings, variants, options = plan(args)
    except UsageError as e:
        usage_exit(args.command, str(e))
    if args.command == "run":
        if args.dry_run:
            print_plan(settings, variants)
            return 0
        remember(args, settings)
        started = time.time()
        # A terminated sweep stops the runs it started (their checkpoints stay; a re-run resumes them).
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
        execute(args, settings, variants, options)
        print(f"\nSweep finished in {time.time() - started:.1f} s")
    elif args.remembered_line:
        print(args.remembered_line)
    return report(settings, variants, args.plot, tables_only=getattr(args, "tables", False))
