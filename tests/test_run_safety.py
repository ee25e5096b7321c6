"""One run per output directory, fingerprinted resumes, repaired checkpoint pointers, leftovers of
killed runs, and SIGINT/SIGTERM, through train.py."""
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import train
from helpers.runs import python, zeroshot_args
from mutual_prompt.clip.loader import openai_sha256, toy_weights_file
from mutual_prompt.run.checkpoints import (
    newest_checkpoint,
    repair_checkpoint_pointers,
    resume_from_checkpoint,
    save_checkpoint,
)
from mutual_prompt.run.fingerprint import (
    FINGERPRINT_FILE,
    FingerprintCheck,
    FingerprintMismatch,
    check_resume_fingerprint,
    fingerprint_config,
)
from mutual_prompt.run.output_dir import LOCK_FILE, lock_output_dir, remove_stale_temp_files

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def toy_cfg(*opts: str):
    args = train.build_parser().parse_args([
        "--trainer", "MutualPrompt", "--seed", "1", "--dataset-config-file", "configs/datasets/toy_shapes.yaml",
        "--config-file", "configs/trainers/MutualPrompt/toy.yaml", *opts])
    cwd = os.getcwd()
    os.chdir(REPO_ROOT)
    try:
        return train.setup_cfg(args)
    finally:
        os.chdir(cwd)


def write_fingerprint(directory, cfg) -> None:
    """The fingerprint a training run with ``cfg`` writes into ``directory``."""
    FingerprintCheck(fingerprint_config(cfg)).write(str(directory))


# 2. The output-directory lock


def test_a_second_run_into_a_locked_output_dir_stops_at_once(caltech_root, tiny_clip_file, tmp_path, capsys):
    out = tmp_path / "out"
    holder = lock_output_dir(str(out))  # as a first run does, for its whole life
    try:
        with pytest.raises(SystemExit) as exit_info:
            train.main(zeroshot_args(caltech_root, tiny_clip_file, str(out), "--no-train", "--seed", "2"))
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert f"Output directory {out} is in use by another run (pid {os.getpid()} on host {socket.gethostname()}" in err
        assert not (out / "log.txt").exists()  # nothing of the second run was written
    finally:
        holder.release()
    assert (out / LOCK_FILE).read_text() == ""  # a free lock names nobody


def test_a_lock_file_left_by_a_dead_run_is_free(caltech_root, tiny_clip_file, tmp_path):
    """Whatever a lock file says, nobody holds it once its process is gone: the next run goes ahead."""
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / LOCK_FILE).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": "earlier"}))
    train.main(zeroshot_args(caltech_root, tiny_clip_file, str(out), "--no-train"))
    assert (out / "log.txt").is_file()
    assert (out / LOCK_FILE).read_text() == ""


