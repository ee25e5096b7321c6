"""Training and evaluation throughput of MutualPrompt against a plain CoCoOp-style loop, and against the machine.

ViT-B/16-shaped CLIP with random weights (nothing is downloaded), synthetic 224x224 batches. Modes:

- ``plain``: CoCoOp's reference computation written out here: per image, the meta-net bias is added
  to every context token and the C prompts run at the full 77 tokens through CLIP's own text
  transformer;
- ``cocoop_equiv``: MutualPromptCLIP with FTP ``shared`` and TVP off (the same logits, tested);
- ``full``: MutualPromptCLIP with FTP ``fine`` and TVP.

Each (precision, mode, classes, batch) runs in a fresh subprocess, so its peak memory (ru_maxrss on
the CPU, max_memory_allocated on CUDA) is its own; ratios are against the plain loop of the same
run and precision. ``--precision`` takes any PREC (comma-separated; CLIP in the trainer's weight
layout and autocast for it, as ``resolve_precision`` runs it on the device).

The roofline (``benchmarks/roofline.py``): each record's FLOPs per image of a training step and of
an evaluation pass, counted from the model with ``FlopCounterMode`` (matrix products and
convolutions), times its images/s is the rate it reached; ``roofline_train`` / ``roofline_eval``
divide that by the machine's matrix-product rate in the precision's compute dtype, measured at the
start of the run: the best ``F.linear`` over ViT-B/16's main layer shapes (``RATE_SHAPES``). Near 1,
a step is as fast as this machine multiplies matrices; only fewer FLOPs make it faster.

    python benchmarks/throughput.py                 # C = 10, 50 (train + eval), 1000 (eval; full-mode train memory)
    python benchmarks/throughput.py --quick         # C = 50 only, fewer iterations (< 3 min per precision on 2 CPU cores)
    python benchmarks/throughput.py --quick --precision fp32,bf16
    python benchmarks/throughput.py --device cuda --precision fp16 --json results.json
"""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

MODES = ("plain", "cocoop_equiv", "full")
CTX_INIT = "a photo of a"
VIT_B16 = dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768, vision_patch_size=16,
               context_length=77, vocab_size=49408, transformer_width=512, transformer_heads=8, transformer_layers=12)
# A tiny CLIP for the scripts' --quick runs (CI).
QUICK_SHAPE = dict(embed_dim=64, image_resolution=32, vision_layers=2, vision_width=64, vision_patch_size=8,
                   context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1, transformer_layers=2)
# The machine's matrix-product rate is the best of F.linear on ViT-B/16's main layer shapes (m, k, n) at
# batch 4: the image tower's attention in-projection, MLP up and down (4 x 197 tokens), and the text
# tower's MLP up and down on C = 50 class suffixes of 6 tokens.
RATE_SHAPES = ((788, 768, 2304), (788, 768, 3072), (788, 3072, 768), (1200, 512, 2048), (1200, 2048, 512))
JSON_KEYS = ("precision", "mode", "classes", "batch", "train_img_s", "eval_img_s", "peak_mem_mb", "train_ratio",
             "eval_ratio", "gflop_per_image_train", "gflop_per_image_eval", "roofline_train", "roofline_eval")


def random_clip(device: str, shape: Optional[Dict] = None, precision: str = "fp32") -> nn.Module:
    """A frozen CLIP with random weights (ViT-B/16's shapes by default) in the weight layout of ``precision``."""
    from mutual_prompt.clip import CLIP, set_clip_precision

    torch.manual_seed(0)
    model = CLIP(**(shape or VIT_B16))
    return set_clip_precision(model, precision).eval().requires_grad_(False).to(device)


