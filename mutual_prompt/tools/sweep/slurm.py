"""Run a sweep through submitit: SLURM job arrays (or submitit's local executor, which CI uses).

One array task per *chain*: a training and the tests that load it, run one after another in the
task (a test never waits in the queue for its training). On a time-out or preemption submitit
catches SLURM's signal, requeues the task, and the requeued task runs the chain again: finished runs
are skipped and the interrupted training resumes from its last checkpoint in the same folder, which
ends with the same weights as an uninterrupted run (``TRAIN.CHECKPOINT_FREQ 1`` keeps a checkpoint
after every epoch; by default only the last epoch is saved and a requeued training starts over).
"""
import os
import sys
import time
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .plan import Run
from .runner import RunProcess
from .state import BLOCKED, DONE, FAILED, QUEUED, RunFiles, is_done

try:
    import submitit
    from submitit.helpers import Checkpointable
except ImportError:  # the optional extra: pip install -e ".[slurm]"
    submitit = None
    Checkpointable = object


SUBMITIT_MISSING = "the SLURM executor needs submitit: pip install -e \".[slurm]\" (or pip install submitit)"


def require_submitit() -> None:
    if submitit is None:
        raise RuntimeError(SUBMITIT_MISSING)


@dataclass
class SlurmOptions:
    """Resources of each array task; ``sbatch`` holds any other ``#SBATCH`` option (name -> value)."""

    partition: str = ""
    gpus_per_node: int = 1
    cpus_per_task: int = 8
    mem_gb: float = 32
    timeout_min: int = 24 * 60
    array_parallelism: int = 256
    max_timeouts: int = 3
    sbatch: Dict[str, Any] = field(default_factory=dict)

    def executor_parameters(self) -> Dict[str, Any]:
        params: Dict[str, Any] = dict(gpus_per_node=self.gpus_per_node, cpus_per_task=self.cpus_per_task,
                                      mem_gb=self.mem_gb, timeout_min=self.timeout_min, tasks_per_node=1, nodes=1,
                                      slurm_array_parallelism=self.array_parallelism)
        if self.partition:
            params["slurm_partition"] = self.partition
        if self.sbatch:
            params["slurm_additional_parameters"] = dict(self.sbatch)
        return params


SLURM_OPTIONS = tuple(f.name for f in fields(SlurmOptions))


def chains(runs: Sequence[Run], repo_root: str) -> List[List[Run]]:
    """Unfinished runs grouped as (training, tests that load it); a run without that relation alone."""
    todo = [r for r in runs if not is_done(repo_root, r)]
    by_dir = {r.output_dir: r for r in runs}
    groups: Dict[str, List[Run]] = {}
    for run in todo:
        head = next((d for d in run.depends_on if d in by_dir), run.output_dir)
        groups.setdefault(head, []).append(run)
    ordered = []
    for head, members in groups.items():
        members.sort(key=lambda r: r.output_dir != head)  # the training first
        ordered.append(members)
    return ordered


class RunChain(Checkpointable):
    """The array task: run each unfinished run of a chain in order (checkpoint() = resubmit as is)."""

    def __call__(self, repo_root: str, output_root: str, chain: List[Run], env: Dict[str, str]) -> Dict[str, str]:
        job_id = submitit.JobEnvironment().job_id
        states: Dict[str, str] = {}
        for run in chain:
            files = RunFiles(repo_root, output_root, run)
            if any(states.get(dep) in (FAILED, BLOCKED) for dep in run.depends_on):
                states[run.output_dir] = BLOCKED
                files.write_state(state=BLOCKED, job_id=job_id, reason="a run it depends on did not finish")
                continue
            if is_done(repo_root, run):
                states[run.output_dir] = DONE
                continue
            proc = RunProcess(repo_root, output_root, run, dict(os.environ, **env), sys.executable, job_id=job_id)
            while not proc.start():  # another job runs it now: wait for it, never two runs in one folder
                time.sleep(10)
                if is_done(repo_root, run):
                    break
            states[run.output_dir] = proc.wait() if proc.proc is not None else DONE
        failed = [d for d, s in states.items() if s in (FAILED, BLOCKED)]
        if failed:
            raise RuntimeError("runs did not finish: " + ", ".join(failed))
        return states


def submit(repo_root: str, output_root: str, runs: Sequence[Run], options: SlurmOptions, cluster: Optional[str],
           env: Dict[str, str]) -> List[Tuple[Any, List[Run]]]:
    """Submit one job array of chains; returns (submitit job, chain) pairs."""
    require_submitit()
    groups = chains(runs, repo_root)
    if not groups:
        return []
    folder = os.path.join(repo_root, output_root, ".sweep", "submitit", "%j")
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster, slurm_max_num_timeout=options.max_timeouts)
    executor.update_parameters(name="mutual_prompt_sweep", **options.executor_parameters())
    for chain in groups:  # before submitting: a task that starts at once then writes its own state
        for run in chain:
            RunFiles(repo_root, output_root, run).write_state(state=QUEUED)
    jobs = executor.map_array(RunChain(), [repo_root] * len(groups), [output_root] * len(groups), groups,
                              [env] * len(groups))
    return list(zip(jobs, groups))
