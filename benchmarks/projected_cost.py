"""Projected GPU time and memory of each protocol at ViT-B/16 scale (nothing here runs on a GPU).

For every protocol of ``scripts/protocols.sh`` (read through ``mutual_prompt.tools.protocols``) and
each of its datasets (sizes from ``mutual_prompt.tools.dataset_catalog``), with the protocol's config
(batch, epochs, ``TRAINER.MUTUAL_PROMPT`` keys):

- FLOPs per image of one training step (forward, loss and backward to the prompts) at the config's
  batch and the run's class count, and of one evaluation pass, counted with
  ``torch.utils.flop_counter.FlopCounterMode`` on the MutualPrompt model with a ViT-B/16-shaped
  CLIP (random weights, ``PREC fp16`` layout). The model runs on fake tensors (shapes and dtypes
  only, ``FakeTensorMode``), so nothing is computed and the count is that of the real run's
  matrix products and convolutions (element-wise operations are not counted);
- time = FLOPs per image x images (shots x classes per epoch x epochs, then the test images) /
  (UTILISATION x a GPU's fp16 tensor-core peak), for each GPU of ``GPUS``;
- training memory = CLIP's weights and the class buffers + the trainable parameters with their
  gradients and SGD momentum + the activations autograd saves for the backward (measured with
  ``torch.autograd.graph.saved_tensors_hooks`` on that step, each storage counted once) + an
  allowance of ALLOWANCE_GIB for the CUDA context, library workspaces and the backward's transient
  buffers.

    python benchmarks/projected_cost.py             # the ViT-B/16 table (about 2 minutes on 2 CPU cores)
    python benchmarks/projected_cost.py --quick     # a tiny CLIP, to know it runs (tests)
"""
import argparse
import contextlib
import os
import sys
import warnings
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
import yaml
from torch import Tensor

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from benchmarks.roofline import step_flops_per_image  # noqa: E402
from benchmarks.throughput import QUICK_SHAPE, VIT_B16, random_clip  # noqa: E402

# fp16 tensor-core peak (dense, fp32 accumulation as PyTorch's fp16 matrix products use), FLOP/s,
# from NVIDIA's data sheets: A100 SXM and PCIe 312 TFLOP/s; GeForce RTX 4090 165.2 TFLOP/s (the 24 GB card).
GPUS: Dict[str, float] = {"A100": 312e12, "RTX 4090": 165.2e12}
# An assumption, not a measurement: the share of that peak these runs reach. Their products are
# small (batch 1 to 4 in training, text sequences of about 15 tokens) and a third of the image work
# is a frozen pass, so a quarter of the peak, well below large-batch transformer training's 40-50%.
UTILISATION = 0.25
ALLOWANCE_GIB = 1.0  # CUDA context (about 0.5 GiB), cuBLAS workspaces, the backward's transient buffers
NAME_TOKENS = 10  # tokens of the longest class name: the text encoder runs every prompt up to that length
GIB = 2 ** 30
COLUMNS = ("protocol", "dataset", "classes train / test", "train images x epochs", "batch", "GFLOP per train image",
           "GFLOP per test image", "test images", "train memory GiB")  # then one "<GPU> min" column per GPU


