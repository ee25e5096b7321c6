"""The one-call GPU check: MutualPrompt's training path in every PREC, then its speed, at ViT-B/16 shapes.

1. Per PREC (fp32 first, as the reference, then fp16, bf16, amp): a CLIP with random weights, saved
   in fp16 as OpenAI ships its weights, is built through the trainer's own code
   (``load_frozen_clip`` -> ``build_mutual_prompt_clip``, the default FTP fine + TVP) for C = 100
   classes, all with the same prompt weights. One evaluation batch: its logits must agree with
   fp32's (no TF32) to LOGIT_EPS machine epsilons of the precision's 16-bit type in cosine units,
   eps x exp(logit_scale) (the CPU tests hold 1 eps; this model measured 0.19 / 0.24 / 0.13 eps
   for fp16 / bf16 / amp on the CPU with PyTorch's fused attention; bf16 and amp on the CPU now
   write attention out, see mutual_prompt/clip/prefix_attention.py). The share of images whose top class is unchanged is
   reported, not checked: random weights give near-ties. Then TRAIN_STEPS training steps on one
   fixed batch of 4 with the trainer's optimizer, autocast and GradScaler: every loss finite, the
   last below the first.
2. Images/s of the plain CoCoOp loop, the CoCoOp-equivalent and the full mode at C = 50 and 1000
   (training batch 4, evaluation batch 100), PREC fp16 on a GPU (CoOp's default; fp32 on the CPU),
   each in its own process through ``benchmarks/throughput.py``'s ``measure`` (in this one under
   ``--quick``, whose peak memory figures are therefore cumulative), with peak memory, and the
   projected time to evaluate ImageNet (50,000 images x 1000 classes) with the full method.
3. ``benchmarks/projected_cost.py``'s table of every protocol and dataset, with the full mode's
   measured rates (its images/s at the largest C times the FLOPs per image counted for that batch
   and C) in place of the assumed share of a GPU's peak: the same columns, so that it can replace
   the projection in docs/PERFORMANCE.md. Counting the FLOPs takes about 2 minutes of CPU time.

The exit status is 1 when a check of part 1 fails. A configuration that runs out of memory in part 2
is reported as such (the plain loop's training step at C = 1000 may not fit).

    python benchmarks/gpu_check.py --json gpu_check.json      # on one GPU (designed for < 5 min on an H100)
    python benchmarks/gpu_check.py --device cpu --quick       # small shapes, to know it runs (CI)
"""
import argparse
import contextlib
import copy
import json
import os
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

import torch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from benchmarks import projected_cost  # noqa: E402
from benchmarks.throughput import (  # noqa: E402
    MODES,
    QUICK_SHAPE,
    VIT_B16,
    add_ratios,
    classnames_for,
    machine,
    measure,
    prompt_train_step,
    run_worker,
)

PRECISIONS = ("fp32", "fp16", "bf16", "amp")
CONFIG = "vit_b16_c4_ep10_batch1_ctxv1"  # the model whose FLOPs turn the full mode's images/s into FLOP/s
CHECK_CLASSES = 100
QUICK_CHECK_CLASSES = 10
TRAIN_BATCH = 4
TRAIN_STEPS = 5
LOGIT_EPS = 2
IMAGENET_IMAGES = 50_000


def save_random_weights(shape: Dict, folder: str) -> str:
    """A random CLIP's state dict in fp16, as OpenAI ships its weights."""
    from mutual_prompt.clip import CLIP

    torch.manual_seed(0)
    path = os.path.join(folder, "random_clip.pt")
    torch.save({k: v.half() for k, v in CLIP(**shape).state_dict().items()}, path)
    return path


