"""What each run of a sweep is doing, readable by any process: done, running, interrupted, failed, ...

A run is *done* when its folder holds a result (``mutual_prompt.tools.results.parse_run``, the scripts' skip
rule). While a run executes, its lock ``<output>/.sweep/runs/<run folder>/lock``
(``mutual_prompt.files.exclusive_lock``) is held by the sweep that started it and by the run's
``train.py`` process itself (it inherits the locked descriptor), so the lock is held exactly as long
as either lives: two sweeps never start the same run, and ``status`` sees it running from any shell,
also when its sweep was killed and the process runs on. ``state.json`` beside the lock records the
last attempt (host, process or SLURM job, exit code) and ``output.txt`` everything the run printed,
tracebacks included. A run that state.json calls running while nobody holds its lock, or whose
folder has a log but no result, was *interrupted*: a re-run resumes it from its last checkpoint. A
run started outside the sweep (by the scripts) is running while train.py holds its folder's
``run.lock``. A running training's epoch and ETA come from the last progress line of its newest log.
"""
import json
import os
import re
import signal
import socket
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from mutual_prompt.files import atomic_path, is_lock_held
from mutual_prompt.run.output_dir import LOCK_FILE
from mutual_prompt.tools.results import parse_run

from .plan import Run

DONE, RUNNING, FAILED, BLOCKED, QUEUED, PENDING = "done", "running", "failed", "blocked", "queued", "pending"
INTERRUPTED = "interrupted"
# The line the sweep writes into output.txt before each attempt: "=== <date> <time> <command>".
ATTEMPT_HEADER = re.compile(r"^=== \d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")
# Lines that say why a run stopped: an argparse error (train.py's own), train.py's "Error: ..." and
# its line on SIGINT/SIGTERM. A traceback's exception line is found by its position instead.
ERROR_LINE = re.compile(r"^(?:\S+: error: |Error: |Interrupted by SIG[A-Z0-9]+ )")
# The progress line of a training, Dassl's and the built-in trainer's alike:
# "epoch [3/10] batch [20/40] time ... lr 2.0000e-03 eta 0:01:23" (an ETA over a day: "1 day, 2:03:04").
PROGRESS_LINE = re.compile(r"\bepoch \[(\d+)/(\d+)\] batch \[\d+/\d+\] .*\beta (\S.*?)\s*$")
PROGRESS_TAIL_BYTES = 256 * 1024  # how much of the end of a log is searched for the last progress line


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

    def last_attempt(self) -> List[str]:
        """What the latest attempt printed: output.txt after its last attempt header."""
        try:
            with open(self.output, encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            return []
        starts = [i for i, line in enumerate(lines) if ATTEMPT_HEADER.match(line)]
        return lines[starts[-1] + 1:] if starts else lines

    def failure_reason(self) -> str:
        """Why the latest attempt stopped, in its own words: its last error line ("" if none)."""
        return last_error_line(self.last_attempt())


def last_error_line(lines: List[str]) -> str:
    """The last line saying why a process stopped: an error line, or a traceback's exception line."""
    reason, in_traceback = "", False
    for line in lines:
        if line.startswith("Traceback (most recent call last):"):
            in_traceback = True
        elif in_traceback and line.strip() and not line[0].isspace():
            reason, in_traceback = line, False
        elif ERROR_LINE.match(line):
            reason = line
    return reason


def exit_detail(returncode: Optional[int], reason: str = "") -> str:
    """"exit code 2: <reason>", or "killed by SIGKILL" for a process that a signal ended."""
    if returncode is not None and returncode < 0:
        try:
            text = f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            text = f"killed by signal {-returncode}"
    else:
        text = f"exit code {returncode}"
    return f"{text}: {reason}" if reason else text


def failed_detail(run: Run, files: "RunFiles", returncode: Optional[int]) -> str:
    """Why an attempt that ended without a result failed: its exit and its last error line."""
    if returncode == 0:
        return f"exit code 0, but no result after '{run.end_signal}' in its log"
    return exit_detail(returncode, files.failure_reason())


def holder(state: Dict[str, Any]) -> str:
    """Who a state.json says runs the run: "pid 123 on host since <time>" (or the SLURM job)."""
    where = f"job {state['job_id']}" if state.get("job_id") else f"pid {state.get('pid', '?')}"
    return f"{where} on {state.get('host', '?')} since {state.get('time', '?')}"


def newest_log(run_dir: str) -> Optional[str]:
    """The log a running train.py writes: the newest of ``log.txt`` and ``log.txt-<timestamp>`` (a
    restarted run's; Dassl never overwrites a log), in the order ``results`` reads them."""
    try:
        names = [n for n in os.listdir(run_dir) if n == "log.txt" or n.startswith("log.txt-")]
    except OSError:
        return None
    return os.path.join(run_dir, max(names, key=lambda n: (n != "log.txt", n))) if names else None


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s ago"
    return f"{seconds // 60} min ago" if seconds < 7200 else f"{seconds // 3600} h ago"


def training_progress(run_dir: str) -> str:
    """"epoch 3/10, eta 0:01:23, log 12 s ago" from the newest log ("" without one; no epoch part
    before the first progress line, or for a test run, which prints none)."""
    log = newest_log(run_dir)
    if log is None:
        return ""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, os.path.getsize(log) - PROGRESS_TAIL_BYTES))
            lines = f.read().decode("utf-8", errors="replace").splitlines()
        age = _ago(time.time() - os.path.getmtime(log))
    except OSError:
        return ""
    for line in reversed(lines):
        match = PROGRESS_LINE.search(line)
        if match:
            epoch, epochs, eta = match.groups()
            return f"epoch {epoch}/{epochs}, eta {eta}, log {age}"
    return f"log {age}"


