"""The sweep's plan is the scripts' work: same folders, same train.py command lines, same order.

The scripts run with a recording interpreter (``PYTHON``): it writes each ``train.py`` argument list
to a file instead of training, skips the summaries (nothing ran), and runs everything else (the skip
check, the config reader) for real.
"""
import json
import os
import subprocess
import sys

import pytest

from mutual_prompt.sweep import cli
from mutual_prompt.sweep.plan import Ablation, Settings, expand, protocol_runs
from mutual_prompt.sweep.state import PENDING, RunFiles, run_status

RECORDER = """#!/bin/bash
if [ "$1" = train.py ]; then
  "{python}" -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "${{@:2}}" >> "{record}"
elif [ "$1" != parse_test_res.py ]; then
  exec "{python}" "$@"
fi
"""


def recorded_commands(repo_root, tmp_path, script, *args, **env):
    record = tmp_path / "record.jsonl"
    record.unlink(missing_ok=True)
    shim = tmp_path / "python"
    shim.write_text(RECORDER.format(python=sys.executable, record=record))
    shim.chmod(0o755)
    full_env = dict(os.environ, PYTHON=str(shim), **env)
    proc = subprocess.run(["bash", script, *args], cwd=repo_root, env=full_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []


def settings(repo_root, tmp_path, **kw):
    return Settings(repo_root=repo_root, data=str(tmp_path / "data"), output=str(tmp_path / "out"), **kw)


ENV = dict(TRAINER="MutualPrompt", SHOTS="4")


@pytest.mark.parametrize("protocol, script, env, kw", [
    ("base2new", "scripts/reproduce_base2new.sh", dict(CFG="toy", DATASETS="toy_shapes dtd", SEEDS="1 2"),
     dict(cfg="toy", datasets=("toy_shapes", "dtd"), seeds=(1, 2))),
    ("base2new", "scripts/reproduce_base2new.sh", dict(DATASETS="eurosat", SEEDS="3", LOADEP="7"),
     dict(datasets=("eurosat",), seeds=(3,), load_epoch=7)),
    ("xd", "scripts/reproduce_xd.sh", dict(SEEDS="1 2", TARGETS="dtd imagenetv2"),
     dict(seeds=(1, 2), targets=("dtd", "imagenetv2"))),
    ("xd", "scripts/reproduce_xd.sh", dict(CFG="toy", SOURCE="toy_shapes", SEEDS="1", TARGETS="toy_shapes"),
     dict(cfg="toy", source="toy_shapes", seeds=(1,), targets=("toy_shapes",))),
    ("few_shot", "scripts/reproduce_few_shot.sh", dict(DATASETS="dtd caltech101", SHOT_LIST="1 4", SEEDS="1 2"),
     dict(datasets=("dtd", "caltech101"), shot_list=(1, 4), seeds=(1, 2))),
])
def test_sweep_commands_are_the_scripts_commands(repo_root, tmp_path, protocol, script, env, kw):
    opts = ("TRAINER.MUTUAL_PROMPT.TVP.TOPK", "3")
    s = settings(repo_root, tmp_path, shots=4, opts=opts, **kw)
    expected = [list(run.args) for run in protocol_runs(protocol, s)]
    got = recorded_commands(repo_root, tmp_path, script, *opts, DATA=s.data, OUTPUT=s.output, **ENV, **env)
    assert got == expected
    assert len(got) == {"base2new": 2, "xd": 1 + len(s.targets), "few_shot": len(s.shot_list)}[protocol] * (
        len(s.seeds) * (1 if protocol == "xd" else len(s.datasets)))


def test_an_ablation_is_the_scripts_run_into_its_own_output(repo_root, tmp_path):
    s = settings(repo_root, tmp_path, cfg="toy", datasets=("toy_shapes",), seeds=(1,), shots=4)
    variants = expand("base2new", s, [Ablation("no_tvp", opts=("TRAINER.MUTUAL_PROMPT.TVP.ENABLED", "False")),
                                      Ablation("cocoop", cfg="toy_cocoop")])
    assert [v.name for v in variants] == ["main", "no_tvp", "cocoop"]
    ablation_out = f"{s.output}/ablations/no_tvp"
    got = recorded_commands(repo_root, tmp_path, "scripts/reproduce_base2new.sh", "TRAINER.MUTUAL_PROMPT.TVP.ENABLED",
                            "False", DATA=s.data, OUTPUT=ablation_out, CFG="toy", DATASETS="toy_shapes", SEEDS="1", **ENV)
    assert got == [list(run.args) for run in variants[1].runs]
    got = recorded_commands(repo_root, tmp_path, "scripts/reproduce_base2new.sh", DATA=s.data, OUTPUT=s.output,
                            CFG="toy_cocoop", DATASETS="toy_shapes", SEEDS="1", **ENV)
    assert got == [list(run.args) for run in variants[2].runs]


def test_two_runs_into_one_folder_are_refused(repo_root, tmp_path):
    s = settings(repo_root, tmp_path, cfg="toy", datasets=("toy_shapes",), seeds=(1,))
    with pytest.raises(ValueError, match="Two runs of the sweep write into"):
        expand("base2new", s, [Ablation("same", cfg="toy")])


def test_tests_depend_on_their_training(repo_root, tmp_path):
    s = settings(repo_root, tmp_path, datasets=("dtd",), seeds=(1,), targets=("dtd", "eurosat"))
    train, test = protocol_runs("base2new", s)
    assert test.depends_on == (train.output_dir,) and train.depends_on == ()
    xd = protocol_runs("xd", s)
    assert [r.depends_on for r in xd[1:]] == [(xd[0].output_dir,)] * 2


def test_reproduce_script_hands_its_work_to_the_sweep(repo_root, tmp_path):
    """SWEEP="..." bash scripts/reproduce_*.sh runs the sweep with the script's settings instead."""
    env = dict(os.environ, SWEEP="--dry-run", DATA=str(tmp_path / "data"), OUTPUT=str(tmp_path / "out"), CFG="toy",
               DATASETS="toy_shapes", SEEDS="1 2", SHOTS="4", PYTHON=sys.executable)
    proc = subprocess.run(["bash", "scripts/reproduce_base2new.sh", "OPTIM.MAX_EPOCH", "2"], cwd=repo_root, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    s = settings(repo_root, tmp_path, cfg="toy", datasets=("toy_shapes",), seeds=(1, 2), shots=4,
                 opts=("OPTIM.MAX_EPOCH", "2"))
    runs = protocol_runs("base2new", s)
    assert "Plan: 4 runs" in proc.stdout
    for run in runs:
        assert run.shell() in proc.stdout


def test_config_file_and_flags(repo_root, tmp_path):
    config = tmp_path / "sweep.yaml"
    config.write_text("datasets: [dtd, eurosat]\nseeds: [1]\nshot-list: [2]\n"
                      "slurm: {partition: gpu, timeout_min: 90, sbatch: {account: proj}}\n"
                      "ablations: {no_tvp: {opts: [TRAINER.MUTUAL_PROMPT.TVP.ENABLED, 'False']}}\n")
    args = cli.parse_args(["run", "few_shot", "--config", str(config), "--seeds", "2", "3", "--repo", repo_root,
                           "--executor", "slurm", "--mem-gb", "64", "--sbatch", "qos=high", "OPTIM.MAX_EPOCH", "1"])
    s = cli.settings_from_args(args)
    assert s.datasets == ("dtd", "eurosat") and s.seeds == (2, 3) and s.shot_list == (2,)
    assert s.opts == ("OPTIM.MAX_EPOCH", "1")
    assert [a.name for a in cli.ablations_from_args(args)] == ["no_tvp"]
    params = cli.slurm_options(args).executor_parameters()
    assert params["slurm_partition"] == "gpu" and params["timeout_min"] == 90 and params["mem_gb"] == 64
    assert params["slurm_additional_parameters"] == {"account": "proj", "qos": "high"}
    config.write_text("seedz: [1]\n")
    with pytest.raises(SystemExit, match="unknown option 'seedz'"):
        cli.parse_args(["run", "few_shot", "--config", str(config)])


def test_status_of_an_untouched_run_is_pending(repo_root, tmp_path):
    s = settings(repo_root, tmp_path, datasets=("dtd",), seeds=(1,))
    run = protocol_runs("base2new", s)[0]
    assert run_status(repo_root, s.output, run).state == PENDING
    assert RunFiles(repo_root, s.output, run).dir.startswith(os.path.join(s.output, ".sweep", "runs", "base2new"))


def test_slurm_job_array_from_flags(repo_root, tmp_path, monkeypatch):
    """What sbatch receives: one array task per chain (training + its tests), the resources asked for
    (at most 7 tasks at once, here the 2 there are),
    submitit's requeue signal; a fake sbatch records the script (no cluster here)."""
    pytest.importorskip("submitit")
    from mutual_prompt.sweep import slurm

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\ncp "$1" "{tmp_path}/job.sh"\necho "Submitted batch job 4242"\n')
    for tool in ("srun", "sbatch"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    args = cli.parse_args(["run", "base2new", "--repo", repo_root, "--output", str(tmp_path / "out"), "--datasets", "dtd",
                           "eurosat", "--seeds", "1", "--executor", "slurm", "--partition", "gpu", "--time", "90",
                           "--mem-gb", "48", "--cpus-per-task", "6", "--array-parallelism", "7", "--sbatch", "account=proj"])
    s = cli.settings_from_args(args)
    runs = protocol_runs("base2new", s)
    submitted = slurm.submit(repo_root, s.output, runs, cli.slurm_options(args), "slurm", {})
    assert [[r.output_dir for r in chain] for _, chain in submitted] == [[r.output_dir for r in runs[:2]],
                                                                          [r.output_dir for r in runs[2:]]]
    assert [job.job_id for job, _ in submitted] == ["4242_0", "4242_1"]
    script = (tmp_path / "job.sh").read_text()
    for line in ("#SBATCH --partition=gpu", "#SBATCH --time=90", "#SBATCH --mem=48GB", "#SBATCH --cpus-per-task=6",
                 "#SBATCH --array=0-1%2", "#SBATCH --account=proj", "#SBATCH --signal=USR2@", "#SBATCH --gpus-per-node=1"):
        assert line in script, (line, script)
    assert all(run_status(repo_root, s.output, r).state == "queued" for r in runs)