def trainer_cfg(weights: str, size: int, precision: str):
    """The MutualPrompt config a user runs (defaults), with these weights and CoCoOp's SGD."""
    import trainers
    from mutual_prompt.backend import get_cfg_default

    cfg = get_cfg_default()
    trainers.extend_cfg(cfg)
    cfg.MODEL.BACKBONE.PATH = weights
    cfg.INPUT.SIZE = (size, size)
    cfg.TRAINER.MUTUAL_PROMPT.PREC = precision
    cfg.OPTIM.NAME, cfg.OPTIM.LR, cfg.OPTIM.MOMENTUM = "sgd", 0.002, 0.9
    return cfg


def logit_tolerance(precision: str, device: str, logit_scale: float) -> float:
    from mutual_prompt.clip.precision import compute_dtype

    return LOGIT_EPS * torch.finfo(compute_dtype(precision, device)).eps * logit_scale


def check_precision(precision: str, weights: str, size: int, device: str, classes: int, eval_batch: int,
                    reference: Optional[Dict]) -> Dict:
    """Build, evaluate one batch and train TRAIN_STEPS steps in ``precision``; ``reference`` is fp32's
    record (None for fp32 itself), whose prompt weights and logits this run uses and compares with."""
    from mutual_prompt.backend import build_optimizer
    from mutual_prompt.clip import autocast, grad_scaler, load_frozen_clip
    from trainers.mutual_prompt import build_mutual_prompt_clip

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    cfg = trainer_cfg(weights, size, precision)
    clip_model = load_frozen_clip("", weights, device, precision, cfg.INPUT.SIZE)
    model = build_mutual_prompt_clip(cfg, classnames_for(classes), clip_model).to(device)
    learner = model.prompt_learner
    if reference is None:
        torch.nn.init.normal_(learner.tvp.proj.weight, std=0.02)  # so that TVP's text weighting matters
    else:
        learner.load_state_dict(reference["prompt_state"])
    generator = torch.Generator().manual_seed(1)
    eval_images = torch.randn(eval_batch, 3, size, size, generator=generator).to(device)
    train_images = eval_images[:TRAIN_BATCH]
    labels = torch.randint(0, classes, (TRAIN_BATCH,), generator=generator).to(device)

    with torch.no_grad(), autocast(precision, device):
        logits = model(eval_images).float()
    record: Dict = {"precision": precision, "weight_dtype": str(clip_model.visual.conv1.weight.dtype),
                    "classes": classes, "eval_batch": eval_batch}
    if reference is None:
        record["prompt_state"] = copy.deepcopy(learner.state_dict())
        record["logits"] = logits
    else:
        expected = reference["logits"]
        error = (logits - expected).abs().max().item()
        agreement = (logits.argmax(-1) == expected.argmax(-1)).float().mean().item()
        tolerance = logit_tolerance(precision, device, clip_model.logit_scale.exp().item())
        record.update(logit_max_abs_error=error, logit_tolerance=tolerance, argmax_agreement=agreement,
                      logits_ok=error <= tolerance)

    optimizer = build_optimizer(learner, cfg.OPTIM)
    scaler = grad_scaler(precision, device)
    losses = []
    for _ in range(TRAIN_STEPS):
        loss = prompt_train_step(model, train_images, labels, optimizer, scaler, precision, device)
        losses.append(loss.item())
    finite = all(torch.isfinite(torch.tensor(losses)).tolist())
    record.update(losses=losses, loss_ok=finite and losses[-1] < losses[0], seconds=time.perf_counter() - start,
                  peak_mem_mb=torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None)
    record["ok"] = record["loss_ok"] and record.get("logits_ok", True)
    return record


def throughput_specs(quick: bool, precision: str, shape: Optional[Dict]) -> List[Dict]:
    """(mode, C) training steps at batch 4 and evaluations at batch 100 (C = 10 and batch 8 under --quick)."""
    specs = []
    for classes in ((10,) if quick else (50, 1000)):
        for mode in MODES:
            common = dict(mode=mode, classes=classes, precision=precision, shape=shape, text_chunk=2000, flops=False)
            specs.append(dict(common, batch=TRAIN_BATCH, train=True, evaluate=False, iters=1 if quick else 2,
                              warmup=0 if quick else 1))
            specs.append(dict(common, batch=8 if quick else 100, train=False, evaluate=True, iters=1,
                              warmup=0 if quick else 1))
    return specs