def folder_lock_holder(run_dir: str) -> Optional[str]:
    """"pid P on H since T" of the train.py holding the run folder's ``run.lock`` (None if none holds it)."""
    path = os.path.join(run_dir, LOCK_FILE)
    if not is_lock_held(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            owner = json.load(f)
    except (OSError, ValueError):
        owner = {}
    owner = owner if isinstance(owner, dict) else {}
    return f"pid {owner.get('pid', '?')} on {owner.get('host', '?')} since {owner.get('started', '?')}"


def running_detail(run_dir: str, who: str) -> str:
    progress = training_progress(run_dir)
    return f"{progress}; {who}" if progress else who


def is_done(repo_root: str, run: Run) -> bool:
    return parse_run(os.path.join(repo_root, run.output_dir), end_signal=run.end_signal) is not None


@dataclass
class RunStatus:
    run: Run
    state: str
    result: Optional[float] = None
    detail: str = ""
    tail: Optional[List[str]] = None


def resumes(run: Run) -> str:
    return "a re-run resumes it from its last checkpoint" if run.kind == "train" else "a re-run runs it again"


def run_status(repo_root: str, output_root: str, run: Run) -> RunStatus:
    """The state of one run as any process sees it."""
    files = RunFiles(repo_root, output_root, run)
    result = parse_run(files.run_dir, end_signal=run.end_signal)
    if result is not None:
        return RunStatus(run, DONE, result)
    state = files.read_state()
    if is_lock_held(files.lock):
        return RunStatus(run, RUNNING, detail=running_detail(files.run_dir, holder(state)))
    outside = folder_lock_holder(files.run_dir)  # started by the scripts, not by a sweep
    if outside is not None:
        return RunStatus(run, RUNNING, detail=running_detail(files.run_dir, outside))
    if state.get("state") == RUNNING:
        return RunStatus(run, INTERRUPTED, detail=f"{holder(state)}, ended without a result; {resumes(run)}")
    if state.get("state") == FAILED:
        return RunStatus(run, FAILED, detail=failed_detail(run, files, state.get("returncode")), tail=files.tail())
    if state.get("state") == BLOCKED:
        return RunStatus(run, BLOCKED, detail=state.get("reason", ""))
    if state.get("state") == QUEUED:
        return RunStatus(run, QUEUED, detail="submitted, waiting for its job")
    started = os.path.isdir(files.run_dir) and any(n.startswith("log.txt") for n in os.listdir(files.run_dir))
    if started:
        return RunStatus(run, INTERRUPTED, detail=f"its log has no result; {resumes(run)}")
    return RunStatus(run, PENDING)


def sweep_status(repo_root: str, output_root: str, runs: List[Run]) -> List[RunStatus]:
    return [run_status(repo_root, output_root, run) for run in runs]
