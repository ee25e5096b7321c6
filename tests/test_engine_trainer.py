"""The built-in TrainerX loop: log and checkpoint layout, resume, eval-only, schedules, DDP."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mutual_prompt.runtime import (
    DATASET_REGISTRY,
    TRAINER_REGISTRY,
    DatasetBase,
    build_optimizer,
    build_trainer,
    get_cfg_default,
    load_checkpoint,
    save_checkpoint,
)
from mutual_prompt.runtime.evaluation import macro_f1
from mutual_prompt.run.lr_schedulers import build_lr_scheduler
from helpers.image_tree import make_datums
from helpers.tiny_trainer import CLASSES, TinyLinear, TrainerTestSet, make_cfg, run, trainer_test_images


@TRAINER_REGISTRY.register()
class NaNInEpoch2Batch3(TinyLinear):
    """TinyLinear whose loss turns NaN at the third batch of the second epoch."""

    def forward_backward(self, batch):
        img, label = self.parse_batch_train(batch)
        loss = F.cross_entropy(self.model(self.features(img)), label)
        if (self.epoch, self.batch_idx) == (1, 2):
            loss = loss * float("nan")
        self.model_backward_and_update(loss)
        return {"loss": loss.item()}


def opt(**kw):
    cfg = get_cfg_default()
    for k, v in kw.items():
        setattr(cfg.OPTIM, k, v)
    return cfg.OPTIM


def lrs(optim_cfg, epochs):
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=optim_cfg.LR)
    sched = build_lr_scheduler(optimizer, optim_cfg)
    out = []
    for _ in range(epochs):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        sched.step()
    return out


def test_cosine_with_constant_warmup_matches_dassls_sequence():
    seq = lrs(opt(LR=0.002, MAX_EPOCH=4, LR_SCHEDULER="cosine", WARMUP_EPOCH=1, WARMUP_TYPE="constant", WARMUP_CONS_LR=1e-5), 5)
    import math

    expected = [1e-5, 0.002] + [0.002 * (1 + math.cos(math.pi * e / 4)) / 2 for e in (1, 2, 3)]
    assert seq == pytest.approx(expected)


def test_linear_warmup_then_single_and_multi_step():
    seq = lrs(opt(LR=1.0, MAX_EPOCH=6, LR_SCHEDULER="single_step", STEPSIZE=(2,), GAMMA=0.1, WARMUP_EPOCH=2, WARMUP_TYPE="linear", WARMUP_MIN_LR=0.01), 6)
    assert seq == pytest.approx([0.01, 0.5, 1.0, 1.0, 0.1, 0.1])
    seq = lrs(opt(LR=1.0, MAX_EPOCH=5, LR_SCHEDULER="multi_step", STEPSIZE=(1, 3), GAMMA=0.5), 5)
    assert seq == pytest.approx([1.0, 0.5, 0.5, 0.25, 0.25])


def test_scheduler_state_dict_round_trip_continues_identically():
    cfg = opt(LR=0.1, MAX_EPOCH=6, LR_SCHEDULER="cosine", WARMUP_EPOCH=1, WARMUP_TYPE="linear")
    full = lrs(cfg, 6)
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=cfg.LR)
    sched = build_lr_scheduler(optimizer, cfg)
    for _ in range(3):
        optimizer.step()
        sched.step()
    state = sched.state_dict()
    optimizer2 = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=cfg.LR)
    sched2 = build_lr_scheduler(optimizer2, cfg)
    sched2.load_state_dict(state)
    for _ in range(2):
        optimizer2.step()
        sched2.step()
    assert optimizer2.param_groups[0]["lr"] == pytest.approx(full[5])


def test_bad_optimizer_and_scheduler_names_are_named():
    with pytest.raises(ValueError, match="OPTIM.NAME.*'sgdd'"):
        build_optimizer(nn.Linear(1, 1), opt(NAME="sgdd"))
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="OPTIM.LR_SCHEDULER.*'cos'"):
        build_lr_scheduler(optimizer, opt(LR_SCHEDULER="cos"))


def test_macro_f1_matches_hand_computation():
    # class 0: tp=1 fp=1 fn=1 -> 0.5; class 1: tp=1 fp=0 fn=1 -> 2/3; class 2: tp=0 fp=1 fn=0 -> 0
    assert macro_f1([0, 0, 1, 1], [0, 2, 1, 0]) == pytest.approx((0.5 + 2 / 3 + 0) / 3)


def test_train_writes_dassl_layout_and_result_block(tmp_path):
    out = tmp_path / "out"
    trainer = run(make_cfg(tmp_path, out))
    assert (out / "linear" / "model.pth.tar-3").is_file()
    assert (out / "linear" / "checkpoint").read_text().strip() == "model.pth.tar-3"
    assert trainer.test() > 60.0


def test_log_txt_holds_epoch_lines_and_result(tmp_path, capsys):
    from mutual_prompt.runtime import setup_logger

    out = tmp_path / "out"
    old = sys.stdout
    try:
        setup_logger(str(out))
        run(make_cfg(tmp_path, out, epochs=2))
    finally:
        sys.stdout.flush()
        sys.stdout = old
    text = (out / "log.txt").read_text()
    assert "epoch [1/2] batch [2/4]" in text and " lr " in text and " eta " in text
    assert "Finish training" in text and "=> result" in text and "* accuracy:" in text and "* macro_f1:" in text


def test_a_nan_loss_names_epoch_and_batch_counted_from_1_as_the_progress_lines(tmp_path):
    with pytest.raises(FloatingPointError) as err:
        run(make_cfg(tmp_path, tmp_path / "out", epochs=3, **{"TRAINER.NAME": "NaNInEpoch2Batch3"}))
    assert str(err.value) == "Loss is infinite or NaN (epoch [2/3] batch [3/4])"


def test_best_val_writes_model_best(tmp_path):
    out = tmp_path / "out"
    run(make_cfg(tmp_path, out, epochs=2, **{"TEST.FINAL_MODEL": "best_val"}))
    assert (out / "linear" / "model-best.pth.tar").is_file()


def test_resume_gives_the_same_final_weights_as_an_uninterrupted_run(tmp_path):
    straight = run(make_cfg(tmp_path, tmp_path / "straight", epochs=3))
    interrupted_dir = tmp_path / "interrupted"
    run(make_cfg(tmp_path, interrupted_dir, epochs=3, **{"TRAIN.CHECKPOINT_FREQ": 1, "OPTIM.MAX_EPOCH": 3}))
    # Simulate a crash after epoch 2: drop the last checkpoint and point the pointer file at epoch 2.
    os.remove(interrupted_dir / "linear" / "model.pth.tar-3")
    (interrupted_dir / "linear" / "checkpoint").write_text("model.pth.tar-2\n")
    resumed = run(make_cfg(tmp_path, interrupted_dir, epochs=3))
    assert resumed.start_epoch == 2
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_eval_only_loads_the_epoch_and_reproduces_the_accuracy(tmp_path):
    out = tmp_path / "out"
    trained = run(make_cfg(tmp_path, out, epochs=2))
    expected = trained.test()
    fresh = build_trainer(make_cfg(tmp_path, tmp_path / "eval"))
    fresh.load_model(str(out), epoch=2)
    assert fresh.test() == pytest.approx(expected)
    with pytest.raises(FileNotFoundError, match="model.pth.tar-7"):
        fresh.load_model(str(out), epoch=7)


def test_eval_only_of_a_best_val_checkpoint_prints_epoch_and_val_result(tmp_path, capsys):
    out = tmp_path / "out"
    run(make_cfg(tmp_path, out, epochs=2, **{"TEST.FINAL_MODEL": "best_val"}))
    best = load_checkpoint(str(out / "linear" / "model-best.pth.tar"))
    capsys.readouterr()
    build_trainer(make_cfg(tmp_path, tmp_path / "eval")).load_model(str(out))
    printed = capsys.readouterr().out
    assert f"model-best.pth.tar to linear (epoch={best['epoch']}, val_result={best['val_result']:.1f})" in printed


def test_load_model_is_strict_and_names_every_difference(tmp_path):
    out = tmp_path / "out"
    trained = run(make_cfg(tmp_path, out, epochs=1))
    state = dict(trained.model.state_dict(), extra=torch.zeros(1))
    state["weight"] = torch.zeros(5, 3)
    del state["bias"]
    save_checkpoint({"state_dict": state, "epoch": 1}, str(tmp_path / "bad" / "linear"))
    fresh = build_trainer(make_cfg(tmp_path, tmp_path / "eval"))
    before = {k: v.clone() for k, v in fresh.model.state_dict().items()}
    with pytest.raises(ValueError, match=r"(?s)model.pth.tar-1 does not match.*missing keys .*: bias.*"
                                         r"unexpected keys .*: extra.*weight: file \(5, 3\) vs model \(3, 3\)"):
        fresh.load_model(str(tmp_path / "bad"), epoch=1)
    assert all(torch.equal(before[k], v) for k, v in fresh.model.state_dict().items())  # nothing half-loaded


def test_load_model_without_a_directory_refuses_learnable_weights(tmp_path):
    trainer = build_trainer(make_cfg(tmp_path, tmp_path / "eval"))
    with pytest.raises(ValueError, match="--eval-only without --model-dir.*TinyLinear.*--no-load"):
        trainer.load_model("")
    trainer.model.requires_grad_(False)  # nothing to learn: nothing to load
    trainer.load_model("")


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    state = {"state_dict": {"w": torch.ones(2)}, "epoch": 1}
    fpath = save_checkpoint(state, str(tmp_path), model_name="model.pth.tar-1")

    def broken_save(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"state_dict": {"w": torch.zeros(2)}, "epoch": 1}, str(tmp_path), model_name="model.pth.tar-1")
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(fpath)["state_dict"]["w"], torch.ones(2))
    assert [f for f in os.listdir(tmp_path) if f.endswith(".tmp")] == []


DDP_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    sys.path[:0] = [{repo!r}, os.path.join({repo!r}, "tests")]
    import torch
    import helpers.tiny_trainer as t
    from mutual_prompt.runtime import setup_logger
    cfg = t.make_cfg({root!r}, {out!r}, epochs=2)
    setup_logger(cfg.OUTPUT_DIR)
    trainer = t.run(cfg)
    acc = trainer.test()
    w = trainer.model.weight.detach().flatten().tolist()
    with open(os.path.join({out!r}, "rank%s.json" % os.environ["RANK"]), "w") as f:
        json.dump({{"acc": acc, "w": w, "n_test": len(trainer.test_loader.sampler)}}, f)
    """
)