def test_the_lock_is_held_by_a_live_process_until_it_exits(tmp_path):
    out = tmp_path / "out"
    script = ("import sys, time; from mutual_prompt.run.output_dir import lock_output_dir; "
              f"lock_output_dir({str(out)!r}); print('locked', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RuntimeError, match=f"pid {holder.pid} on host"):
            lock_output_dir(str(out))
    finally:
        holder.kill()  # SIGKILL: the kernel drops its flock; the file stays behind, stale
        holder.wait()
    assert (out / LOCK_FILE).exists()
    lock_output_dir(str(out)).release()


# 5. The run fingerprint


def test_resuming_with_another_seed_is_refused_naming_the_key(caltech_root, tiny_clip_file, tmp_path, capsys):
    out = tmp_path / "out"
    seed1 = train.setup_cfg(train.build_parser().parse_args(zeroshot_args(caltech_root, tiny_clip_file, str(out),
                                                                          "--seed", "1")))
    write_fingerprint(out, seed1)
    (out / "prompt_learner").mkdir()
    (out / "prompt_learner" / "checkpoint").write_text("model.pth.tar-5\n")
    with pytest.raises(SystemExit) as exit_info:
        train.main(zeroshot_args(caltech_root, tiny_clip_file, str(out), "--seed", "2"))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "holds a run with a different configuration (SEED: 1 there, 2 now)" in err and "--force-resume" in err
    assert not (out / "log.txt").exists()


def test_force_resume_skips_the_fingerprint_check(caltech_root, tiny_clip_file, tmp_path, monkeypatch):
    out = tmp_path / "out"
    seed1 = train.setup_cfg(train.build_parser().parse_args(zeroshot_args(caltech_root, tiny_clip_file, str(out),
                                                                          "--seed", "1")))
    write_fingerprint(out, seed1)
    calls = []
    monkeypatch.setattr(train, "run", lambda args, cfg, training, note: calls.append(cfg.SEED))
    train.main(zeroshot_args(caltech_root, tiny_clip_file, str(out), "--seed", "2", "--force-resume"))
    assert calls == [2]


def test_fingerprint_names_every_differing_key(tmp_path):
    write_fingerprint(tmp_path, toy_cfg("DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "base"))
    check_resume_fingerprint(str(tmp_path), toy_cfg("DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "base",
                                                    "TRAIN.CHECKPOINT_FREQ", "1"), force=False)  # not outcome-deciding
    other = toy_cfg("DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES", "base",
                    "TRAINER.MUTUAL_PROMPT.FTP.MODE", "shared")
    with pytest.raises(FingerprintMismatch) as e:
        check_resume_fingerprint(str(tmp_path), other, force=False)
    assert "DATASET.NUM_SHOTS: 16 there, 4 now" in str(e.value)
    assert "TRAINER.MUTUAL_PROMPT.FTP.MODE: 'fine' there, 'shared' now" in str(e.value)
    assert set(fingerprint_config(other)) >= {"SEED", "DATASET.NAME", "TRAINER.NAME", "MODEL.BACKBONE.NAME"}


def test_an_unreadable_fingerprint_is_named(tmp_path):
    (tmp_path / FINGERPRINT_FILE).write_text("{trunc")
    with pytest.raises(FingerprintMismatch, match=rf"{FINGERPRINT_FILE} is not valid JSON.*--force-resume"):
        check_resume_fingerprint(str(tmp_path), toy_cfg(), force=False)


def test_checkpoints_without_a_fingerprint_give_a_note(tmp_path):
    (tmp_path / "prompt_learner").mkdir()
    (tmp_path / "prompt_learner" / "checkpoint").write_text("model.pth.tar-1\n")
    assert f"no {FINGERPRINT_FILE}" in check_resume_fingerprint(str(tmp_path), toy_cfg(), force=False).log_lines()[0]


def test_keys_that_cannot_change_the_result_do_not_block_a_resume(tmp_path):
    write_fingerprint(tmp_path, toy_cfg())
    check = check_resume_fingerprint(str(tmp_path), toy_cfg(
        "DATALOADER.NUM_WORKERS", "3", "TRAIN.PRINT_FREQ", "1", "TRAIN.CHECKPOINT_FREQ", "1", "USE_CUDA", "False",
        "DATASET.ROOT", "/elsewhere", "TRAINER.MUTUAL_PROMPT.TEXT_CHUNK", "7",
        "TRAINER.MUTUAL_PROMPT.TEXT_SHARED_PREFIX", "False", "TRAINER.MUTUAL_PROMPT.TEXT_TRUNCATE", "False",
        "TRAINER.MUTUAL_PROMPT.TEXT_CHECKPOINT", "True"), force=False)
    assert check.changed == [] and check.log_lines() == []


def test_a_key_added_to_the_config_is_fingerprinted_unless_excluded():
    cfg = toy_cfg()
    cfg.defrost()
    cfg.OPTIM.SOME_NEW_KEY = 0.5
    cfg.TRAINER.MUTUAL_PROMPT.SOME_NEW_KEY = "x"
    assert {"OPTIM.SOME_NEW_KEY", "TRAINER.MUTUAL_PROMPT.SOME_NEW_KEY"} <= set(fingerprint_config(cfg))
    assert {"OPTIM.MAX_EPOCH", "OPTIM.LR", "DATALOADER.TRAIN_X.BATCH_SIZE", "DATALOADER.TRAIN_X.SAMPLER", "INPUT.SIZE",
            "MODEL.BACKBONE.PATH", "TEST.FINAL_MODEL", "TEST.SPLIT", "TEST.EVALUATOR"} <= set(fingerprint_config(cfg))


# 5. The run fingerprint, on a trained toy run: resume, split file and eval-only

TOY_FILES = ["--trainer", "MutualPrompt", "--seed", "1",
             "--dataset-config-file", os.path.join(REPO_ROOT, "configs", "datasets", "toy_shapes.yaml"),
             "--config-file", os.path.join(REPO_ROOT, "configs", "trainers", "MutualPrompt", "toy.yaml")]
# One shot of the 32 base classes, one epoch; results on the validation split (32 images) for speed.
ONE_EPOCH = ["DATASET.NUM_SHOTS", "1", "DATASET.SUBSAMPLE_CLASSES", "base", "OPTIM.MAX_EPOCH", "1", "TEST.SPLIT", "val",
             "USE_CUDA", "False"]


def toy_args(root, out, *flags: str, opts=()) -> list:
    """train.py's arguments for the one-epoch toy run into ``out``; ``opts`` override its keys."""
    return ["--root", str(root), *TOY_FILES, "--output-dir", str(out), *flags, *ONE_EPOCH, *opts]


def newest_log(out) -> str:
    sys.stdout.flush()  # train.main's log tee stays open in this process
    return max(out.glob("log.txt*"), key=os.path.getmtime).read_text()


def error_of(argv, capsys) -> str:
    """The message of the one line ``<prog>: error: <message>`` train.py ends with (exit status 2)."""
    with pytest.raises(SystemExit) as exit_info:
        train.main(argv)
    assert exit_info.value.code == 2
    line = capsys.readouterr().err.splitlines()[-1]  # after any progress bars
    prog = f"{train.build_parser().prog}: error: "
    assert line.startswith(prog), line
    return line[len(prog):]


@pytest.fixture(scope="module")
def toy_run(toy_data, tmp_path_factory):
    """A finished one-epoch MutualPrompt run on ToyShapes (seed 1), with its fingerprint."""
    out = tmp_path_factory.mktemp("toy_run") / "out"
    train.main(toy_args(toy_data, out))
    assert (out / "prompt_learner" / "model.pth.tar-1").is_file() and (out / FINGERPRINT_FILE).is_file()
    return out


@pytest.fixture
def run_copy(toy_run, tmp_path):
    """A copy of ``toy_run`` to resume into."""
    return shutil.copytree(toy_run, tmp_path / "out")


@pytest.mark.slow
@pytest.mark.parametrize("key, old, new", [("OPTIM.MAX_EPOCH", "1", "2"), ("OPTIM.LR", "0.002", "0.01"),
                                           ("DATALOADER.TRAIN_X.BATCH_SIZE", "4", "8")])
def test_resuming_with_another_schedule_or_batch_size_is_refused_naming_both_values(
        toy_data, run_copy, capsys, key, old, new):
    fingerprint = (run_copy / FINGERPRINT_FILE).read_bytes()
    logs = sorted(run_copy.glob("log.txt*"))
    err = error_of(toy_args(toy_data, run_copy, opts=[key, new]), capsys)
    assert err.startswith(f"{run_copy} holds a run with a different configuration "
                          f"({key}: {old} there, {new} now). Resuming would mix two runs: use another --output-dir")
    assert "pass --force-resume to continue this one with the new values" in err
    assert (run_copy / FINGERPRINT_FILE).read_bytes() == fingerprint and sorted(run_copy.glob("log.txt*")) == logs


@pytest.mark.slow
def test_force_resume_continues_and_logs_and_records_each_change(toy_data, run_copy):
    train.main(toy_args(toy_data, run_copy, "--force-resume", opts=["OPTIM.MAX_EPOCH", "2", "OPTIM.LR", "0.001"]))
    assert (run_copy / "prompt_learner" / "model.pth.tar-2").is_file()
    log = newest_log(run_copy)
    assert "Resuming with a changed configuration (--force-resume): OPTIM.LR 0.002 -> 0.001\n" in log
    assert "Resuming with a changed configuration (--force-resume): OPTIM.MAX_EPOCH 1 -> 2\n" in log
    assert (f"Note: the optimizer and learning-rate scheduler are restored from "
            f"{run_copy / 'prompt_learner' / 'model.pth.tar-1'}, so OPTIM.LR does not take effect; OPTIM.MAX_EPOCH "
            "sets how many epochs run, on the restored schedule made for 1 (to train with the new values from the "
            "start, use another --output-dir)\n") in log
    stored = json.loads((run_copy / FINGERPRINT_FILE).read_text())
    assert stored["config"]["OPTIM.MAX_EPOCH"] == 2 and stored["config"]["OPTIM.LR"] == 0.001
    entry = stored["history"][-1]
    assert entry["changed"] == {"OPTIM.LR": {"from": 0.002, "to": 0.001}, "OPTIM.MAX_EPOCH": {"from": 1, "to": 2}}
    assert entry["resumed_from"] == str(run_copy / "prompt_learner" / "model.pth.tar-1")


OLD_FINGERPRINT_KEYS = ("SEED", "DATASET.NAME", "DATASET.SUBSAMPLE_CLASSES", "DATASET.NUM_SHOTS",
                        "DATASET.SOURCE_DOMAINS", "DATASET.TARGET_DOMAINS", "MODEL.BACKBONE.NAME")


@pytest.mark.slow
def test_a_fingerprint_of_the_smaller_key_set_still_checks_its_keys_and_resumes_with_a_note(toy_data, run_copy,
                                                                                            capsys):
    """A flat fingerprint of SEED, the dataset keys, the backbone and TRAINER.*, as run folders hold."""
    config = json.loads((run_copy / FINGERPRINT_FILE).read_text())["config"]
    old = {k: v for k, v in config.items() if k in OLD_FINGERPRINT_KEYS or k.startswith("TRAINER.")}
    old.update({"TRAINER.MUTUAL_PROMPT.TEXT_CHUNK": 2000, "TRAINER.MUTUAL_PROMPT.TEXT_TRUNCATE": True})
    (run_copy / FINGERPRINT_FILE).write_text(json.dumps(old))
    err = error_of(toy_args(toy_data, run_copy, opts=["TRAINER.MUTUAL_PROMPT.TVP.TOPK", "3"]), capsys)
    assert "(TRAINER.MUTUAL_PROMPT.TVP.TOPK: 5 there, 3 now)" in err
    train.main(toy_args(toy_data, run_copy, opts=["OPTIM.MAX_EPOCH", "2"]))
    assert (run_copy / "prompt_learner" / "model.pth.tar-2").is_file()
    note = next(line for line in newest_log(run_copy).splitlines() if line.startswith("Note: "))
    assert note.startswith(f"Note: {run_copy / FINGERPRINT_FILE} lacks ")
    assert "so these could not be checked: " in note and "OPTIM.MAX_EPOCH" in note and "INPUT.SIZE" in note
    upgraded = json.loads((run_copy / FINGERPRINT_FILE).read_text())
    assert upgraded["config"]["OPTIM.MAX_EPOCH"] == 2 and "OPTIM.MAX_EPOCH" in upgraded["history"][-1]["unchecked"]


def file_sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_resuming_on_a_changed_split_file_is_refused_naming_both_hashes(toy_run, toy_data, tmp_path, capsys):
    data, out = tmp_path / "data", tmp_path / "out"
    shutil.copytree(os.path.join(toy_data, "toy_shapes"), data / "toy_shapes")
    train.main(toy_args(data, out))
    trained_on = json.loads((out / FINGERPRINT_FILE).read_text())["split_sha256"]
    split_file = data / "toy_shapes" / "split_toy_shapes.json"
    assert trained_on == file_sha256(split_file)
    split = json.loads(split_file.read_text())
    split["test"] = split["test"][:-1]  # one test image fewer
    split_file.write_text(json.dumps(split))
    shutil.rmtree(data / "toy_shapes" / "split_fewshot")  # as the stale few-shot cache's error says
    fingerprint = (out / FINGERPRINT_FILE).read_bytes()

    err = error_of(toy_args(data, out), capsys)
    match = re.search(rf"{out} holds a run made on another split: its split file had SHA-256 '{trained_on}', "
                      rf"{split_file} has '([0-9a-f]{{64}})' now\. Resuming would mix two runs: use another "
                      "--output-dir", err)
    assert match and match.group(1) != trained_on, err
    assert (out / FINGERPRINT_FILE).read_bytes() == fingerprint

    train.main(toy_args(data, out, "--force-resume", opts=["OPTIM.MAX_EPOCH", "2"]))
    assert (out / "prompt_learner" / "model.pth.tar-2").is_file()
    assert (f"Resuming with a changed configuration (--force-resume): split_sha256 '{trained_on}' -> "
            f"'{match.group(1)}'") in newest_log(out)
    stored = json.loads((out / FINGERPRINT_FILE).read_text())
    assert stored["split_sha256"] == match.group(1)
    assert stored["history"][-1]["changed"] == {"OPTIM.MAX_EPOCH": {"from": 1, "to": 2},
                                                "split_sha256": {"from": trained_on, "to": match.group(1)}}


@pytest.mark.slow
@pytest.mark.parametrize("key, value, difference, override", [
    ("TRAINER.MUTUAL_PROMPT.TVP.TEMP", "0.05", "0.01 trained, 0.05 now", "0.01"),
    ("TRAINER.MUTUAL_PROMPT.TVP.TOPK", "3", "5 trained, 3 now", "5"),
    # as many context tokens: the checkpoint loads without complaint
    ("TRAINER.MUTUAL_PROMPT.CTX_INIT", "a photo of the", "'a photo of a' trained, 'a photo of the' now",
     "'a photo of a'"),
])
def test_eval_only_with_other_values_shaping_the_output_is_refused(toy_data, toy_run, tmp_path, capsys,
                                                                    key, value, difference, override):
    err = error_of(toy_args(toy_data, tmp_path / "eval", "--eval-only", "--model-dir", str(toy_run),
                            "--load-epoch", "1", opts=[key, value]), capsys)
    assert err == (f"--model-dir {toy_run} was trained with other values of keys that shape the "
                   f"model's output ({key}: {difference}): the accuracy would not be that of the trained model. "
                   f"Set them to the trained values, e.g. append to the command: {key} {override}")
    assert not (tmp_path / "eval" / "log.txt").exists()



@pytest.mark.slow
def test_eval_only_with_another_backbone_is_refused_naming_both(toy_data, toy_run, tmp_path, capsys):
    err = error_of(toy_args(toy_data, tmp_path / "eval", "--eval-only", "--model-dir", str(toy_run), "--load-epoch",
                            "1", opts=["MODEL.BACKBONE.NAME", "ViT-B/16"]), capsys)
    assert err == (f"--model-dir {toy_run} was trained with other values of keys that shape the model's output "
                   "(MODEL.BACKBONE.ARCH: 'toy' trained, 'ViT-B/16' now; MODEL.BACKBONE.NAME: 'toy' trained, "
                   f"'ViT-B/16' now; MODEL.BACKBONE.SHA256: '{file_sha256(Path(toy_weights_file()))}' trained, "
                   f"'{openai_sha256('ViT-B/16')}' now): the accuracy would not be that of the trained model. Set "
                   "them to the trained values, e.g. append to the command: MODEL.BACKBONE.NAME toy")

@pytest.fixture(scope="module")
def toy_weights_files(tmp_path_factory):
    """(the toy CLIP's file copied to another folder, a file of the same architecture with other weights)."""
    folder = tmp_path_factory.mktemp("weights")
    moved = shutil.copy(toy_weights_file(), folder / "moved.pt")
    weights = torch.load(toy_weights_file(), weights_only=True)
    weights["logit_scale"] = weights["logit_scale"] + 1
    other = folder / "other.pt"
    torch.save(weights, other)
    return Path(moved), other


def test_the_same_weights_file_at_another_path_does_not_block_a_resume(tmp_path, toy_weights_files):
    moved, _ = toy_weights_files
    write_fingerprint(tmp_path, toy_cfg())
    check = check_resume_fingerprint(str(tmp_path), toy_cfg("MODEL.BACKBONE.PATH", str(moved)), force=False)
    assert check.changed == [] and check.log_lines() == []
    assert check.config["MODEL.BACKBONE.SHA256"] == file_sha256(Path(toy_weights_file()))


@pytest.mark.slow
def test_resuming_with_another_weights_file_is_refused_naming_both(toy_data, run_copy, toy_weights_files, capsys):
    _, other = toy_weights_files
    err = error_of(toy_args(toy_data, run_copy, opts=["MODEL.BACKBONE.PATH", str(other)]), capsys)
    assert err.startswith(f"{run_copy} holds a run with a different configuration (MODEL.BACKBONE.PATH: '' there, "
                          f"'{other}' now; MODEL.BACKBONE.SHA256: '{file_sha256(Path(toy_weights_file()))}' there, "
                          f"'{file_sha256(other)}' now). Resuming would mix two runs")


@pytest.mark.slow
def test_eval_only_with_another_weights_file_is_refused_naming_both(toy_data, toy_run, toy_weights_files, tmp_path,
                                                                     capsys):
    _, other = toy_weights_files
    err = error_of(toy_args(toy_data, tmp_path / "eval", "--eval-only", "--model-dir", str(toy_run), "--load-epoch",
                            "1", opts=["MODEL.BACKBONE.PATH", str(other)]), capsys)
    assert err == (f"--model-dir {toy_run} was trained with other values of keys that shape the model's output "
                   f"(MODEL.BACKBONE.PATH: '' trained, '{other}' now; MODEL.BACKBONE.SHA256: "
                   f"'{file_sha256(Path(toy_weights_file()))}' trained, '{file_sha256(other)}' now): the accuracy "
                   "would not be that of the trained model. Set them to the trained values, e.g. append to the "
                   "command: MODEL.BACKBONE.PATH ''")


@pytest.mark.slow
def test_eval_only_with_a_replaced_weights_file_names_the_trained_one(toy_data, run_copy, toy_weights_files, tmp_path,
                                                                      capsys):
    """The run was trained with the file at this path, which has been overwritten since."""
    _, other = toy_weights_files
    stored = json.loads((run_copy / FINGERPRINT_FILE).read_text())
    stored["config"]["MODEL.BACKBONE.PATH"] = str(other)
    (run_copy / FINGERPRINT_FILE).write_text(json.dumps(stored))
    err = error_of(toy_args(toy_data, tmp_path / "eval", "--eval-only", "--model-dir", str(run_copy), "--load-epoch",
                            "1", opts=["MODEL.BACKBONE.PATH", str(other)]), capsys)
    trained = stored["config"]["MODEL.BACKBONE.SHA256"]
    assert err.endswith(f"(MODEL.BACKBONE.SHA256: '{trained}' trained, '{file_sha256(other)}' now): the accuracy "
                        "would not be that of the trained model. MODEL.BACKBONE.PATH holds another file than the one "
                        f"the model was trained with: point it at the weights file with SHA-256 {trained}")


@pytest.mark.slow
def test_eval_only_with_the_weights_file_at_another_path_passes(toy_data, toy_run, toy_weights_files, tmp_path):
    moved, _ = toy_weights_files
    train.main(toy_args(toy_data, tmp_path / "eval", "--eval-only", "--model-dir", str(toy_run), "--load-epoch", "1",
                        opts=["MODEL.BACKBONE.PATH", str(moved)]))
    log = newest_log(tmp_path / "eval")
    assert "* accuracy: " in log and "Note: " not in log

@pytest.mark.slow
def test_eval_only_on_another_dataset_class_half_or_precision_passes(toy_data, toy_run, caltech_root, tmp_path):
    """The protocols' test runs: the new classes, another dataset, another seed and shots, fp16."""
    keep = ["TRAINER.MUTUAL_PROMPT.PREC", "fp16", "TRAINER.MUTUAL_PROMPT.TEXT_CHUNK", "7",
            "DATALOADER.TEST.BATCH_SIZE", "8"]
    train.main(toy_args(toy_data, tmp_path / "new", "--eval-only", "--model-dir", str(toy_run), "--load-epoch", "1",
                        "--seed", "2",
                        opts=["DATASET.SUBSAMPLE_CLASSES", "new", "DATASET.NUM_SHOTS", "16", *keep]))
    assert "* accuracy: " in newest_log(tmp_path / "new")
    caltech = toy_args(caltech_root, tmp_path / "caltech", "--eval-only", "--model-dir", str(toy_run), "--load-epoch",
                       "1", opts=["DATASET.SUBSAMPLE_CLASSES", "all", "DATASET.NUM_SHOTS", "-1", "TEST.SPLIT", "test",
                                  *keep])
    caltech[caltech.index("--dataset-config-file") + 1] = os.path.join(REPO_ROOT, "configs", "datasets", "caltech101.yaml")
    train.main(caltech)
    log = newest_log(tmp_path / "caltech")
    assert "* accuracy: " in log and "Note: " not in log


@pytest.mark.slow
def test_eval_only_of_a_model_dir_without_a_fingerprint_goes_on_with_a_note(toy_data, run_copy, tmp_path):
    (run_copy / FINGERPRINT_FILE).unlink()
    train.main(toy_args(toy_data, tmp_path / "eval", "--eval-only", "--model-dir", str(run_copy), "--load-epoch", "1"))
    log = newest_log(tmp_path / "eval")
    assert (f"Note: --model-dir {run_copy} has no {FINGERPRINT_FILE} (trained by another tool or an earlier version): "
            "cannot check that it was trained with this configuration") in log
    assert "* accuracy: " in log


# 5 and 10. Resuming past an empty pointer or a corrupt newest checkpoint


def _checkpoints(model_dir, epochs):
    model_dir.mkdir(parents=True)
    for e in epochs:
        torch.save({"state_dict": {"w": torch.full((2,), float(e))}, "epoch": e}, model_dir / f"model.pth.tar-{e}")
    (model_dir / "checkpoint").write_text(f"model.pth.tar-{max(epochs)}\n")


def test_a_truncated_newest_checkpoint_resumes_from_the_newest_intact_one(tmp_path):
    _checkpoints(tmp_path / "prompt_learner", [1, 2, 3])
    newest = tmp_path / "prompt_learner" / "model.pth.tar-3"
    newest.write_bytes(newest.read_bytes()[:100])
    lines = repair_checkpoint_pointers(str(tmp_path))
    assert f"the newest checkpoint {newest} is corrupt" in lines[0]
    assert lines[-1] == "resuming from the newest intact checkpoint instead: epoch 2"
    assert (tmp_path / "prompt_learner" / "checkpoint").read_text() == "model.pth.tar-2\n"
    assert repair_checkpoint_pointers(str(tmp_path)) == []


def test_an_empty_pointer_is_named_and_repaired(tmp_path):
    _checkpoints(tmp_path / "prompt_learner", [1, 2])
    (tmp_path / "prompt_learner" / "checkpoint").write_text("")
    lines = repair_checkpoint_pointers(str(tmp_path))
    assert lines[0] == f"{tmp_path / 'prompt_learner' / 'checkpoint'} is empty"
    assert (tmp_path / "prompt_learner" / "checkpoint").read_text() == "model.pth.tar-2\n"


def test_a_checkpoint_written_without_its_pointer_is_resumed_from(tmp_path):
    """Stopped between writing model.pth.tar-1 and the pointer naming it (its first checkpoint)."""
    _checkpoints(tmp_path / "prompt_learner", [1])
    (tmp_path / "prompt_learner" / "checkpoint").unlink()
    assert newest_checkpoint(str(tmp_path)) == str(tmp_path / "prompt_learner" / "model.pth.tar-1")
    lines = repair_checkpoint_pointers(str(tmp_path))
    assert lines[0].startswith(f"{tmp_path / 'prompt_learner' / 'checkpoint'} is missing though model.pth.tar-1")
    assert lines[-1] == "resuming from the newest intact checkpoint instead: epoch 1"
    assert (tmp_path / "prompt_learner" / "checkpoint").read_text() == "model.pth.tar-1\n"
    assert repair_checkpoint_pointers(str(tmp_path)) == []


def test_models_whose_pointers_disagree_resume_from_one_epoch(tmp_path):
    """Stopped after one model's epoch-2 checkpoint and pointer, between the other's checkpoint and pointer."""
    _checkpoints(tmp_path / "a", [1, 2])
    _checkpoints(tmp_path / "b", [1, 2])
    (tmp_path / "b" / "checkpoint").write_text("model.pth.tar-1\n")
    lines = repair_checkpoint_pointers(str(tmp_path))
    assert lines[0] == "the models' checkpoint pointers name different checkpoints (a: model.pth.tar-2, b: model.pth.tar-1)"
    assert (tmp_path / "a" / "checkpoint").read_text() == (tmp_path / "b" / "checkpoint").read_text() == "model.pth.tar-2\n"


def test_folders_without_checkpoints_are_not_models(tmp_path):
    (tmp_path / "tensorboard").mkdir()
    (tmp_path / "tensorboard" / "events.out").write_text("")
    assert repair_checkpoint_pointers(str(tmp_path)) == [] and newest_checkpoint(str(tmp_path)) is None


def test_the_engine_names_an_empty_pointer(tmp_path):
    _checkpoints(tmp_path / "linear", [1])
    (tmp_path / "linear" / "checkpoint").write_text("\n")
    with pytest.raises(RuntimeError, match=r"linear/checkpoint is empty: it should name the newest checkpoint"):
        resume_from_checkpoint(str(tmp_path / "linear"), torch.nn.Linear(1, 1))


def test_models_resume_from_one_common_intact_epoch_or_say_there_is_none(tmp_path):
    _checkpoints(tmp_path / "a", [1, 2])
    _checkpoints(tmp_path / "b", [1, 2])
    (tmp_path / "b" / "model.pth.tar-2").write_bytes(b"")
    repair_checkpoint_pointers(str(tmp_path))
    assert (tmp_path / "a" / "checkpoint").read_text() == (tmp_path / "b" / "checkpoint").read_text() == "model.pth.tar-1\n"
    (tmp_path / "a" / "model.pth.tar-1").write_bytes(b"garbage")
    (tmp_path / "a" / "checkpoint").write_text("model.pth.tar-1\n")
    with pytest.raises(RuntimeError, match="no earlier intact checkpoint exists for every model"):
        repair_checkpoint_pointers(str(tmp_path))



@pytest.mark.slow
def test_a_run_without_an_intact_checkpoint_to_resume_is_one_error_line(toy_data, run_copy, capsys):
    (run_copy / "prompt_learner" / "model.pth.tar-1").write_bytes(b"garbage")
    err = error_of(toy_args(toy_data, run_copy, opts=["OPTIM.MAX_EPOCH", "1"]), capsys)
    assert err.startswith(f"Cannot resume from {run_copy}: the newest checkpoint ")
    assert err.endswith("Delete the folder (or use another --output-dir) to train from scratch.")

# 8. Leftovers of interrupted atomic writes


def test_stale_temp_files_are_removed_at_the_next_start(caltech_root, tiny_clip_file, tmp_path):
    out = tmp_path / "out"
    (out / "prompt_learner").mkdir(parents=True)
    leftovers = [out / "prompt_learner" / ".model.pth.tar-3.k2j4h_9x.tmp", out / ".log.txt.abcdefgh.tmp"]
    for path in leftovers:
        path.write_bytes(b"partial")
    kept = out / "prompt_learner" / ".notes.tmp"  # not atomic_path's pattern
    kept.write_text("mine")
    train.main(zeroshot_args(caltech_root, tiny_clip_file, str(out), "--no-train"))
    assert not any(p.exists() for p in leftovers) and kept.exists()
    log = (out / "log.txt").read_text()
    assert f"Removed the temporary file of an interrupted write: {leftovers[0]}" in log
    assert remove_stale_temp_files(str(out)) == []


# 9. SIGINT / SIGTERM


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    return str(tmp_path_factory.mktemp("toy_data"))


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_writes_where_the_run_stopped_and_how_to_resume_to_log_txt(toy_data, tmp_path, sig):
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "train.py", "--root", toy_data, "--trainer", "MutualPrompt", "--seed", "1",
         "--dataset-config-file", "configs/datasets/toy_shapes.yaml",
         "--config-file", "configs/trainers/MutualPrompt/toy.yaml", "--output-dir", str(out),
         "DATASET.NUM_SHOTS", "2", "DATASET.SUBSAMPLE_CLASSES", "base", "TRAIN.CHECKPOINT_FREQ", "1",
         "TEST.NO_TEST", "True", "OPTIM.MAX_EPOCH", "500"],  # far more epochs than it lives, on any machine
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, MUTUAL_PROMPT_BACKEND="builtin"))
    deadline = time.time() + 300
    log = out / "log.txt"
    while time.time() < deadline and not (log.exists() and "epoch [2/500]" in log.read_text()):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig.value
    last = log.read_text().strip().splitlines()[-1]
    match = re.fullmatch(rf"Interrupted by {sig.name} during epoch (\d+)/500: the newest checkpoint is "
                         rf"{re.escape(str(out / 'prompt_learner'))}/model\.pth\.tar-(\d+); run the same command "
                         "again to resume from it", last)
    assert match, last
    epoch, newest = int(match.group(1)), int(match.group(2))
    saved = sorted(int(p.name.rsplit("-", 1)[1]) for p in (out / "prompt_learner").glob("model.pth.tar-*"))
    assert newest == saved[-1] and newest in (epoch - 1, epoch), (last, saved)  # epoch's own if it just saved
    assert "Traceback" not in stderr
    assert (out / LOCK_FILE).read_text() == ""  # released: it names nobody