class PlainCoCoOp(nn.Module):
    """CoCoOp's loop over images at 77 tokens (the baseline every ratio is against), in the dtype of
    CLIP's weights as CoCoOp's text encoder."""

    def __init__(self, clip_model: nn.Module, classnames: List[str], meta_net: nn.Module, ctx: torch.Tensor) -> None:
        super().__init__()
        from mutual_prompt.clip import tokenize

        self.clip_model = clip_model
        self.meta_net = meta_net
        self.ctx = nn.Parameter(ctx.clone())
        n_ctx = ctx.shape[0]
        prompts = [" ".join(["X"] * n_ctx) + " " + name + "." for name in classnames]
        device = clip_model.token_embedding.weight.device
        self.tokens = tokenize(prompts).to(device)
        with torch.no_grad():
            embedding = clip_model.token_embedding(self.tokens)
        self.prefix = embedding[:, :1]
        self.suffix = embedding[:, 1 + n_ctx:]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        m = self.clip_model
        with torch.no_grad():
            x = F.normalize(m.encode_image(images), dim=-1)
        bias = self.meta_net(x.to(self.ctx.dtype)).unsqueeze(1)
        logits = []
        for b in range(x.shape[0]):
            ctx = (self.ctx.unsqueeze(0) + bias[b]).expand(self.tokens.shape[0], -1, -1)
            t = torch.cat([self.prefix, ctx, self.suffix], dim=1).type(m.dtype) + m.positional_embedding.type(m.dtype)
            t = m.ln_final(m.transformer(t.permute(1, 0, 2)).permute(1, 0, 2)).type(m.dtype)
            t = t[torch.arange(t.shape[0]), self.tokens.argmax(dim=-1)] @ m.text_projection
            logits.append(m.logit_scale.exp() * F.normalize(t, dim=-1) @ x[b])
        return torch.stack(logits)


def method_arguments(**changes) -> Dict:
    """MutualPromptCLIP's keyword arguments: the defaults of ``TRAINER.MUTUAL_PROMPT``, with ``changes``."""
    import trainers
    from mutual_prompt.backend import get_cfg_default
    from trainers.mutual_prompt import model_arguments

    cfg = get_cfg_default()
    trainers.extend_cfg(cfg)
    return {**model_arguments(cfg), **changes}


def build_model(mode: str, clip_model: nn.Module, classnames: List[str], text_chunk: int = 0,
                text_checkpoint: bool = False) -> nn.Module:
    from mutual_prompt.method import MutualPromptCLIP

    common = dict(ctx_init=CTX_INIT, text_chunk=text_chunk, text_checkpoint=text_checkpoint)
    if mode == "full":
        return MutualPromptCLIP(clip_model, classnames, **method_arguments(ftp_mode="fine", tvp_enabled=True, **common))
    equiv = MutualPromptCLIP(clip_model, classnames, **method_arguments(ftp_mode="shared", tvp_enabled=False, **common))
    if mode == "cocoop_equiv":
        return equiv
    return PlainCoCoOp(clip_model, classnames, equiv.prompt_learner.ftp.meta_net, equiv.prompt_learner.ctx.detach())


def classnames_for(n: int) -> List[str]:
    return [f"class name {i}" for i in range(n)]


def time_steps(step, iters: int, warmup: int, device: str = "cpu") -> float:
    """Seconds for ``iters`` calls of ``step`` after ``warmup`` untimed ones (GPU work included)."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    sync()
    return time.perf_counter() - start


def prompt_train_step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, optimizer, scaler,
                      precision: str, device: str) -> torch.Tensor:
    """One optimiser step with the trainer's autocast, through GradScaler where the precision uses one."""
    from mutual_prompt.clip import autocast

    optimizer.zero_grad()
    with autocast(precision, device):
        loss = F.cross_entropy(model(images).float(), labels)
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return loss