@pytest.mark.slow
def test_two_process_gloo_ddp_on_cpu(tmp_path, repo_root):
    import json

    out = tmp_path / "ddp"
    out.mkdir()
    TrainerTestSet(make_cfg(tmp_path, out))  # generate the images before two processes read them
    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_SCRIPT.format(repo=repo_root, root=str(tmp_path), out=str(out)))
    env = dict(os.environ, MUTUAL_PROMPT_BACKEND="builtin", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517", str(script)],
        cwd=repo_root, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["w"] == r1["w"]  # gradients averaged: both ranks hold the same weights
    assert r0["acc"] == r1["acc"]  # metrics reduced over ranks
    assert r0["n_test"] + r1["n_test"] == sum(CLASSES.values())  # disjoint shards, no padding
    assert (out / "linear" / "model.pth.tar-2").is_file()
    assert "Finish training" in (out / "log.txt").read_text()
    assert not any(n.startswith("log.txt-") for n in os.listdir(out))  # only rank 0 logs
    # The reduced accuracy equals a single-process evaluation of the same weights.
    single = build_trainer(make_cfg(tmp_path, tmp_path / "single"))
    single.load_model(str(out), epoch=2)
    assert single.test() == pytest.approx(r0["acc"])


VAL_BY_EPOCH = [40.0, 90.0, 70.0, 60.0, 80.0]


@TRAINER_REGISTRY.register()
class ScriptedValLinear(TinyLinear):
    """TinyLinear whose validation accuracy follows VAL_BY_EPOCH: the best epoch is the second."""

    def test(self, split=None):
        if split == "val":
            return VAL_BY_EPOCH[self.epoch]
        return super().test(split)


def _simulate_kill_after(out, epoch):
    """As if killed during epoch ``epoch + 1``: later checkpoints never written, the pointer at ``epoch``."""
    ckpt_dir = out / "linear"
    for name in os.listdir(ckpt_dir):
        if name.startswith("model.pth.tar-") and int(name.rsplit("-", 1)[1]) > epoch:
            os.remove(ckpt_dir / name)
    (ckpt_dir / "checkpoint").write_text(f"model.pth.tar-{epoch}\n")


def test_best_val_resume_keeps_the_best_epoch_and_the_final_result(tmp_path):
    opts = {"TEST.FINAL_MODEL": "best_val", "TRAINER.NAME": "ScriptedValLinear", "TRAIN.CHECKPOINT_FREQ": 1}
    straight = run(make_cfg(tmp_path, tmp_path / "straight", epochs=5, **opts))
    straight_best = load_checkpoint(str(tmp_path / "straight" / "linear" / "model-best.pth.tar"))
    assert straight_best["epoch"] == 2

    interrupted = tmp_path / "interrupted"
    run(make_cfg(tmp_path, interrupted, epochs=5, **opts))
    _simulate_kill_after(interrupted, 3)  # after the best epoch (2)
    resumed = run(make_cfg(tmp_path, interrupted, epochs=5, **opts))
    assert resumed.start_epoch == 3
    assert (resumed.best_result, resumed.best_epoch) == (90.0, 2)
    best = load_checkpoint(str(interrupted / "linear" / "model-best.pth.tar"))
    assert best["epoch"] == 2 and best["val_result"] == 90.0
    assert all(torch.equal(a, b) for a, b in zip(straight_best["state_dict"].values(), best["state_dict"].values()))
    assert resumed.test() == straight.test()


def test_best_val_resume_from_a_checkpoint_without_the_best_fields_reads_model_best(tmp_path):
    """Checkpoints written by Dassl (or before this field existed) hold no best_result: model-best's
    val_result and epoch are used."""
    opts = {"TEST.FINAL_MODEL": "best_val", "TRAINER.NAME": "ScriptedValLinear", "TRAIN.CHECKPOINT_FREQ": 1}
    out = tmp_path / "out"
    run(make_cfg(tmp_path, out, epochs=5, **opts))
    _simulate_kill_after(out, 3)
    path = str(out / "linear" / "model.pth.tar-3")
    state = load_checkpoint(path)
    del state["best_result"], state["best_epoch"]
    torch.save(state, path)
    resumed = run(make_cfg(tmp_path, out, epochs=5, **opts))
    assert (resumed.best_result, resumed.best_epoch) == (90.0, 2)
    assert load_checkpoint(str(out / "linear" / "model-best.pth.tar"))["epoch"] == 2


@pytest.mark.parametrize("key, value, message", [
    ("MODEL.HEAD.NAME", "mlp", "MODEL.HEAD.NAME 'mlp': the built-in runtime builds no head"),
    ("INPUT.TRANSFORMS", ("random_flip", "cutout"), "INPUT.TRANSFORMS: 'cutout' is a Dassl transform that the "
                                                    "built-in runtime does not implement"),
    ("DATALOADER.TRAIN_X.SAMPLER", "RandomDomainSampler", "DATALOADER.TRAIN_X.SAMPLER 'RandomDomainSampler' is not "
                                                          "implemented by the built-in runtime"),
])
def test_building_a_trainer_refuses_a_dassl_feature_before_reading_the_dataset(tmp_path, key, value, message):
    cfg = make_cfg(tmp_path, tmp_path / "out", **{key: value})
    with pytest.raises(ValueError, match=message):
        build_trainer(cfg)
    assert not (tmp_path / "trainer_test_set").exists()


@DATASET_REGISTRY.register()
class LabelGapSet(DatasetBase):
    """TrainerTestSet's images, with a test label beyond the classes and class 1 missing from train."""

    def __init__(self, cfg):
        paths = trainer_test_images(cfg)
        items = make_datums(paths, classnames=list(CLASSES))
        if cfg.DATASET.SUBSAMPLE_CLASSES == "base":  # the "missing class" variant
            super().__init__(train_x=[d for d in items if d.label != 1], test=items)
        else:
            bad = make_datums(paths[:1], classnames=list(CLASSES))[0]
            bad._label = 7
            super().__init__(train_x=items, test=items + [bad])


def test_the_data_manager_checks_every_label_against_the_classes(tmp_path):
    from mutual_prompt.runtime import DataManager

    cfg = make_cfg(tmp_path, tmp_path / "out", **{"DATASET.NAME": "LabelGapSet"})
    with pytest.raises(ValueError, match=r"dataset LabelGapSet: 5 of the 8 classes have no train_x items .*highest "
                                         r"label of any split: 7, in the test split"):
        DataManager(cfg)
    cfg = make_cfg(tmp_path, tmp_path / "out", **{"DATASET.NAME": "LabelGapSet", "DATASET.SUBSAMPLE_CLASSES": "base"})
    with pytest.raises(ValueError, match=r"dataset LabelGapSet: 1 of the 3 classes have no train_x items \(label\(s\) 1\)"):
        DataManager(cfg)
