"""The toy world's base-to-new protocol (2 seeds) through the scripts, the sweep's local executor with
2 processes, and submitit's local executor with a training interrupted and requeued: same results and
weights everywhere; a failing run is reported while the others finish; a re-run does only what is left.

Trainings are cut to 2 shots and 2 epochs (through train.py's overrides) to keep CI short; every
process uses one thread, so all three ways compute in the same order and agree exactly.
"""
import os
import re
import signal
import subprocess
import sys
import time
from typing import Callable

import pytest
import torch

from helpers.dataset_trees import CALTECH, JPEG_BYTES
from mutual_prompt.tools.results import parse_run
from mutual_prompt.tools.sweep.plan import Settings, protocol_runs
from mutual_prompt.tools.sweep.state import RunFiles

pytestmark = pytest.mark.slow

OPTS = ["OPTIM.MAX_EPOCH", "2", "TRAIN.CHECKPOINT_FREQ", "1"]
SEEDS = ("1", "2")
ENV = dict(MUTUAL_PROMPT_BACKEND="builtin", OMP_NUM_THREADS="1")


def toy_settings(repo_root, tmp, output, datasets=("toy_shapes",), seeds=SEEDS):
    return Settings(repo_root=repo_root, data=str(tmp / "data"), output=str(output), cfg="toy", shots=2,
                    seeds=tuple(int(s) for s in seeds), datasets=datasets, opts=tuple(OPTS))


def sweep_command(tmp, output, *args, datasets=("toy_shapes", "caltech101"), seeds=SEEDS):
    return [sys.executable, "-m", "mutual_prompt.sweep", *args, "base2new", "--datasets", *datasets, "--seeds", *seeds,
            "--cfg", "toy", "--shots", "2", "--data", str(tmp / "data"), "--output", str(output), *OPTS]


