"""Start one run of a sweep as a ``train.py`` process, under its lock, with its output captured.

The process dies with the sweep: on Linux it gets SIGTERM when the sweep ends in any way, SIGKILL
included (the parent-death signal), and train.py then writes where it stopped and exits 143 with its
checkpoints intact. Elsewhere a killed sweep leaves its train.py processes running; they keep the
run's lock (they inherit its descriptor), so ``status`` shows them running and a re-run waits for
them instead of starting a second process in the same folder.
"""
import ctypes
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, Optional

from mutual_prompt.files import FileLock, LockHeld, exclusive_lock

from .plan import Run
from .state import DONE, FAILED, RUNNING, RunFiles, is_done

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _linux_prctl() -> Optional[Callable[..., int]]:
    """libc's ``prctl``, looked up in the sweep (a child between fork and exec only calls it)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


PRCTL = _linux_prctl()


def child_setup(parent_pid: int, die_with_parent: bool) -> Callable[[], None]:
    """What the child does before it becomes train.py (``preexec_fn``)."""
    preemption = getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"))

    def setup() -> None:
        # SLURM signals every process of a job before a time-out; the sweep's job process checkpoints
        # and requeues, then stops train.py itself. train.py must not die first and look failed.
        signal.signal(preemption, signal.SIG_IGN)
        if die_with_parent:
            PRCTL(ctypes.c_int(PR_SET_PDEATHSIG), ctypes.c_ulong(signal.SIGTERM), ctypes.c_ulong(0),
                  ctypes.c_ulong(0), ctypes.c_ulong(0))
            if os.getppid() != parent_pid:  # the sweep died before prctl: no signal will come
                os._exit(128 + signal.SIGTERM)

    return setup


def dies_with_parent() -> bool:
    """Whether a child started here gets the parent-death signal. The kernel sends it when the
    *thread* that started the child ends, so only children of the main thread (which ends with the
    process) get it."""
    return PRCTL is not None and threading.current_thread() is threading.main_thread()


class RunProcess:
    """A started run: ``poll()`` returns None while it runs, then its state (done or failed)."""

    def __init__(self, repo_root: str, output_root: str, run: Run, env: Dict[str, str], python: str = sys.executable,
                 job_id: str = "") -> None:
        self.repo_root, self.run = repo_root, run
        self.files = RunFiles(repo_root, output_root, run)
        self.lock: Optional[FileLock] = None
        self.env, self.python, self.job_id = env, python, job_id
        self.proc: Optional[subprocess.Popen] = None
        self.returncode: Optional[int] = None
        self.started = 0.0

    def start(self) -> bool:
        """Start train.py; False when another process holds the run's lock (it is running elsewhere)."""
        try:
            self.lock = exclusive_lock(self.files.lock, wait=False)
        except LockHeld:
            return False
        command = self.run.command(self.python)
        os.makedirs(self.files.dir, exist_ok=True)
        # Unbuffered: everything the run printed is in output.txt even when it is killed.
        env = dict(self.env, PYTHONUNBUFFERED="1")
        try:
            with open(self.files.output, "a", encoding="utf-8") as out:
                out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(command)}\n")
                out.flush()
                self.proc = subprocess.Popen(command, cwd=self.repo_root, env=env, stdout=out,
                                             stderr=subprocess.STDOUT, pass_fds=(self.lock.fd,),
                                             preexec_fn=child_setup(os.getpid(), dies_with_parent()))
        except BaseException:
            self._release_lock()
            raise
        self.started = time.time()
        self.files.write_state(state=RUNNING, pid=self.proc.pid, job_id=self.job_id,
                               gpu=self.env.get("CUDA_VISIBLE_DEVICES"))
        return True

    def poll(self) -> Optional[str]:
        assert self.proc is not None
        rc = self.proc.poll()
        if rc is None:
            return None
        return self._finish(rc)

    def wait(self) -> str:
        assert self.proc is not None
        try:
            return self._finish(self.proc.wait())
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop train.py if it still runs (the sweep was interrupted); its checkpoints stay for a resume."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._release_lock()

    def _release_lock(self) -> None:
        """Close the sweep's descriptor of the run's lock; train.py's copy, if it still runs, keeps it held."""
        if self.lock is not None:
            self.lock.release()

    def _finish(self, rc: int) -> str:
        self.returncode = rc
        state = DONE if rc == 0 and is_done(self.repo_root, self.run) else FAILED
        self.files.write_state(state=state, returncode=rc, job_id=self.job_id, seconds=round(time.time() - self.started, 1))
        self._release_lock()
        return state