def measure(mode: str, classes: int, batch: int, device: str, iters: int, warmup: int, train: bool, evaluate: bool,
            text_chunk: int = 0, text_checkpoint: bool = False, label: str = "",
            precision: str = "fp32", shape: Optional[Dict] = None, flops: bool = True) -> Dict:
    """One (mode, classes, batch) record: images/s for a training step and for evaluation, with CLIP
    in ``precision`` (trainer's layout and autocast) at ``shape`` (ViT-B/16 by default), and with
    ``flops`` the FLOPs per image of each (``gflop_per_image_train`` / ``_eval``)."""
    from benchmarks.roofline import step_flops_per_image
    from mutual_prompt.clip import autocast, grad_scaler

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    clip_model = random_clip(device, shape, precision)
    model = build_model(mode, clip_model, classnames_for(classes), text_chunk, text_checkpoint).to(device)
    size = clip_model.visual.input_resolution
    images = torch.randn(batch, 3, size, size, device=device)
    labels = torch.randint(0, classes, (batch,), device=device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.002, momentum=0.9)
    scaler = grad_scaler(precision, device)

    def train_step():
        prompt_train_step(model, images, labels, optimizer, scaler, precision, device)

    def eval_step():
        with torch.no_grad(), autocast(precision, device):
            model(images)

    def rate(step):
        return batch * iters / time_steps(step, iters, warmup, device)

    record = {"precision": precision, "mode": label or mode, "classes": classes, "batch": batch, "train_img_s": None,
              "eval_img_s": None, "gflop_per_image_train": None, "gflop_per_image_eval": None}
    for direction, wanted, step in (("train", train, train_step), ("eval", evaluate, eval_step)):
        if wanted and flops:
            count = step_flops_per_image(model, batch, size, classes, direction == "train", precision, device)
            record[f"gflop_per_image_{direction}"] = count / 1e9
        if wanted:
            record[f"{direction}_img_s"] = rate(step)
    if device == "cuda":
        record["peak_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        record["peak_mem_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return record


def run_worker(spec: Dict) -> Dict:
    """Measure ``spec`` in a fresh interpreter and return its record."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark worker failed for {spec}:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def plan(quick: bool, device: str) -> List[Dict]:
    """The configurations of a run; the plain loop is slow, so it gets the fewest iterations."""
    cpu = device == "cpu"
    specs: List[Dict] = []
    class_counts = (50,) if quick else (10, 50)
    for classes in class_counts:
        for mode in MODES:
            slow = mode == "plain"
            specs.append(dict(mode=mode, classes=classes, batch=4, iters=1 if (slow or quick) else 3,
                              warmup=1, train=True, evaluate=True))
    if not quick:
        for mode in MODES:
            specs.append(dict(mode=mode, classes=1000, batch=4, iters=1, warmup=0 if cpu else 1,
                              train=not cpu, evaluate=True, text_chunk=1000))
        # The memory-bounded training step at ImageNet's class count: chunking + checkpointing.
        specs.append(dict(mode="full", classes=1000, batch=4, iters=1, warmup=0, train=True, evaluate=False,
                          text_chunk=500, text_checkpoint=True, label="full_chunk500_ckpt"))
    return specs


def add_ratios(records: List[Dict]) -> None:
    """``train_ratio`` / ``eval_ratio``: images/s over the plain loop's at the same classes and precision."""
    plain = {(r.get("precision"), r["classes"]): r for r in records if r["mode"] == "plain"}
    for r in records:
        base = plain.get((r.get("precision"), r["classes"]), {})
        for key, ratio in (("train_img_s", "train_ratio"), ("eval_img_s", "eval_ratio")):
            r[ratio] = r[key] / base[key] if r.get(key) and base.get(key) else None


def add_roofline(records: List[Dict], rates: Dict[str, float]) -> None:
    """``roofline_train`` / ``roofline_eval``: the FLOP/s a record reached (FLOPs per image x images/s)
    as a fraction of ``rates[precision]``, the machine's matrix-product FLOP/s in that precision."""
    for r in records:
        for direction in ("train", "eval"):
            flops, speed = r.get(f"gflop_per_image_{direction}"), r.get(f"{direction}_img_s")
            r[f"roofline_{direction}"] = flops * 1e9 * speed / rates[r["precision"]] if flops and speed else None


def measure_rates(precisions: List[str], device: str) -> Dict[str, float]:
    """The matrix-product FLOP/s of each precision on ``device``: the best over RATE_SHAPES."""
    from benchmarks.roofline import matmul_rate

    return {p: max(matmul_rate(p, device, *shape, repeats=3) for shape in RATE_SHAPES) for p in precisions}


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def print_table(records: List[Dict], device: str, rates: Dict[str, float],
                runs_as: Optional[Dict[str, str]] = None) -> None:
    """One table per precision, then each later precision's images/s over the first one's; ``runs_as``
    maps a PREC to the one it ran as on ``device`` where they differ (``parse_precisions``)."""
    from mutual_prompt.clip.precision import compute_dtype
    from tabulate import tabulate

    def fmt(v, pattern):
        return "-" if v is None else pattern.format(v)

    print(f"Device: {device}; {machine()}")
    for precision, rate in rates.items():
        rows = [[r["mode"], r["classes"], r["batch"], fmt(r["train_img_s"], "{:.3f}"), fmt(r["eval_img_s"], "{:.3f}"),
                 fmt(r["gflop_per_image_train"], "{:.1f}"), fmt(r["gflop_per_image_eval"], "{:.1f}"),
                 fmt(r["roofline_train"], "{:.0%}"), fmt(r["roofline_eval"], "{:.0%}"), fmt(r["peak_mem_mb"], "{:.0f}"),
                 fmt(r["train_ratio"], "{:.1f}x"), fmt(r["eval_ratio"], "{:.1f}x")]
                for r in records if r["precision"] == precision]
        effective = (runs_as or {}).get(precision, precision)
        dtype = str(compute_dtype(effective, device)).replace("torch.", "")
        ran_as = "" if effective == precision else f" (runs as {effective} on {device})"
        print(f"\nPREC {precision}{ran_as}: matrix products at {rate / 1e9:.0f} GFLOP/s ({dtype}, the best F.linear on "
              "ViT-B/16's layer shapes); roofline = GFLOP/img x img/s / that rate")
        print(tabulate(rows, headers=["mode", "C", "batch", "train img/s", "eval img/s", "GFLOP/img train",
                                      "GFLOP/img eval", "train roofline", "eval roofline", "peak MB", "train ratio",
                                      "eval ratio"], disable_numparse=True))
    first, *others = list(rates)
    for precision in others:
        print(f"\nPREC {precision} over PREC {first}, same run (images/s):")
        for r in records:
            base = next((b for b in records if b["precision"] == first and b["mode"] == r["mode"]
                         and b["classes"] == r["classes"]), None)
            if r["precision"] != precision or base is None:
                continue
            parts = [f"{d} {r[f'{d}_img_s'] / base[f'{d}_img_s']:.2f}x" for d in ("train", "eval")
                     if r[f"{d}_img_s"] and base[f"{d}_img_s"]]
            print(f"  {r['mode']} C={r['classes']}: {', '.join(parts)}")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="C = 50 only, one timed iteration (< 3 min per precision on 2 CPU cores)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    parser.add_argument("--precision", default="fp32", metavar="PREC[,PREC...]",
                        help="the PREC of each run, comma-separated (fp32, fp16, amp, bf16; default fp32)")
    parser.add_argument("--json", metavar="PATH", help="write one record per (precision, mode, classes, batch)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["BENCH_THREADS"] = str(args.threads)
    elif os.environ.get("BENCH_THREADS"):
        torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
    if args.worker:
        spec = json.loads(args.worker)
        print(json.dumps(measure(device=spec.pop("device"), **spec)))
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but no CUDA device is available")
    precisions = parse_precisions(parser, args.precision, args.device)
    by_effective = measure_rates(list(precisions.values()), args.device)
    rates = {asked: by_effective[effective] for asked, effective in precisions.items()}  # keyed by the PREC asked
    records = []
    specs = [(asked, dict(spec, precision=effective)) for asked, effective in precisions.items()
             for spec in plan(args.quick, args.device)]
    start = time.time()
    for i, (asked, spec) in enumerate(specs, 1):
        records.append(dict(run_worker(dict(spec, device=args.device)), precision=asked))
        elapsed = time.time() - start
        eta = elapsed / i * (len(specs) - i)
        print(f"[{i}/{len(specs)}] {asked} {spec['mode']} C={spec['classes']} done; "
              f"elapsed {elapsed:.0f}s, eta {eta:.0f}s", file=sys.stderr, flush=True)
    add_ratios(records)
    add_roofline(records, rates)
    print_table(records, args.device, rates, precisions)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{k: r[k] for k in JSON_KEYS} for r in records], f, indent=2)
    return 0


def parse_precisions(parser: argparse.ArgumentParser, value: str, device: str) -> Dict[str, str]:
    """Each requested PREC with the one it runs as on ``device`` (``resolve_precision``: fp16 on the CPU
    runs as fp32 unless MUTUAL_PROMPT_CPU_FP16=1, as in training), in the order given."""
    from mutual_prompt.clip import PRECISIONS, resolve_precision
    from mutual_prompt.names import unknown_name

    precisions: Dict[str, str] = {}
    for name in (part.strip() for part in value.split(",")):
        if name not in PRECISIONS:
            parser.error(f"--precision: {unknown_name('PREC', name, PRECISIONS)} (comma-separated)")
        try:
            effective = resolve_precision(name, device, key="--precision")
        except ValueError as err:
            parser.error(str(err))
        if effective in precisions.values():
            parser.error(f"--precision: {name} runs as {effective} on {device}, which is already measured")
        precisions[name] = effective
    return precisions


if __name__ == "__main__":
    sys.exit(main())