def merge_throughput(results: List[Dict]) -> List[Dict]:
    """One row per (mode, C) from its training and evaluation records."""
    rows: Dict = {}
    for spec, record in results:
        row = rows.setdefault((spec["mode"], spec["classes"]), {"mode": spec["mode"], "classes": spec["classes"],
                                                               "train_img_s": None, "eval_img_s": None})
        kind = "train" if spec["train"] else "eval"
        row[f"{kind}_batch"] = spec["batch"]
        row[f"{kind}_error"] = record.get("error")
        row[f"{kind}_img_s"] = record.get(f"{kind}_img_s")
        row[f"{kind}_peak_mb"] = record.get("peak_mem_mb")
    merged = list(rows.values())
    add_ratios(merged)
    return merged


def run_spec(spec: Dict, device: str, in_process: bool) -> Dict:
    """``measure`` in its own process (its peak memory its own), or in this one (--quick: no start-up cost)."""
    try:
        return measure(device=device, **spec) if in_process else run_worker(dict(spec, device=device))
    except RuntimeError as e:
        lines = [line for line in str(e).splitlines() if line.strip()]
        out_of_memory = any("out of memory" in line.lower() for line in lines)
        return {"error": "out of memory" if out_of_memory else lines[-1][-300:]}


def imagenet_projection(rows: List[Dict]) -> Optional[Dict]:
    full = max((r for r in rows if r["mode"] == "full" and r["eval_img_s"]), key=lambda r: r["classes"], default=None)
    if full is None:
        return None
    return {"images": IMAGENET_IMAGES, "classes": full["classes"], "seconds": IMAGENET_IMAGES / full["eval_img_s"]}


def measured_rates(rows: List[Dict], shape: Dict) -> Optional[Tuple[float, float]]:
    """(training, evaluation) FLOP/s the full method reached at the largest C measured: its images/s
    times the FLOPs per image ``benchmarks/projected_cost.py`` counts for the same batch and C."""
    full = max((r for r in rows if r["mode"] == "full" and r["train_img_s"] and r["eval_img_s"]),
               key=lambda r: r["classes"], default=None)
    if full is None:
        return None
    with contextlib.redirect_stdout(sys.stderr):
        model = projected_cost.CostModel(projected_cost.config_path(CONFIG), shape)
        train_per_image, _ = model.train_step(full["classes"], full["train_batch"])
        return train_per_image * full["train_img_s"], model.eval_flops(full["classes"]) * full["eval_img_s"]


def print_projection(rates: Tuple[float, float], device_name: str, quick: bool) -> None:
    """``benchmarks/projected_cost.py``'s table with these measured rates in place of the assumed one."""
    records = projected_cost.project(quick)
    print()
    print(projected_cost.heading(quick, f"From the rates measured on {device_name}"))
    print(projected_cost.report(records, {device_name: rates},
                                f"the full method's measured rates, {rates[0] / 1e12:.3g} TFLOP/s in training and "
                                f"{rates[1] / 1e12:.3g} TFLOP/s in evaluation (this run's largest C)"))