def saved_activation_bytes(step: Callable[[], object], exclude: Iterable[Tensor] = ()) -> int:
    """Bytes of the tensors autograd saves for the backward while ``step`` runs, each storage once,
    leaving out the storages of ``exclude`` (the parameters and buffers, counted elsewhere)."""
    excluded = {t.untyped_storage()._cdata for t in exclude}
    saved: Dict[int, Tuple[int, Tensor]] = {}  # keeps each tensor alive so that no address is reused

    def pack(t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        if storage._cdata not in excluded:
            saved[storage._cdata] = (storage.nbytes(), t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return sum(nbytes for nbytes, _ in saved.values())


def tensor_bytes(tensors: Iterable[Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


@dataclass(frozen=True)
class Phase:
    """What one run does: train at ``batch`` on ``train_classes`` (0: no training), then test."""

    train_classes: int
    train_images: int  # per epoch
    epochs: int
    batch: int
    tests: Tuple[Tuple[int, int], ...]  # (classes, images) of each test


@dataclass(frozen=True)
class Row:
    """One dataset of a protocol, for one seed: its runs' work folded into one phase."""

    protocol: str
    dataset: str
    phase: Phase
    seeds: int
    runs_per_seed: int  # sweep runs the phase stands for (base2new: a training and a test run)


class CostModel:
    """The MutualPrompt model of one config on fake tensors, measured at any class count and batch."""

    def __init__(self, config_file: str, shape: Dict, name_tokens: int = NAME_TOKENS) -> None:
        import trainers
        from mutual_prompt.backend import get_cfg_default
        from mutual_prompt.method import MutualPromptCLIP
        from trainers.mutual_prompt import model_arguments

        cfg = get_cfg_default()
        trainers.extend_cfg(cfg)
        cfg.merge_from_file(config_file)
        precision = cfg.TRAINER.MUTUAL_PROMPT.PREC
        self.model = MutualPromptCLIP(random_clip("cpu", shape, precision), ["x"], **model_arguments(cfg))
        self.size = shape["image_resolution"]
        self.name = " ".join(["thing"] * name_tokens)
        self.embed_dim = shape["embed_dim"]
        self.classes = 0

    def set_classes(self, classes: int) -> None:
        if classes != self.classes:
            self.model.text_encoder.set_classnames([self.name] * classes)
            if self.model.prompt_learner.tvp is not None:
                features = F.normalize(torch.randn(classes, self.embed_dim), dim=-1)
                self.model.prompt_learner.tvp.set_class_text_features(features)
            self.classes = classes

    def fixed_bytes(self) -> int:
        """CLIP's weights, the class buffers, and the trainable parameters with gradient and momentum."""
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        frozen = [p for p in self.model.parameters() if not p.requires_grad]
        buffers = [b for b in self.model.buffers() if b is not None]
        return tensor_bytes(frozen) + tensor_bytes(buffers) + 3 * tensor_bytes(trainable)

    def train_step(self, classes: int, batch: int) -> Tuple[float, int]:
        """(FLOPs per image, saved activation bytes) of one training step."""
        from torch._subclasses.fake_tensor import FakeTensorMode

        self.set_classes(classes)
        flops = step_flops_per_image(self.model, batch, self.size, classes, train=True)
        with FakeTensorMode(allow_non_fake_inputs=True) as mode:
            held = [mode.from_tensor(t) for t in (*self.model.parameters(), *self.model.buffers()) if t is not None]
            images = torch.randn(batch, 3, self.size, self.size)
            labels = torch.zeros(batch, dtype=torch.long)
            saved = saved_activation_bytes(lambda: F.cross_entropy(self.model(images).float(), labels), held)
        return flops, saved

    def eval_flops(self, classes: int) -> float:
        """FLOPs per image of an evaluation pass (the same for any batch)."""
        self.set_classes(classes)
        return step_flops_per_image(self.model, 1, self.size, classes, train=False)


def config_values(config_file: str) -> Tuple[int, int]:
    """(training batch, epochs) of a trainer config."""
    from mutual_prompt.tools import protocols

    with open(config_file, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    batch = ((data.get("DATALOADER") or {}).get("TRAIN_X") or {}).get("BATCH_SIZE")
    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"{config_file}: DATALOADER.TRAIN_X.BATCH_SIZE: expected a positive integer; got {batch!r}")
    return batch, protocols.max_epoch(config_file)


def config_path(name: str) -> str:
    """The file of the MutualPrompt config ``name``."""
    return os.path.join(REPO_ROOT, "configs", "trainers", "MutualPrompt", f"{name}.yaml")


def halves(classes: int) -> Tuple[int, int]:
    """The base and new class counts of a base-to-new split (base gets the odd class)."""
    base = -(-classes // 2)
    return base, classes - base


def plan_rows(datasets_limit: Optional[int] = None) -> List[Tuple[str, Row]]:
    """(config file, row) for every dataset of every protocol, as ``scripts/protocols.sh`` defines them."""
    from mutual_prompt.tools import protocols
    from mutual_prompt.tools.dataset_catalog import CATALOG

    config = config_path

    def limit(names: Sequence[str]) -> Sequence[str]:
        return names[:datasets_limit] if datasets_limit else names

    rows: List[Tuple[str, Row]] = []
    p = protocols.protocol("base2new").defaults
    batch, epochs = config_values(config(p["cfg"]))
    for name in limit(p["datasets"]):
        d = CATALOG[name]
        base, new = halves(d.classes)
        tests = ((base, round(d.test * base / d.classes)), (new, round(d.test * new / d.classes)))
        rows.append((config(p["cfg"]), Row("base2new", name, Phase(base, p["shots"] * base, epochs, batch, tests),
                                           len(p["seeds"]), 2)))
    p = protocols.protocol("xd").defaults
    batch, epochs = config_values(config(p["cfg"]))
    source = CATALOG[p["source"]]
    rows.append((config(p["cfg"]), Row("xd train", p["source"], Phase(
        source.classes, p["shots"] * source.classes, epochs, batch, ((source.classes, source.test),)), len(p["seeds"]), 1)))
    for name in limit(p["targets"]):
        d = CATALOG[name]
        rows.append((config(p["cfg"]), Row("xd test", name, Phase(0, 0, 0, batch, ((d.classes, d.test),)),
                                           len(p["seeds"]), 1)))
    p = protocols.protocol("few_shot").defaults
    batch, epochs = config_values(config(p["cfg"]))
    for name in limit(p["datasets"]):
        d = CATALOG[name]
        # One row for the whole shot list: a step's cost does not depend on the shots, only the image count.
        shot_list = p["shot_list"]
        rows.append((config(p["cfg"]), Row("few_shot", name, Phase(
            d.classes, sum(shot_list) * d.classes, epochs, batch, ((d.classes, d.test * len(shot_list)),)),
            len(p["seeds"]), len(shot_list))))
    return rows


def measure_rows(planned: List[Tuple[str, Row]], shape: Dict) -> List[Dict]:
    """Every row's FLOPs, images and memory; one CostModel per config, one count per (classes, batch)."""
    models: Dict[str, CostModel] = {}
    train_cache: Dict[Tuple[str, int, int], Tuple[float, int]] = {}
    eval_cache: Dict[Tuple[str, int], float] = {}
    records = []
    for i, (config_file, row) in enumerate(planned, 1):
        if config_file not in models:
            models[config_file] = CostModel(config_file, shape)
        model = models[config_file]
        phase = row.phase
        record = {"protocol": row.protocol, "dataset": row.dataset, "seeds": row.seeds,
                  "runs": row.seeds * row.runs_per_seed, "phase": phase,
                  "train_flops": 0.0, "train_gflop_per_image": None, "train_memory_bytes": None}
        if phase.train_classes:
            key = (config_file, phase.train_classes, phase.batch)
            if key not in train_cache:
                train_cache[key] = model.train_step(phase.train_classes, phase.batch)
            per_image, saved = train_cache[key]
            model.set_classes(phase.train_classes)
            record.update(train_gflop_per_image=per_image / 1e9,
                          train_flops=per_image * phase.train_images * phase.epochs,
                          train_memory_bytes=model.fixed_bytes() + saved + ALLOWANCE_GIB * GIB)
        test_flops = 0.0
        for classes, images in phase.tests:
            if (config_file, classes) not in eval_cache:
                eval_cache[(config_file, classes)] = model.eval_flops(classes)
            test_flops += eval_cache[(config_file, classes)] * images
        record.update(test_flops=test_flops, test_gflop_per_image=eval_cache[(config_file, phase.tests[0][0])] / 1e9,
                      test_images=sum(images for _, images in phase.tests))
        records.append(record)
        print(f"[{i}/{len(planned)}] {row.protocol} {row.dataset}", file=sys.stderr, flush=True)
    return records


Rates = Dict[str, Tuple[float, float]]  # a GPU's name -> (training, evaluation) FLOP/s


def hours(record: Dict, rate: Tuple[float, float], seeds: int = 1) -> float:
    """Hours of ``seeds`` seeds of a record's runs at (training, evaluation) FLOP/s ``rate``."""
    return seeds * (record["train_flops"] / rate[0] + record["test_flops"] / rate[1]) / 3600


def table_rows(records: List[Dict], rates: Rates) -> List[List[str]]:
    """One line per record: one seed's runs (for few_shot, one seed of every shot setting)."""
    lines = []
    for r in records:
        phase = r["phase"]
        classes = f"{phase.train_classes or '-'} / {' + '.join(str(c) for c, _ in phase.tests)}"
        train = f"{phase.train_images:,} x {phase.epochs}" if phase.train_classes else "-"
        memory = "-" if r["train_memory_bytes"] is None else f"{r['train_memory_bytes'] / GIB:.1f}"
        gflop_train = "-" if r["train_gflop_per_image"] is None else f"{r['train_gflop_per_image']:.0f}"
        lines.append([r["protocol"], r["dataset"], classes, train, str(phase.batch) if phase.train_classes else "-",
                      gflop_train, f"{r['test_gflop_per_image']:.0f}", f"{r['test_images']:,}", memory,
                      *(f"{hours(r, rate) * 60:.1f}" for rate in rates.values())])
    return lines


def protocol_records(records: List[Dict]) -> Dict[str, List[Dict]]:
    """The records of each protocol (``xd`` holds its training and its tests)."""
    protocols: Dict[str, List[Dict]] = {}
    for r in records:
        protocols.setdefault(r["protocol"].split()[0], []).append(r)
    return protocols


def report(records: List[Dict], rates: Rates, rate_note: str) -> str:
    """The markdown table, and each sweep's total on one GPU."""
    from tabulate import tabulate

    lines = [tabulate(table_rows(records, rates), headers=[*COLUMNS, *(f"{gpu} min" for gpu in rates)],
                      tablefmt="github", disable_numparse=True), "",
             f"Minutes per seed (few_shot: all shot settings of one seed) at {rate_note}.", ""]
    for name, group in protocol_records(records).items():
        runs = sum(r["runs"] for r in group)
        flops = sum((r["train_flops"] + r["test_flops"]) * r["seeds"] for r in group)
        spent = ", ".join(f"{sum(hours(r, rate, r['seeds']) for r in group):.1f} h on one {gpu}"
                          for gpu, rate in rates.items())
        lines.append(f"Whole {name} sweep ({runs} runs): {flops / 1e15:,.1f} PFLOP; {spent}.")
    return "\n".join(lines)


def project(quick: bool) -> List[Dict]:
    """The records of every protocol's datasets (``quick``: a tiny CLIP, two datasets per protocol)."""
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    torch.manual_seed(0)
    with contextlib.redirect_stdout(sys.stderr):  # the model's build messages; the table is stdout's only output
        return measure_rows(plan_rows(2 if quick else None), QUICK_SHAPE if quick else VIT_B16)


def heading(quick: bool, kind: str) -> str:
    shape = "tiny CLIP (--quick)" if quick else "ViT-B/16"
    return (f"{kind}, {shape}, PREC fp16, longest class name {NAME_TOKENS} tokens; train memory includes a "
            f"{ALLOWANCE_GIB:g} GiB allowance.\n")


def assumed_rates(utilisation: float = UTILISATION) -> Rates:
    """Each GPU of ``GPUS`` at ``utilisation`` of its peak, in training and in evaluation."""
    return {gpu: (peak * utilisation, peak * utilisation) for gpu, peak in GPUS.items()}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="a tiny CLIP and two datasets per protocol, to know the script runs (tests)")
    parser.add_argument("--utilisation", type=float, default=UTILISATION,
                        help=f"share of each GPU's fp16 peak assumed reached (default: {UTILISATION})")
    args = parser.parse_args(argv)
    if not 0 < args.utilisation <= 1:
        parser.error(f"--utilisation: expected a share in (0, 1]; got {args.utilisation}")
    records = project(args.quick)
    print(heading(args.quick, "Projected"))
    print(report(records, assumed_rates(args.utilisation),
                 f"{args.utilisation:.0%} of the fp16 tensor-core peak (an assumption)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
