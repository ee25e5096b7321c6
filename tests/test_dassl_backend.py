"""Running under the real Dassl toolbox (skipped where ``import dassl`` fails), forcing it where it is
missing, and the config keys our trainers add to Dassl's defaults."""
import ast
import math
import os
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest
from yacs.config import CfgNode as CN

from helpers.dataset_trees import CALTECH
from helpers.real_dassl import needs_dassl
from helpers.runs import python
from mutual_prompt.run.config import add_keys_dassl_lacks

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_add_keys_dassl_lacks_adds_missing_keys_and_keeps_present_ones():
    dassl_like = CN()
    dassl_like.DATASET = CN()
    dassl_like.MODEL = CN()
    dassl_like.MODEL.BACKBONE = CN()
    dassl_like.MODEL.BACKBONE.NAME = "ViT-B/16"
    add_keys_dassl_lacks(dassl_like)
    assert dassl_like.DATASET.SUBSAMPLE_CLASSES == "all"
    assert dassl_like.MODEL.BACKBONE.PATH == ""

    dassl_like.DATASET.SUBSAMPLE_CLASSES = "new"
    dassl_like.MODEL.BACKBONE.PATH = "/weights/clip.pt"
    add_keys_dassl_lacks(dassl_like)
    assert dassl_like.DATASET.SUBSAMPLE_CLASSES == "new"
    assert dassl_like.MODEL.BACKBONE.PATH == "/weights/clip.pt"


def test_forcing_dassl_without_it_is_a_clear_import_error():
    # ``sys.modules["dassl"] = None`` makes ``import dassl`` fail as if it were not installed.
    proc = python("import sys; sys.modules['dassl'] = None; import mutual_prompt.backend", backend="dassl")
    assert proc.returncode != 0
    last_line = proc.stderr.strip().splitlines()[-1]
    assert last_line.startswith("ImportError: MUTUAL_PROMPT_BACKEND=dassl, but Dassl could not be imported")
    assert "Dassl.pytorch" in last_line


def test_a_dassl_lacking_names_is_passed_over_automatically_and_named_when_forced(tmp_path):
    # Every module the backend imports from exists, but holds none of the names (a partial install).
    for module in ("__init__", "config", "data/__init__", "data/datasets", "engine", "metrics", "optim", "utils"):
        path = tmp_path / "dassl" / f"{module}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
    code = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import mutual_prompt.backend as b; print(b.BACKEND)"
    auto = python(code)
    assert auto.returncode == 0, auto.stderr[-3000:]
    assert auto.stdout.split() == ["builtin"]
    forced = python(code, backend="dassl")
    assert forced.returncode != 0
    assert "ImportError: MUTUAL_PROMPT_BACKEND=dassl, but Dassl could not be imported (ImportError: cannot import name" \
        in forced.stderr


@pytest.mark.dassl
@needs_dassl
def test_dassl_is_picked_automatically_when_it_imports():
    proc = python("import mutual_prompt.backend as b, dassl.engine as d; "
                  "print(b.BACKEND, b.TRAINER_REGISTRY is d.TRAINER_REGISTRY)")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["dassl", "True"]


@pytest.mark.dassl
@pytest.mark.slow
@needs_dassl
def test_zeroshot_eval_only_through_train_py_under_real_dassl(tmp_path, tiny_clip_file):
    root = str(tmp_path / "data")
    CALTECH.build(root)
    output_dir = tmp_path / "out"
    env = dict(os.environ, MUTUAL_PROMPT_BACKEND="dassl")
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, "train.py"), "--root", root, "--trainer", "ZeroshotMP",
         "--dataset-config-file", os.path.join(REPO_ROOT, "configs", "datasets", "caltech101.yaml"),
         "--config-file", os.path.join(REPO_ROOT, "configs", "trainers", "ZeroshotMP", "toy.yaml"),
         "--output-dir", str(output_dir), "--eval-only", "MODEL.BACKBONE.PATH", tiny_clip_file, "USE_CUDA", "False"],
        cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (output_dir / "log.txt").read_text()
    assert "M3SDA:" in log  # the printed config holds Dassl's own defaults (its trainers' keys)
    result = log[log.index("=> result"):]
    assert "* total: 10" in result
    # the same 10 identical images as the built-in test: one class predicted for all, 2 right
    assert re.search(r"\* accuracy: 20\.0%", result), result
    assert re.search(r"\* macro_f1: \d+\.\d%", result), result


