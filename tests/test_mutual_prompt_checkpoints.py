"""MutualPrompt checkpoints for evaluation: eval-only through train.py (last-epoch and best-val
checkpoints, under the built-in engine and under real Dassl where it imports), strict loading, and
eval-only without a checkpoint."""
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch

import train
from helpers.real_dassl import needs_dassl
from mutual_prompt.backend import build_trainer
from mutual_prompt.run.checkpoints import StateDictMismatchError
from mutual_prompt.run.fingerprint import FINGERPRINT_FILE

pytestmark = pytest.mark.slow

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY = ["--trainer", "MutualPrompt", "--seed", "1", "--dataset-config-file", "configs/datasets/toy_shapes.yaml",
       "--config-file", "configs/trainers/MutualPrompt/toy.yaml"]
# One shot of the 32 base classes, one epoch; results on the validation split (32 images) for speed.
FEW = ["DATASET.NUM_SHOTS", "1", "DATASET.SUBSAMPLE_CLASSES", "base", "OPTIM.MAX_EPOCH", "1", "TEST.SPLIT", "val",
       "USE_CUDA", "False"]
BACKENDS = ["builtin", pytest.param("dassl", marks=[pytest.mark.dassl, needs_dassl])]


def train_py(data, *args: str, backend: str = "builtin") -> subprocess.CompletedProcess:
    env = dict(os.environ, MUTUAL_PROMPT_BACKEND=backend)
    return subprocess.run([sys.executable, "train.py", "--root", str(data), *TOY, *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def accuracy(log: str) -> str:
    return re.findall(r"\* accuracy: (\d+\.\d+)%", log)[-1]


@pytest.fixture(scope="module", params=BACKENDS)
def trained_run(request, tmp_path_factory):
    """One epoch on the base classes with TEST.FINAL_MODEL best_val: model-best.pth.tar (with its
    val_result) and model.pth.tar-1 (val_result None), and the test accuracy the run reported."""
    tmp = tmp_path_factory.mktemp(f"run_{request.param}")
    out = tmp / "out"
    proc = train_py(tmp / "data", "--output-dir", str(out), *FEW, "TEST.FINAL_MODEL", "best_val", backend=request.param)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return request.param, tmp / "data", out, accuracy((out / "log.txt").read_text())


def test_eval_only_of_the_last_epoch_checkpoint_without_val_result(trained_run, tmp_path):
    backend, data, out, trained_accuracy = trained_run
    assert torch.load(out / "prompt_learner" / "model.pth.tar-1", weights_only=True)["val_result"] is None
    proc = train_py(data, "--output-dir", str(tmp_path / "eval"), "--eval-only", "--model-dir", str(out),
                    "--load-epoch", "1", *FEW, backend=backend)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (tmp_path / "eval" / "log.txt").read_text()
    assert f"Load {out}/prompt_learner/model.pth.tar-1 to prompt_learner (epoch=1)" in log
    assert accuracy(log) == trained_accuracy  # one epoch: the best model is the last one


def test_eval_only_of_the_best_val_checkpoint(trained_run, tmp_path):
    backend, data, out, trained_accuracy = trained_run
    val_result = torch.load(out / "prompt_learner" / "model-best.pth.tar", weights_only=True)["val_result"]
    proc = train_py(data, "--output-dir", str(tmp_path / "eval"), "--eval-only", "--model-dir", str(out), *FEW,
                    "TEST.FINAL_MODEL", "best_val", backend=backend)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (tmp_path / "eval" / "log.txt").read_text()
    assert f"model-best.pth.tar to prompt_learner (epoch=1, val_result={val_result:.1f})" in log
    assert accuracy(log) == trained_accuracy


def test_eval_only_without_model_dir_is_an_error_unless_no_load(trained_run, tmp_path):
    backend, data, _, _ = trained_run
    proc = train_py(data, "--output-dir", str(tmp_path / "eval"), "--eval-only", *FEW, backend=backend)
    assert proc.returncode == 2
    assert "--eval-only without --model-dir" in proc.stderr and "--no-load" in proc.stderr
    assert "* accuracy" not in (tmp_path / "eval" / "log.txt").read_text()
    proc = train_py(data, "--output-dir", str(tmp_path / "untrained"), "--eval-only", "--no-load", *FEW, backend=backend)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "* accuracy" in (tmp_path / "untrained" / "log.txt").read_text()


def test_eval_only_of_a_mismatching_checkpoint_names_keys_and_config(trained_run, tmp_path):
    """The run's fingerprint names the key first; a model folder without one (CoOp's, converted, older
    runs) stops at the checkpoint's keys."""
    backend, data, out, _ = trained_run
    tvp_off = ["TRAINER.MUTUAL_PROMPT.TVP.ENABLED", "False"]
    proc = train_py(data, "--output-dir", str(tmp_path / "eval"), "--eval-only", "--model-dir", str(out),
                    "--load-epoch", "1", *FEW, *tvp_off, backend=backend)
    assert proc.returncode == 2
    assert "(TRAINER.MUTUAL_PROMPT.TVP.ENABLED: True trained, False now)" in proc.stderr
    unfingerprinted = shutil.copytree(out, tmp_path / "unfingerprinted")
    os.remove(unfingerprinted / FINGERPRINT_FILE)
    proc = train_py(data, "--output-dir", str(tmp_path / "eval2"), "--eval-only", "--model-dir", str(unfingerprinted),
                    "--load-epoch", "1", *FEW, *tvp_off, backend=backend)
    assert proc.returncode == 2
    assert "unexpected keys (in the file, not in the model): tvp.base_tokens, tvp.proj.weight, tvp.proj.bias" in proc.stderr
    assert "TRAINER.MUTUAL_PROMPT.TVP.ENABLED: checkpoint True, config False" in proc.stderr


def build(data, out, *opts: str):
    args = train.build_parser().parse_args(["--root", str(data), *TOY, "--output-dir", str(out), *FEW, *opts])
    return build_trainer(train.setup_cfg(args))


@pytest.fixture(scope="module")
def writer(tmp_path_factory):
    """A trainer (built-in engine) trained one epoch, with the checkpoint it wrote."""
    tmp = tmp_path_factory.mktemp("writer")
    torch.manual_seed(1)
    trainer = build(tmp / "data", tmp / "out", "TEST.NO_TEST", "True")
    trainer.train()
    return trainer, tmp


def test_matching_checkpoint_gives_the_writers_logits_exactly(writer):
    trainer, tmp = writer
    images = next(iter(trainer.test_loader))["img"]
    with torch.no_grad():
        expected = trainer.model_inference(images)
    torch.manual_seed(2)  # other initial prompts
    reader = build(tmp / "data", tmp / "reader")
    reader.load_model(str(tmp / "out"), epoch=1)
    with torch.no_grad():
        assert torch.equal(reader.model_inference(images), expected)


@pytest.mark.parametrize("opts, differences", [
    (["TRAINER.MUTUAL_PROMPT.FTP.MODE", "shared"],
     ["shape mismatches: ftp.meta_net.linear2.weight: file (256, 8) vs model (64, 8)",
      "TRAINER.MUTUAL_PROMPT.FTP.MODE: checkpoint fine, config shared"]),
    (["TRAINER.MUTUAL_PROMPT.FTP.MODE", "none"],
     ["unexpected keys (in the file, not in the model): ftp.meta_net.linear1.weight",
      "TRAINER.MUTUAL_PROMPT.FTP.MODE: checkpoint fine, config none"]),
    (["TRAINER.MUTUAL_PROMPT.TVP.N_TOKENS", "2", "TRAINER.MUTUAL_PROMPT.TVP.DEPTH", "3"],
     ["tvp.base_tokens: file (1, 4, 128) vs model (3, 2, 128)", "TVP.DEPTH: checkpoint 1, config 3",
      "TVP.N_TOKENS: checkpoint 4, config 2"]),
    (["TRAINER.MUTUAL_PROMPT.CTX_INIT", "a blurry photo of a"],
     ["ctx: file (4, 64) vs model (5, 64)", "N_CTX / CTX_INIT (context tokens): checkpoint 4, config 5"]),
])
def test_mismatching_checkpoint_is_an_error_naming_keys_and_config(writer, opts, differences):
    _, tmp = writer
    reader = build(tmp / "data", tmp / "reader", *opts)
    with pytest.raises(StateDictMismatchError) as info:
        reader.load_model(str(tmp / "out"), epoch=1)
    message = str(info.value)
    assert message.startswith(f"{tmp / 'out' / 'prompt_learner' / 'model.pth.tar-1'} does not match")
    for difference in differences:
        assert difference in message


def test_missing_epoch_lists_the_checkpoints_there(writer):
    _, tmp = writer
    reader = build(tmp / "data", tmp / "reader")
    with pytest.raises(FileNotFoundError, match=r"model.pth.tar-7.*--load-epoch 7.*holds: model.pth.tar-1"):
        reader.load_model(str(tmp / "out"), epoch=7)
