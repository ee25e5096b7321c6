"""Execute a sweep with a live view: a progress bar over all runs and one line per event."""
import sys
import time
from typing import Dict, List, Optional, Sequence

from tqdm import tqdm

from .local import LocalPool, slot_envs, slot_name
from .plan import Run, Settings
from .report import STATE_WIDTH, status_lines
from .slurm import SlurmOptions, submit
from .state import DONE, FAILED, INTERRUPTED, RUNNING, RunFiles, sweep_status


def _bar(total: int, done: int) -> tqdm:
    return tqdm(total=total, initial=done, desc="sweep", unit="run", file=sys.stderr, dynamic_ncols=True)


def run_local(settings: Settings, runs: Sequence[Run], gpus: Optional[List[str]], jobs: Optional[int],
              env: Dict[str, str], poll_s: float = 0.5) -> Dict[str, str]:
    envs = slot_envs(gpus, jobs, env)
    statuses = sweep_status(settings.repo_root, settings.output, list(runs))
    bar = _bar(len(runs), sum(s.state == DONE for s in statuses))
    running: Dict[str, str] = {}

    def on_event(event: str, run: Run, detail: str) -> None:
        if event == "started":
            running[run.output_dir] = detail
        else:
            running.pop(run.output_dir, None)
        if event == DONE:
            bar.update(1)
        lines = [f"{event:<{STATE_WIDTH}} {run.output_dir}  ({detail})"]
        if event == FAILED:
            lines += [f"    | {line}" for line in RunFiles(settings.repo_root, settings.output, run).tail()]
        for line in lines:
            bar.write(line, file=sys.stderr)
        bar.set_postfix_str(f"{len(running)} running", refresh=True)

    print(f"Sweep: {len(runs)} runs, {len(envs)} at a time ({', '.join(slot_name(e) for e in envs)})", file=sys.stderr)
    try:
        return LocalPool(settings.repo_root, settings.output, runs, envs, sys.executable, on_event, poll_s).run()
    finally:
        bar.close()


def run_submitit(settings: Settings, runs: Sequence[Run], options: SlurmOptions, cluster: str, env: Dict[str, str],
                 detach: bool = False, poll_s: float = 5.0) -> None:
    """Submit the unfinished runs as one job array and, unless detached, follow them until they end."""
    submitted = submit(settings.repo_root, settings.output, runs, options, cluster, _job_env(env))
    if not submitted:
        print("Nothing to submit: every run is finished.", file=sys.stderr)
        return
    print(f"Submitted {len(submitted)} jobs ({cluster}): " + ", ".join(str(job.job_id) for job, _ in submitted),
          file=sys.stderr)
    if detach:
        print(f"Follow them with: python -m mutual_prompt.sweep status <protocol> --output {settings.output} "
              "(it remembers this run's options)", file=sys.stderr)
        return
    follow(settings, runs, [job for job, _ in submitted], poll_s)


def follow(settings: Settings, runs: Sequence[Run], jobs: Sequence, poll_s: float) -> None:
    """Print state changes and a progress bar until every job has ended."""
    last: Dict[str, str] = {}
    statuses = sweep_status(settings.repo_root, settings.output, list(runs))
    bar = _bar(len(runs), sum(s.state == DONE for s in statuses))
    try:
        while True:
            finished = all(job.done() for job in jobs)
            statuses = sweep_status(settings.repo_root, settings.output, list(runs))
            for s in statuses:
                if last.get(s.run.output_dir) not in (None, s.state) or (s.run.output_dir not in last and s.state != DONE):
                    if s.state == DONE:
                        bar.update(1)
                    if s.state in (DONE, FAILED, RUNNING, INTERRUPTED):
                        for line in status_lines([s]):
                            bar.write(line, file=sys.stderr)
                last[s.run.output_dir] = s.state
            bar.set_postfix_str(f"{sum(s.state == RUNNING for s in statuses)} running", refresh=True)
            if finished:
                return
            time.sleep(poll_s)
    finally:
        bar.close()


def _job_env(env: Dict[str, str]) -> Dict[str, str]:
    """What a job adds to its node's environment: the settings that pick the code path (not secrets,
    not the login node's paths)."""
    keys = [k for k in env if k.startswith(("MUTUAL_PROMPT_", "OMP_NUM_THREADS"))]
    return {k: env[k] for k in keys}