def test_an_interrupt_while_an_image_is_read_is_not_turned_into_an_image_error(monkeypatch, tmp_path):
    from mutual_prompt.runtime import utils

    image = tmp_path / "a.png"
    image.write_bytes(b"")

    def interrupted(path):
        train._raise_interrupted(signal.SIGTERM, None)

    monkeypatch.setattr(utils.Image, "open", interrupted)
    with pytest.raises(train.RunInterrupted, match="SIGTERM"):
        utils.read_image(str(image))


@pytest.mark.parametrize("freq, schedule", [
    (0, "TRAIN.CHECKPOINT_FREQ 0 saves only the last epoch"),
    (1, "TRAIN.CHECKPOINT_FREQ 1 saves one after every epoch"),
    (4, "TRAIN.CHECKPOINT_FREQ 4 saves one every 4 epochs and after the last"),
])
def test_the_interrupt_line_before_any_checkpoint_says_when_one_is_saved_and_that_a_rerun_starts_from_scratch(
        tmp_path, freq, schedule):
    from types import SimpleNamespace

    cfg = SimpleNamespace(OUTPUT_DIR=str(tmp_path), TRAIN=SimpleNamespace(CHECKPOINT_FREQ=freq))
    trainer = SimpleNamespace(epoch=0, max_epoch=10)
    line = train.interruption_line("SIGTERM", trainer, cfg, eval_only=False)
    assert line == (f"Interrupted by SIGTERM during epoch 1/10: no checkpoint was saved yet ({schedule}); running "
                    "the same command again starts from scratch")
    assert train.interruption_line("SIGINT", None, cfg, eval_only=False).startswith(
        "Interrupted by SIGINT while building the trainer")
    assert train.interruption_line("SIGINT", trainer, cfg, eval_only=True) == (
        "Interrupted by SIGINT during evaluation: an evaluation saves nothing; run the same command again to evaluate")


