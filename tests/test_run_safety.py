"""One run per output directory, fingerprinted resumes, repaired checkpoint pointers, leftovers of
killed runs, and SIGINT/SIGTERM, through train.py."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest
import torch

import train
from mutual_prompt.resume import (
    FINGERPRINT_FILE,
    FingerprintMismatch,
    check_run_fingerprint,
    newest_checkpoint,
    repair_checkpoint_pointers,
    run_fingerprint,
    write_run_fingerprint,
)
from mutual_prompt.run_dir import LOCK_FILE, lock_output_dir, remove_stale_temp_files
from test_train_cli import caltech_root, tiny_clip_file, zeroshot_args  # noqa: F401  (fixtures)

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
    assert not (out / LOCK_FILE).exists()


def test_a_stale_lock_is_taken_over_and_released(caltech_root, tiny_clip_file, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / LOCK_FILE).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": "earlier"}))
    train.main(zeroshot_args(caltech_root, tiny_clip_file, str(out), "--no-train"))
    assert f"Taking over the stale lock {out / LOCK_FILE}" in capsys.readouterr().out
    assert not (out / LOCK_FILE).exists()


def test_the_lock_is_held_by_a_live_process_until_it_exits(tmp_path):
    out = tmp_path / "out"
    script = ("import sys, time; from mutual_prompt.run_dir import lock_output_dir; "
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
    write_run_fingerprint(str(out), seed1)
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
    write_run_fingerprint(str(out), seed1)
    calls = []
    monkeypatch.setattr(train, "run", lambda args, cfg, training, note: calls.append(cfg.SEED))
    train.main(zeroshot_args(caltech_root, tiny_clip_file, str(out), "--seed", "2", "--force-resume"))
    assert calls == [2]


def test_fingerprint_names_every_differing_key(tmp_path):
    write_run_fingerprint(str(tmp_path), toy_cfg("DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "base"))
    check_run_fingerprint(str(tmp_path), toy_cfg("DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "base",
                                                 "TRAIN.CHECKPOINT_FREQ", "1"))  # not outcome-deciding
    other = toy_cfg("DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES", "base",
                    "TRAINER.MUTUAL_PROMPT.FTP.MODE", "shared")
    with pytest.raises(FingerprintMismatch) as e:
        check_run_fingerprint(str(tmp_path), other)
    assert "DATASET.NUM_SHOTS: 16 there, 4 now" in str(e.value)
    assert "TRAINER.MUTUAL_PROMPT.FTP.MODE: 'fine' there, 'shared' now" in str(e.value)
    assert set(run_fingerprint(other)) >= {"SEED", "DATASET.NAME", "TRAINER.NAME", "MODEL.BACKBONE.NAME"}


def test_an_unreadable_fingerprint_is_named(tmp_path):
    (tmp_path / FINGERPRINT_FILE).write_text("{trunc")
    with pytest.raises(FingerprintMismatch, match=rf"{FINGERPRINT_FILE} is not valid JSON.*--force-resume"):
        check_run_fingerprint(str(tmp_path), toy_cfg())


def test_checkpoints_without_a_fingerprint_give_a_note(tmp_path):
    (tmp_path / "prompt_learner").mkdir()
    (tmp_path / "prompt_learner" / "checkpoint").write_text("model.pth.tar-1\n")
    assert f"no {FINGERPRINT_FILE}" in check_run_fingerprint(str(tmp_path), toy_cfg())


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
    from mutual_prompt.engine.checkpoint import resume_from_checkpoint

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
    assert not (out / LOCK_FILE).exists()


def test_an_interrupt_while_an_image_is_read_is_not_turned_into_an_image_error(monkeypatch, tmp_path):
    from mutual_prompt.engine import utils

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
    from test_dassl_backend import python

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

    from mutual_prompt.engine.logger import Tee

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
    from mutual_prompt.engine.checkpoint import save_checkpoint

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
