"""Start one run of a sweep as a ``train.py`` process, under its lock, with its output captured."""
import os
import shlex
import signal
import subprocess
import sys
import time
from typing import Dict, Optional

from .plan import Run
from .state import DONE, FAILED, RUNNING, RunFiles, RunLock, is_done


def _ignore_preemption_signal() -> None:
    # SLURM signals every process of a job before a time-out; the sweep's job process checkpoints and
    # requeues, then stops train.py itself. train.py must not die first and look like a failed run.
    signal.signal(getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")), signal.SIG_IGN)


class RunProcess:
    """A started run: ``poll()`` returns None while it runs, then its state (done or failed)."""

    def __init__(self, repo_root: str, output_root: str, run: Run, env: Dict[str, str], python: str = sys.executable,
                 job_id: str = "") -> None:
        self.repo_root, self.run = repo_root, run
        self.files = RunFiles(repo_root, output_root, run)
        self.lock = RunLock(self.files)
        self.env, self.python, self.job_id = env, python, job_id
        self.proc: Optional[subprocess.Popen] = None
        self.returncode: Optional[int] = None
        self.started = 0.0

    def start(self) -> bool:
        """Start train.py; False when another process holds the run's lock (it is running elsewhere)."""
        if not self.lock.acquire():
            return False
        command = self.run.command(self.python)
        os.makedirs(self.files.dir, exist_ok=True)
        try:
            with open(self.files.output, "a", encoding="utf-8") as out:
                out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(command)}\n")
                out.flush()
                self.proc = subprocess.Popen(command, cwd=self.repo_root, env=self.env, stdout=out,
                                             stderr=subprocess.STDOUT, preexec_fn=_ignore_preemption_signal)
        except BaseException:
            self.lock.release()
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
        self.lock.release()

    def _finish(self, rc: int) -> str:
        self.returncode = rc
        state = DONE if rc == 0 and is_done(self.repo_root, self.run) else FAILED
        self.files.write_state(state=state, returncode=rc, job_id=self.job_id, seconds=round(time.time() - self.started, 1))
        self.lock.release()
        return state