def _main_interrupted_at_start_up(monkeypatch, capsys, interrupt, *argv: str) -> int:
    """Run train.main with the config merge replaced by ``interrupt``; its exit status."""
    monkeypatch.setattr(train, "setup_cfg", lambda args: interrupt())
    try:
        train.main(list(argv))
    except KeyboardInterrupt:
        pytest.fail("the KeyboardInterrupt escaped train.main (a traceback for the user)")
    except SystemExit as e:
        return e.code
    pytest.fail("train.main returned after an interrupt")


@pytest.mark.parametrize("interrupt", [
    pytest.param(lambda: signal.raise_signal(signal.SIGINT), id="SIGINT"),
    pytest.param(lambda: (_ for _ in ()).throw(KeyboardInterrupt()), id="KeyboardInterrupt"),
])
def test_ctrl_c_during_start_up_is_the_interrupt_line_and_exit_130(monkeypatch, capsys, interrupt):
    assert _main_interrupted_at_start_up(monkeypatch, capsys, interrupt, "--trainer", "ZeroshotMP") == 130
    assert capsys.readouterr().out.strip().splitlines()[-1] == (
        "Interrupted by SIGINT during start-up, before the trainer was built: run the same command again to start "
        "the run")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handlers are put back


def test_sigterm_during_start_up_is_the_interrupt_line_and_exit_143(monkeypatch, capsys):
    def not_yet_handled(signum, frame):  # instead of the default handler, which would end pytest
        raise AssertionError("SIGTERM arrived before train.main installed its handler")

    previous = signal.signal(signal.SIGTERM, not_yet_handled)
    try:
        code = _main_interrupted_at_start_up(monkeypatch, capsys, lambda: signal.raise_signal(signal.SIGTERM),
                                             "--trainer", "ZeroshotMP")
        assert signal.getsignal(signal.SIGTERM) is not_yet_handled
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert code == 143
    assert "Interrupted by SIGTERM during start-up" in capsys.readouterr().out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda sig: sig.name)