@pytest.mark.dassl
@pytest.mark.slow
@needs_dassl
def test_mutual_prompt_trains_resumes_and_tests_through_train_py_under_real_dassl(tmp_path, repo_root):
    """Under Dassl: the log's environment block and worker cap, both parsers' end-of-training lines, a
    resume through our weights_only reader (with the optimizer and scheduler) and an eval-only run."""
    env = dict(os.environ, MUTUAL_PROMPT_BACKEND="dassl")
    out = tmp_path / "out"
    common = [sys.executable, "train.py", "--root", str(tmp_path / "data"), "--trainer", "MutualPrompt", "--seed", "1",
              "--dataset-config-file", "configs/datasets/toy_shapes.yaml",
              "--config-file", "configs/trainers/MutualPrompt/toy.yaml"]
    opts = ["DATASET.NUM_SHOTS", "2", "DATASET.SUBSAMPLE_CLASSES", "base", "DATALOADER.NUM_WORKERS", "512"]
    proc = subprocess.run(common + ["--output-dir", str(out), *opts, "OPTIM.MAX_EPOCH", "1"], cwd=repo_root, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (out / "log.txt").read_text()
    assert "\nBackend: Dassl 0.6" in log and "\nDevice: " in log and "DATALOADER.NUM_WORKERS 512 -> " in log
    assert log.index("\nFinished training\n") < log.index("\nFinish training\n") < log.index("* accuracy:")
    assert (out / "prompt_learner" / "model.pth.tar-1").is_file()

    proc = subprocess.run(common + ["--output-dir", str(out), "--force-resume", *opts, "OPTIM.MAX_EPOCH", "2"],
                          cwd=repo_root, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed = "".join(p.read_text() for p in out.iterdir() if p.name.startswith("log.txt-"))
    assert f'Found checkpoint at "{out}" (will resume training)' in resumed  # ours; Dassl's has no quotes
    assert "Loaded optimizer" in resumed and "Loaded scheduler" in resumed and "Previous epoch: 1" in resumed
    assert (out / "prompt_learner" / "model.pth.tar-2").is_file()

    proc = subprocess.run(common + ["--output-dir", str(tmp_path / "test"), "--eval-only", "--model-dir", str(out),
                                    "--load-epoch", "2", *opts], cwd=repo_root, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "* accuracy:" in (tmp_path / "test" / "log.txt").read_text()


def test_mutual_prompt_resumes_through_the_weights_only_reader_under_dassl(tmp_path, monkeypatch):
    """Dassl 0.6.3's resume calls torch.load with the default (full unpickling before torch 2.6): the
    trainer resumes through ``resume_models`` instead, restoring optimizer, scheduler and best result."""
    import torch

    import trainers.mutual_prompt as mp
    from mutual_prompt.run.checkpoints import BEST_MODEL_FILE, save_checkpoint
    from mutual_prompt.run.lr_schedulers import build_lr_scheduler

    def trained_parts():
        torch.manual_seed(0)
        model = torch.nn.Linear(2, 2)
        optim = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        sched = build_lr_scheduler(optim, CN({"LR_SCHEDULER": "cosine", "STEPSIZE": (-1,), "MAX_EPOCH": 4,
                                              "GAMMA": 0.1, "WARMUP_EPOCH": 1, "WARMUP_TYPE": "constant",
                                              "WARMUP_CONS_LR": 1e-5, "WARMUP_MIN_LR": 1e-5,
                                              "WARMUP_RECOUNT": True}))
        return model, optim, sched

    model, optim, sched = trained_parts()
    model(torch.ones(1, 2)).sum().backward()
    optim.step()
    sched.step()
    state = {"state_dict": model.state_dict(), "epoch": 1, "optimizer": optim.state_dict(),
             "scheduler": sched.state_dict(), "val_result": 70.0}
    save_checkpoint(state, str(tmp_path / "prompt_learner"))
    save_checkpoint(state, str(tmp_path / "prompt_learner"), model_name=BEST_MODEL_FILE)

    loads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **kw: loads.append(kw.get("weights_only")) or real_load(*a, **kw))
    monkeypatch.setattr(mp, "BACKEND", "dassl")
    model2, optim2, sched2 = trained_parts()
    trainer = SimpleNamespace(_models={"prompt_learner": model2}, _optims={"prompt_learner": optim2},
                              _scheds={"prompt_learner": sched2}, get_model_names=lambda: ["prompt_learner"],
                              best_result=-math.inf)
    assert mp.MutualPrompt.resume_model_if_exist(trainer, str(tmp_path)) == 1
    assert loads and all(loads), loads  # every read with weights_only=True
    assert torch.equal(model2.weight, model.weight) and sched2.last_epoch == sched.last_epoch == 1
    assert optim2.state_dict()["state"][0]["momentum_buffer"].equal(optim.state_dict()["state"][0]["momentum_buffer"])
    assert trainer.best_result == 70.0


def test_mutual_prompt_reads_init_weights_with_the_weights_only_reader_under_either_host():
    """MODEL.INIT_WEIGHTS goes through our reader, not Dassl's ``load_checkpoint`` (torch.load's default):
    imported from ``run/checkpoints.py``, not from the backend (which gives Dassl's under Dassl)."""
    import trainers.mutual_prompt as mp
    from mutual_prompt.run import checkpoints

    with open(mp.__file__, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    sources = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
               and any(alias.name == "load_pretrained_weights" for alias in node.names)]
    assert sources == ["mutual_prompt.run.checkpoints"]
    assert mp.load_pretrained_weights is checkpoints.load_pretrained_weights