def sweep(repo_root, tmp, output, *args, check_rc=0, **kw):
    proc = subprocess.run(sweep_command(tmp, output, *args, **kw), cwd=repo_root, env=dict(os.environ, **ENV),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == check_rc, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def weights(run_dir):
    return torch.load(os.path.join(run_dir, "prompt_learner", "model.pth.tar-2"), weights_only=True)["state_dict"]


def assert_same_runs(repo_root, tmp, output, reference):
    ours, ref = toy_settings(repo_root, tmp, output), toy_settings(repo_root, tmp, reference)
    for a, b in zip(protocol_runs("base2new", ours), protocol_runs("base2new", ref)):
        value = parse_run(a.output_dir, end_signal=a.end_signal)
        assert value is not None and value == parse_run(b.output_dir, end_signal=b.end_signal), a.output_dir
        if a.kind == "train":
            wa, wb = weights(a.output_dir), weights(b.output_dir)
            assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("sweep")


@pytest.fixture(scope="module")
def scripts_run(repo_root, tmp):
    """The scripts' sequential run (reproduce_base2new.sh), the reference."""
    out = tmp / "scripts"
    env = dict(os.environ, DATA=str(tmp / "data"), OUTPUT=str(out), PYTHON=sys.executable, CFG="toy", SHOTS="2",
               DATASETS="toy_shapes", SEEDS=" ".join(SEEDS), LOADEP="2", **ENV)
    proc = subprocess.run(["bash", "scripts/reproduce_base2new.sh", *OPTS], cwd=repo_root, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def local_run(repo_root, tmp, scripts_run):
    """The sweep with 2 local processes, caltech101 included: its images end after their header, which
    the sweep's check before the start (the doctor's header check) cannot see, so its trainings fail."""
    CALTECH.build(str(tmp / "data"))
    for folder, _, names in os.walk(tmp / "data" / "caltech-101"):
        for name in names:
            if name.endswith(".jpg"):
                with open(os.path.join(folder, name), "wb") as f:
                    f.write(JPEG_BYTES[:JPEG_BYTES.index(b"\xff\xda") + 20])  # the header and a little data
    out = tmp / "local"
    text = sweep(repo_root, tmp, out, "run", "--jobs", "2", "--plot", str(tmp / "figures"), check_rc=1)
    return out, text


def test_local_sweep_gives_the_scripts_results_and_weights(repo_root, tmp, scripts_run, local_run):
    assert_same_runs(repo_root, tmp, local_run[0], scripts_run)


def test_a_failed_run_is_reported_and_the_others_finish(local_run):
    out, text = local_run
    train = f"{out}/base2new/train_base/caltech101/shots_2/MutualPrompt/toy/seed1"
    assert re.search(rf"^failed\s+{re.escape(train)}  \(exit code [1-9]", text, flags=re.M)
    assert "    | " in text and "caltech-101" in text  # the last lines it printed name the unreadable image
    assert re.search(rf"^blocked\s+{re.escape(str(out))}/base2new/test_new/caltech101/\S+/seed1", text, flags=re.M)
    assert re.search(r"^toy_shapes\s+\S+ ± \S+\s+\S+ ± \S+\s+\S+$", text, flags=re.M)  # the table
    assert "[" + "#" * 15 + "." * 15 + "] 4/8 done, 2 failed, 2 blocked" in text


def test_status_on_demand(repo_root, tmp, local_run):
    text = sweep(repo_root, tmp, local_run[0], "status", check_rc=1)
    assert len(re.findall(r"^done\s+\S+  \(\d+\.\d+%\)$", text, flags=re.M)) == 4
    assert len(re.findall(r"^failed\s", text, flags=re.M)) == 2 and "4/8 done" in text


def test_status_given_only_the_output_folder_shows_the_last_run_into_it(repo_root, tmp, local_run):
    out, _ = local_run
    proc = subprocess.run([sys.executable, "-m", "mutual_prompt.sweep", "status", "base2new", "--output", str(out)],
                          cwd=repo_root, env=dict(os.environ, **ENV), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    head, *lines = proc.stdout.splitlines()
    assert head.endswith(f"--data {tmp / 'data'} --cfg toy --shots 2 --seeds 1 2 --datasets toy_shapes caltech101 "
                         "OPTIM.MAX_EPOCH 2 TRAIN.CHECKPOINT_FREQ 1"), head
    assert "--repo" not in head  # the run's checkout is the one status uses anyway
    assert len([line for line in lines if re.match(r"done\s+\S+  \(\d+\.\d+%\)$", line)]) == 4
    assert "[" + "#" * 15 + "." * 15 + "] 4/8 done, 2 failed, 2 blocked" in lines


def test_rerun_runs_only_what_is_unfinished(repo_root, tmp, scripts_run, local_run):
    out, _ = local_run
    runs = protocol_runs("base2new", toy_settings(repo_root, tmp, out))
    redo = runs[3]  # test_new, seed 2
    before = parse_run(redo.output_dir, end_signal=redo.end_signal)
    subprocess.run(["rm", "-r", redo.output_dir], check=True)
    logs = {r.output_dir: sorted(os.listdir(r.output_dir)) for r in runs[:3]}
    text = sweep(repo_root, tmp, out, "run", "--jobs", "2", check_rc=1)
    assert re.search(rf"^started\s+{re.escape(redo.output_dir)}", text, flags=re.M)
    assert parse_run(redo.output_dir, end_signal=redo.end_signal) == before
    assert {r.output_dir: sorted(os.listdir(r.output_dir)) for r in runs[:3]} == logs  # not started again
    assert len(re.findall(r"^started\s", text, flags=re.M)) == 3  # the test and the 2 caltech101 trainings
    assert_same_runs(repo_root, tmp, out, scripts_run)


def _wait_for(condition: Callable[[], bool], deadline: float, what: str) -> None:
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"gave up waiting until {what}")
        time.sleep(0.05)


def _stat_fields(path: str) -> list:
    """The fields of a /proc stat file after the command name: state, parent pid, ..."""
    with open(path) as f:
        return f.read().rsplit(")", 1)[1].split()


def _all_threads_stopped(pid: int) -> bool:
    states = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            states.append(_stat_fields(f"/proc/{pid}/task/{tid}/stat")[0])
        except FileNotFoundError:  # the thread ended
            pass
    return bool(states) and all(state == "T" for state in states)


def _is_pending(pid: int, sig: signal.Signals) -> bool:
    """Whether ``sig`` was sent to the (stopped) process ``pid`` and waits to be delivered."""
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    return any(int(fields[name], 16) & (1 << (sig - 1)) for name in ("SigPnd", "ShdPnd"))


def _continue_if_alive(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass


def test_submitit_requeues_an_interrupted_training_which_resumes_to_the_same_weights(repo_root, tmp, scripts_run):
    """The sweep through submitit's local executor (the code path of a SLURM job array, no cluster)."""
    settings = toy_settings(repo_root, tmp, tmp / "submitit")
    runs = protocol_runs("base2new", settings)
    cmd = sweep_command(tmp, settings.output, "run", "--executor", "submitit-local", "--cpus-per-task", "1",
                        datasets=("toy_shapes",))
    proc = subprocess.Popen(cmd, cwd=repo_root, env=dict(os.environ, **ENV), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    train_pid = 0
    try:
        train = runs[0]
        first_epoch = os.path.join(train.output_dir, "prompt_learner", "model.pth.tar-1")
        deadline = time.time() + 600
        _wait_for(lambda: os.path.exists(first_epoch) or proc.poll() is not None, deadline, "epoch 1 is saved")
        assert os.path.exists(first_epoch), "the sweep ended before the training saved epoch 1"
        train_pid = RunFiles(repo_root, settings.output, train).read_state()["pid"]
        # Held in epoch 2 (a toy epoch takes half a second) until the job's SIGTERM is pending, so that
        # the training cannot finish first on a fast machine. The preemption waits until every thread
        # has stopped: until then a thread could take the SIGTERM (at the C level) before the stop, and
        # it would never show as pending.
        os.kill(train_pid, signal.SIGSTOP)
        _wait_for(lambda: _all_threads_stopped(train_pid), deadline, f"process {train_pid} stopped")
        job_pid = int(_stat_fields(f"/proc/{train_pid}/stat")[1])
        # What SLURM does before a time-out or a preemption: the signal to the job's process.
        os.kill(job_pid, signal.SIGUSR2)
        _wait_for(lambda: _is_pending(train_pid, signal.SIGTERM), deadline, f"SIGTERM reached process {train_pid}")
        os.kill(train_pid, signal.SIGCONT)
        text, _ = proc.communicate(timeout=900)
    finally:
        if train_pid:
            _continue_if_alive(train_pid)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, text[-3000:]
    assert "Submitted 2 jobs (local)" in text
    assert re.search(r"^toy_shapes\s+\S+ ± \S+\s+\S+ ± \S+\s+\S+$", text, flags=re.M)
    attempts = open(RunFiles(repo_root, settings.output, train).output).read().count("\n=== ")
    assert attempts == 2  # started, interrupted, requeued by submitit, started again
    newest = sorted(n for n in os.listdir(train.output_dir) if n.startswith("log.txt-"))[-1]
    log = open(os.path.join(train.output_dir, newest)).read()
    assert "will resume training" in log and "epoch [1/2]" not in log  # resumed after epoch 1
    assert_same_runs(repo_root, tmp, settings.output, scripts_run)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its new parent to reap it does not)."""
    try:
        return _stat_fields(f"/proc/{pid}/stat")[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_killed_sweep_takes_its_runs_with_it_and_a_rerun_resumes_them(repo_root, tmp, scripts_run):
    """kill -9 of the sweep (the OOM killer's way): its train.py gets SIGTERM and stops with its
    checkpoints, status says interrupted, and the same command again resumes the training and
    finishes with the scripts' weights and results."""
    out = tmp / "killed"
    settings = toy_settings(repo_root, tmp, out, seeds=("1",))
    train, test = protocol_runs("base2new", settings)
    files = RunFiles(repo_root, settings.output, train)
    cmd = sweep_command(tmp, out, "run", "--jobs", "1", datasets=("toy_shapes",), seeds=("1",))
    proc = subprocess.Popen(cmd, cwd=repo_root, env=dict(os.environ, **ENV), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    train_pid = 0
    try:
        first_epoch = os.path.join(train.output_dir, "prompt_learner", "model.pth.tar-1")
        _wait_for(lambda: os.path.exists(first_epoch) or proc.poll() is not None, time.time() + 600, "epoch 1 is saved")
        train_pid = files.read_state()["pid"]
        proc.kill()
        proc.wait()
        _wait_for(lambda: not _alive(train_pid), time.time() + 15, f"train.py (pid {train_pid}) ended with its sweep")
    finally:
        if train_pid and _alive(train_pid):
            os.kill(train_pid, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    assert parse_run(train.output_dir, end_signal=train.end_signal) is None  # stopped, not finished
    with open(files.output, encoding="utf-8") as f:
        assert "\nInterrupted by SIGTERM during epoch 2/2: the newest checkpoint is " in f.read()
    text = sweep(repo_root, tmp, out, "status", datasets=("toy_shapes",), seeds=("1",))
    assert re.search(rf"^interrupted {re.escape(train.output_dir)}  \(pid {train_pid} on \S+ since .*, ended without "
                     r"a result; a re-run resumes it from its last checkpoint\)$", text, flags=re.M), text
    assert re.search(rf"^pending\s+{re.escape(test.output_dir)}$", text, flags=re.M), text

    text = sweep(repo_root, tmp, out, "run", "--jobs", "1", datasets=("toy_shapes",), seeds=("1",))
    assert "[" + "#" * 30 + "] 2/2 done" in text
    newest = sorted(n for n in os.listdir(train.output_dir) if n.startswith("log.txt-"))[-1]
    log = open(os.path.join(train.output_dir, newest)).read()
    assert "will resume training" in log and "epoch [1/2]" not in log  # resumed after epoch 1
    reference = toy_settings(repo_root, tmp, scripts_run, seeds=("1",))
    for ours, ref in zip((train, test), protocol_runs("base2new", reference)):
        assert parse_run(ours.output_dir, end_signal=ours.end_signal) == parse_run(ref.output_dir, end_signal=ref.end_signal)
    wa, wb = weights(train.output_dir), weights(protocol_runs("base2new", reference)[0].output_dir)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_figures_of_the_sweep(local_run, tmp):
    for name in ("base2new.png", "training.png"):
        path = tmp / "figures" / name
        assert path.stat().st_size > 1000
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