def test_an_interrupt_while_train_py_imports_torch_is_the_start_up_line(sig):
    # The signal arrives from inside `import torch`, the first slow import of train.py.
    program = textwrap.dedent(f"""\
        import os, runpy, sys

        class InterruptedImport:
            def find_spec(self, name, path=None, target=None):
                if name == "torch":
                    os.kill(os.getpid(), {int(sig)})
                return None

        sys.meta_path.insert(0, InterruptedImport())
        sys.argv = ["train.py", "--help"]
        runpy.run_path("train.py", run_name="__main__")
        """)
    proc = subprocess.run([sys.executable, "-c", program], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stderr) == (128 + sig, ""), proc.stderr[-3000:]
    assert proc.stdout == (f"Interrupted by {sig.name} during start-up, before the trainer was built: run the same "
                           "command again to start the run\n")


# Lost evidence: log.txt and stdout line by line, atomic writes synced to disk


def _dassl_stand_in(root) -> None:
    """A ``dassl`` package with every name the backend imports; ``dassl.utils`` has Dassl 0.6.3's
    logger shape: ``sys.stdout`` replaced by an object whose ``file`` is ``open(fpath, "w")``."""
    stubs = {
        "__init__": "",
        "config": "get_cfg_default = None\n",
        "data/__init__": "",
        "data/datasets": "DATASET_REGISTRY = DatasetBase = Datum = None\n",
        "engine": "TRAINER_REGISTRY = TrainerX = build_trainer = None\n",
        "metrics": "compute_accuracy = None\n",
        "optim": "build_optimizer = None\n",
        "utils": textwrap.dedent("""\
            import os
            import sys

            collect_env_info = load_pretrained_weights = set_random_seed = None


            class Logger:
                def __init__(self, fpath):
                    self.console = sys.stdout
                    os.makedirs(os.path.dirname(fpath), exist_ok=True)
                    self.file = open(fpath, "w")

                def write(self, msg):
                    self.console.write(msg)
                    self.file.write(msg)

                def flush(self):
                    self.console.flush()
                    self.file.flush()


            def setup_logger(output=None):
                sys.stdout = Logger(os.path.join(output, "log.txt"))
            """),
    }
    for module, text in stubs.items():
        path = root / "dassl" / f"{module}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_dassl_s_log_file_gets_every_line_before_a_sigkill(tmp_path):
    _dassl_stand_in(tmp_path / "stand_in")
    out = tmp_path / "out"
    proc = python(f"import os, signal, sys; sys.path.insert(0, {str(tmp_path / 'stand_in')!r}); "
                  "import mutual_prompt.backend as backend; assert backend.BACKEND == 'dassl'; "
                  f"backend.setup_logger({str(out)!r}); "
                  "print('epoch [1/2] batch [1/4]'); print('epoch [1/2] batch [2/4]'); "
                  "os.kill(os.getpid(), signal.SIGKILL)", backend="dassl")
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert (out / "log.txt").read_text() == "epoch [1/2] batch [1/4]\nepoch [1/2] batch [2/4]\n"