def print_report(checks: List[Dict], rows: List[Dict], projection: Optional[Dict], header: str) -> None:
    from tabulate import tabulate

    def fmt(v, pattern="{:.3f}"):
        return "-" if v is None else pattern.format(v)

    print(header)
    print(tabulate([[c["precision"], c["weight_dtype"], fmt(c.get("logit_max_abs_error"), "{:.2e}"),
                     fmt(c.get("logit_tolerance"), "{:.2e}"), fmt(c.get("argmax_agreement"), "{:.2f}"),
                     " > ".join(f"{x:.4f}" for x in c["losses"]), fmt(c["peak_mem_mb"], "{:.0f}"),
                     "ok" if c["ok"] else "FAILED"] for c in checks],
                   headers=["PREC", "CLIP weights", "|logit - fp32|", "tolerance", "same argmax", "loss (5 steps)",
                            "peak MB", "check"], disable_numparse=True))
    print()
    print(tabulate([[r["mode"], r["classes"], fmt(r["train_img_s"]) if not r.get("train_error") else r["train_error"],
                     fmt(r["eval_img_s"]) if not r.get("eval_error") else r["eval_error"],
                     fmt(r.get("train_peak_mb"), "{:.0f}"), fmt(r.get("eval_peak_mb"), "{:.0f}"),
                     fmt(r["train_ratio"], "{:.1f}x"), fmt(r["eval_ratio"], "{:.1f}x")] for r in rows],
                   headers=["mode", "C", "train img/s (b4)", "eval img/s", "train peak MB", "eval peak MB",
                            "train ratio", "eval ratio"], disable_numparse=True))
    if projection:
        note = "" if projection["classes"] == 1000 else f" (at this run's C = {projection['classes']}, not 1000)"
        print(f"\nImageNet evaluation, full method, {projection['images']:,} images: "
              f"{projection['seconds'] / 60:.1f} min{note}")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--quick", action="store_true",
                        help="small CLIP, C = 10 throughout, one iteration each, all in this process (CPU, CI)")
    parser.add_argument("--json", metavar="PATH", help="write the checks and the throughput rows")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but no CUDA device is available (use --device cpu --quick to try the script)")
    shape = QUICK_SHAPE if args.quick else VIT_B16
    device = args.device
    header = f"Device: {torch.cuda.get_device_name() if device == 'cuda' else 'cpu'}; {machine()}"
    start = time.time()

    checks: List[Dict] = []
    torch.backends.cudnn.allow_tf32 = False  # a true fp32 reference (PyTorch's default convolutions use TF32)
    with tempfile.TemporaryDirectory() as folder:
        weights = save_random_weights(shape, folder)
        for precision in PRECISIONS:
            checks.append(check_precision(precision, weights, shape["image_resolution"], device,
                                          QUICK_CHECK_CLASSES if args.quick else CHECK_CLASSES,
                                          8 if args.quick else 100, checks[0] if checks else None))
            print(f"[check {precision}] {'ok' if checks[-1]['ok'] else 'FAILED'}; elapsed {time.time() - start:.0f}s",
                  file=sys.stderr, flush=True)
    torch.backends.cudnn.allow_tf32 = True
    for check in checks:
        check.pop("prompt_state", None)
        check.pop("logits", None)

    speed_precision = "fp16" if device == "cuda" else "fp32"
    specs = throughput_specs(args.quick, speed_precision, QUICK_SHAPE if args.quick else None)
    results = []
    for i, spec in enumerate(specs, 1):
        results.append((spec, run_spec(spec, device, in_process=args.quick)))
        elapsed = time.time() - start
        print(f"[{i}/{len(specs)}] {spec['mode']} C={spec['classes']} {'train' if spec['train'] else 'eval'}; "
              f"elapsed {elapsed:.0f}s", file=sys.stderr, flush=True)
    rows = merge_throughput(results)
    projection = imagenet_projection(rows)

    print_report(checks, rows, projection, f"{header}; throughput in PREC {speed_precision}")
    rates = measured_rates(rows, QUICK_SHAPE if args.quick else VIT_B16)
    if rates:
        print_projection(rates, torch.cuda.get_device_name() if device == "cuda" else "cpu", args.quick)
    passed = all(c["ok"] for c in checks)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": header, "quick": args.quick, "passed": passed, "precision_checks": checks,
                       "throughput_precision": speed_precision, "throughput": rows,
                       "imagenet_eval_projection": projection,
                       "measured_flop_rates": None if rates is None else {"train": rates[0], "eval": rates[1]}},
                      f, indent=2)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
