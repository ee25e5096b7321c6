"""The figures at the end of a sweep (``--plot DIR``): results beside published numbers (the toy world
on its own panels), few-shot curves with the zero-shot line and the linear-probe curve, and the
training curves of every training run."""
import os
from typing import List, Sequence

from mutual_prompt.tools import figures
from mutual_prompt.tools.results import base2new_rows

from .options import UsageError
from .plan import Run, Variant
from .report import few_shot_results, linear_probe_results, zero_shot_results


PLOT_MISSING = 'figures need matplotlib: pip install -e ".[plot]" (or pip install matplotlib)'


def require_matplotlib() -> None:
    """Refuse --plot at once, not after the sweep, where matplotlib does not import."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError(f"--plot: {PLOT_MISSING}") from None


def variant_label(variant: Variant) -> str:
    s = variant.settings
    return s.trainer + (f" {s.cfg}" if variant.name == "main" else f" {variant.name}")


def run_label(run: Run) -> str:
    """"<dataset> <shots> shots seed<N>" from the run's command line."""
    args = list(run.args)
    dataset = os.path.splitext(os.path.basename(args[args.index("--dataset-config-file") + 1]))[0]
    shots = args[args.index("DATASET.NUM_SHOTS") + 1] if "DATASET.NUM_SHOTS" in args else "?"
    return f"{dataset} {shots} shots seed{args[args.index('--seed') + 1]}"


def write_figures(repo_root: str, variants: Sequence[Variant], plot_dir: str) -> List[str]:
    os.makedirs(plot_dir, exist_ok=True)
    protocol = variants[0].protocol
    paths = []
    if protocol == "base2new":
        measured = {}
        for v in variants:
            s = v.settings
            measured[variant_label(v)] = base2new_rows(os.path.join(repo_root, s.output, "base2new"), s.trainer,
                                                       s.cfg, s.shots, list(s.datasets), list(s.seeds))
        fig = figures.base2new_figure(measured, figures.load_published())
        paths.append(figures.save(fig, os.path.join(plot_dir, "base2new.png")))
    if protocol == "few_shot":
        series = {variant_label(v): few_shot_results(repo_root, v.settings) for v in variants}
        zero_shot, _ = zero_shot_results(repo_root, variants[0].settings)
        linear_probe, _ = linear_probe_results(repo_root, variants[0].settings)
        paths.append(figures.save(figures.few_shot_figure(series, zero_shot, linear_probe),
                                  os.path.join(plot_dir, "few_shot.png")))
    trained = {f"{variant_label(v) + ' ' if len(variants) > 1 else ''}{run_label(r)}": os.path.join(repo_root, r.output_dir)
               for v in variants for r in v.runs if r.kind == "train"}
    paths.append(figures.save(figures.training_figure(trained), os.path.join(plot_dir, "training.png")))
    return paths