def test_the_engine_s_log_file_gets_each_line_as_it_is_printed(tmp_path):
    import io

    from mutual_prompt.runtime.logger import Tee

    tee = Tee(io.StringIO(), str(tmp_path / "log.txt"))
    try:
        tee.write("epoch [1/2] batch [1/4]\n")
        assert (tmp_path / "log.txt").read_text() == "epoch [1/2] batch [1/4]\n"  # no flush() was called
    finally:
        tee.close()


@pytest.mark.slow
def test_a_sigkilled_run_keeps_every_line_it_printed_in_log_txt_and_its_stdout(toy_data, tmp_path):
    out = tmp_path / "out"
    stdout_path = tmp_path / "stdout.txt"
    with open(stdout_path, "w") as stdout:
        proc = subprocess.Popen(
            [sys.executable, "train.py", "--root", toy_data, "--trainer", "MutualPrompt", "--seed", "1",
             "--dataset-config-file", "configs/datasets/toy_shapes.yaml",
             "--config-file", "configs/trainers/MutualPrompt/toy.yaml", "--output-dir", str(out),
             "DATASET.NUM_SHOTS", "2", "DATASET.SUBSAMPLE_CLASSES", "base", "TRAIN.CHECKPOINT_FREQ", "1",
             "TEST.NO_TEST", "True", "OPTIM.MAX_EPOCH", "500"],
            cwd=REPO_ROOT, stdout=stdout, stderr=subprocess.PIPE, text=True,
            env=dict(os.environ, MUTUAL_PROMPT_BACKEND="builtin"))
        second = out / "prompt_learner" / "model.pth.tar-2"
        deadline = time.time() + 300
        while time.time() < deadline and not second.exists():
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.01)
        proc.kill()  # SIGKILL: nothing of train.py runs after it
        proc.communicate(timeout=60)
    # Epoch 2's lines were printed before its checkpoint was written, epoch 1's pointer line before them.
    for printed in ((out / "log.txt").read_text(), stdout_path.read_text()):
        assert re.search(r"^epoch \[2/500\] batch \[(\d+)/\1\] ", printed, re.MULTILINE), printed[-2000:]
        assert f"Checkpoint saved to {out / 'prompt_learner' / 'model.pth.tar-1'}\n" in printed


