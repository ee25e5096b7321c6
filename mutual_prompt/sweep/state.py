"""What each run of a sweep is doing, readable by any process: done, running, failed, pending.

A run is *done* when its folder holds a result (``mutual_prompt.results.parse_run``, the scripts' skip
rule). While a run executes, the process running it holds an exclusive ``flock`` on
``<output>/.sweep/runs/<run folder>/lock``, so two sweeps never start the same run and ``status``
sees it running even from another shell. ``state.json`` beside the lock records the last attempt
(host, process or SLURM job, exit code) and ``output.txt`` everything the run printed, tracebacks
included.
"""
import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from mutual_prompt.files import atomic_path
from mutual_prompt.results import parse_run

from .plan import Run

DONE, RUNNING, FAILED, BLOCKED, QUEUED, PENDING = "done", "running", "failed", "blocked", "queued", "pending"


def sweep_dir(output_root: str) -> str:
    return os.path.join(output_root, ".sweep")


class RunFiles:
    """The sweep's files for one run (not in the run's own folder, which stays as train.py writes it)."""

    def __init__(self, repo_root: str, output_root: str, run: Run) -> None:
        root = os.path.join(repo_root, output_root)
        self.run_dir = os.path.join(repo_root, run.output_dir)
        rel = os.path.relpath(self.run_dir, root)
        if rel.startswith(".."):
            raise ValueError(f"Run folder {run.output_dir} is not under the sweep's output {output_root}")
        self.dir = os.path.join(sweep_dir(root), "runs", rel)
        self.lock = os.path.join(self.dir, "lock")
        self.state = os.path.join(self.dir, "state.json")
        self.output = os.path.join(self.dir, "output.txt")

    def read_state(self) -> Dict[str, Any]:
        try:
            with open(self.state, encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def write_state(self, **fields: Any) -> None:
        os.makedirs(self.dir, exist_ok=True)
        state = dict(fields, host=socket.gethostname(), time=time.strftime("%Y-%m-%d %H:%M:%S"))
        with atomic_path(self.state) as tmp:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(state, f)

    def tail(self, n: int = 8) -> List[str]:
        """The last lines the run printed (its captured output, else its newest log file)."""
        for path in (self.output, os.path.join(self.run_dir, "log.txt")):
            if os.path.isfile(path):
                with open(path, encoding="utf-8", errors="replace") as f:
                    lines = [line.rstrip("\n") for line in f.read().splitlines() if line.strip()]
                return lines[-n:]
        return []


class RunLock:
    """An exclusive, non-blocking ``flock`` held while a run executes (released when the holder dies)."""

    def __init__(self, files: RunFiles) -> None:
        self.path = files.lock
        self.fd: Optional[int] = None

    def acquire(self) -> bool:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def is_locked(files: RunFiles) -> bool:
    if not os.path.exists(files.lock):
        return False
    lock = RunLock(files)
    if lock.acquire():
        lock.release()
        return False
    return True


def is_done(repo_root: str, run: Run) -> bool:
    return parse_run(os.path.join(repo_root, run.output_dir), end_signal=run.end_signal) is not None


@dataclass
class RunStatus:
    run: Run
    state: str
    result: Optional[float] = None
    detail: str = ""
    tail: Optional[List[str]] = None


def run_status(repo_root: str, output_root: str, run: Run) -> RunStatus:
    """The state of one run as any process sees it."""
    files = RunFiles(repo_root, output_root, run)
    result = parse_run(files.run_dir, end_signal=run.end_signal)
    if result is not None:
        return RunStatus(run, DONE, result)
    state = files.read_state()
    if is_locked(files):
        where = f"job {state['job_id']}" if state.get("job_id") else f"pid {state.get('pid', '?')}"
        return RunStatus(run, RUNNING, detail=f"{where} on {state.get('host', '?')} since {state.get('time', '?')}")
    if state.get("state") == FAILED:
        rc = state.get("returncode")
        detail = f"exit code {rc}" if rc else f"no result after '{run.end_signal}' in its log"
        return RunStatus(run, FAILED, detail=detail, tail=files.tail())
    if state.get("state") == BLOCKED:
        return RunStatus(run, BLOCKED, detail=state.get("reason", ""))
    if state.get("state") == QUEUED:
        return RunStatus(run, QUEUED, detail="submitted, waiting for its job")
    started = os.path.isdir(files.run_dir) and any(n.startswith("log.txt") for n in os.listdir(files.run_dir))
    return RunStatus(run, PENDING, detail="interrupted, resumes from its last checkpoint" if started else "")


def sweep_status(repo_root: str, output_root: str, runs: List[Run]) -> List[RunStatus]:
    return [run_status(repo_root, output_root, run) for run in runs]
