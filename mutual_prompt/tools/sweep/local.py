"""Run a sweep on this machine, N runs at a time: one per GPU slot, or N CPU processes.

A run starts when every run it depends on is done; a run whose dependency failed is reported as
blocked and never started; everything else goes on when one run fails. A run whose lock another
process holds (another sweep, or the train.py of a killed one) is reported as waiting and started
here only if it ends without a result.
"""
import os
import time
from typing import Callable, Dict, List, Optional, Sequence, Set

from .plan import Run
from .runner import RunProcess
from .state import BLOCKED, DONE, FAILED, RunFiles, failed_detail, holder, is_done

Event = Callable[[str, Run, str], None]
WAITING = "waiting"


def slot_envs(gpus: Optional[Sequence[str]], jobs: Optional[int], base_env: Dict[str, str]) -> List[Dict[str, str]]:
    """One environment per slot: ``CUDA_VISIBLE_DEVICES=<gpu>`` for each GPU, or N CPU processes that
    see no GPU and share the cores (``OMP_NUM_THREADS`` = cores / N unless it is set); neither: one
    process with the environment as it is, like the scripts."""
    if gpus:
        return [dict(base_env, CUDA_VISIBLE_DEVICES=str(g)) for g in gpus]
    if jobs:
        threads = base_env.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // jobs))
        return [dict(base_env, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS=threads) for _ in range(jobs)]
    return [dict(base_env)]


def slot_name(env: Dict[str, str]) -> str:
    gpu = env.get("CUDA_VISIBLE_DEVICES")
    return f"GPU {gpu}" if gpu else ("CPU" if gpu == "" else "default device")


class LocalPool:
    def __init__(self, repo_root: str, output_root: str, runs: Sequence[Run], envs: Sequence[Dict[str, str]],
                 python: str, on_event: Event, poll_s: float = 0.5) -> None:
        self.repo_root, self.output_root = repo_root, output_root
        self.runs, self.envs, self.python = list(runs), list(envs), python
        self.on_event, self.poll_s = on_event, poll_s
        self.states: Dict[str, str] = {}
        self.waiting: Set[str] = set()  # runs reported as held by another process

    def _deps_state(self, run: Run) -> str:
        """"ready", "wait" or "blocked" (a dependency failed or is blocked)."""
        for dep in run.depends_on:
            state = self.states.get(dep)
            if state in (FAILED, BLOCKED):
                return "blocked"
            if state != DONE:
                return "wait"
        return "ready"

    def _report_waiting(self, proc: RunProcess) -> None:
        """Say once that a run is held by another process, naming it, and that this sweep waits."""
        if proc.run.output_dir in self.waiting:
            return
        self.waiting.add(proc.run.output_dir)
        self.on_event(WAITING, proc.run, f"in use by {holder(proc.files.read_state())}: another sweep, or a "
                                         "train.py left by a killed one; starts here if it ends without a result")

    def run(self) -> Dict[str, str]:
        """Execute every unfinished run; returns the final state of each (by output folder)."""
        pending: List[Run] = []
        for run in self.runs:
            if is_done(self.repo_root, run):
                self.states[run.output_dir] = DONE
            else:
                pending.append(run)
        free = list(range(len(self.envs)))
        active: Dict[int, RunProcess] = {}
        try:
            while pending or active:
                for slot, proc in list(active.items()):
                    state = proc.poll()
                    if state is not None:
                        del active[slot]
                        free.append(slot)
                        self.states[proc.run.output_dir] = state
                        detail = failed_detail(proc.run, proc.files, proc.returncode) if state == FAILED else "exit code 0"
                        self.on_event(state, proc.run, detail)
                for run in list(pending):
                    deps = self._deps_state(run)
                    if deps == "blocked":
                        pending.remove(run)
                        self.states[run.output_dir] = BLOCKED
                        reason = "a run it depends on did not finish: " + ", ".join(run.depends_on)
                        RunFiles(self.repo_root, self.output_root, run).write_state(state=BLOCKED, reason=reason)
                        self.on_event(BLOCKED, run, reason)
                    elif deps == "ready" and free:
                        if is_done(self.repo_root, run):  # finished meanwhile by another process
                            pending.remove(run)
                            self.states[run.output_dir] = DONE
                            self.on_event(DONE, run, "finished by another process")
                            continue
                        slot = free.pop(0)
                        proc = RunProcess(self.repo_root, self.output_root, run, self.envs[slot], self.python)
                        if proc.start():
                            pending.remove(run)
                            active[slot] = proc
                            self.on_event("started", run, f"slot {slot + 1}, {slot_name(self.envs[slot])}")
                        else:
                            free.insert(0, slot)
                            self._report_waiting(proc)
                if pending or active:
                    time.sleep(self.poll_s)
        finally:
            for proc in active.values():
                proc.stop()
        return self.states