def test_atomic_writes_reach_the_disk_before_the_rename_and_the_rename_after(tmp_path, monkeypatch):
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc to name the synced file descriptors")
    folder = tmp_path / "prompt_learner"
    checkpoint, pointer = folder / "model.pth.tar-1", folder / "checkpoint"
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append((os.readlink(f"/proc/self/fd/{fd}"), checkpoint.exists(), pointer.exists()))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    save_checkpoint({"state_dict": {"w": torch.zeros(2)}, "epoch": 1}, str(folder))
    (tmp_checkpoint, *at_checkpoint), (folder_1, *after_checkpoint), (tmp_pointer, *at_pointer), \
        (folder_2, *after_pointer) = synced
    assert re.fullmatch(r"\.model\.pth\.tar-1\.\w+\.tmp", os.path.basename(tmp_checkpoint))
    assert re.fullmatch(r"\.checkpoint\.\w+\.tmp", os.path.basename(tmp_pointer))
    assert folder_1 == folder_2 == str(folder)
    assert at_checkpoint == [False, False] and after_checkpoint == [True, False]  # synced, renamed, folder synced
    assert at_pointer == [True, False] and after_pointer == [True, True]


def test_a_file_published_without_overwriting_reaches_the_disk_before_the_link_and_the_link_after(tmp_path,
                                                                                                   monkeypatch):
    from mutual_prompt.files import write_json

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc to name the synced file descriptors")
    split = tmp_path / "split_fewshot" / "shot_2-seed_1.json"
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append((os.readlink(f"/proc/self/fd/{fd}"), split.exists()))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    write_json({"train": []}, str(split), overwrite=False)  # how split files and few-shot caches are created
    (tmp_file, published_then), (folder, published_after) = synced
    assert re.fullmatch(r"\.shot_2-seed_1\.json\.\w+\.tmp", os.path.basename(tmp_file)) and not published_then
    assert folder == str(split.parent) and published_after
