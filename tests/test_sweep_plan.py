"""The sweep's plan is the scripts' work: same folders, same train.py command lines, same order,
both from the one definition of each protocol (``scripts/protocols.sh``).

The scripts run with a recording interpreter (``PYTHON``): it writes each ``train.py`` argument list
to a file instead of training, skips the summaries (nothing ran), and runs everything else (the skip
check, the load epoch) for real.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from helpers.dataset_loading import load
from helpers.dataset_trees import TREES
from mutual_prompt.tools import protocols
from mutual_prompt.tools.sweep import cli
from mutual_prompt.tools.sweep.plan import Ablation, Settings, expand, protocol_runs
from mutual_prompt.tools.sweep.report import summary_lines
from mutual_prompt.tools.sweep.state import PENDING, RunFiles, run_status

BY_CONFIG = {tree.config: tree for tree in TREES}

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


TOPK = ("TRAINER.MUTUAL_PROMPT.TVP.TOPK", "3")


@pytest.mark.parametrize("protocol, script, env, kw, opts", [
    ("base2new", "scripts/reproduce_base2new.sh", dict(CFG="toy", DATASETS="toy_shapes dtd", SEEDS="1 2"),
     dict(cfg="toy", datasets=("toy_shapes", "dtd"), seeds=(1, 2)), TOPK),
    ("base2new", "scripts/reproduce_base2new.sh", dict(DATASETS="eurosat", SEEDS="3", LOADEP="7"),
     dict(datasets=("eurosat",), seeds=(3,), load_epoch=7), TOPK),
    ("base2new", "scripts/reproduce_base2new.sh", dict(DATASETS="eurosat", SEEDS="1", SUB="base"),
     dict(datasets=("eurosat",), seeds=(1,), sub="base"), TOPK),
    ("xd", "scripts/reproduce_xd.sh", dict(SEEDS="1 2", TARGETS="dtd imagenetv2"),
     dict(seeds=(1, 2), targets=("dtd", "imagenetv2")), TOPK),
    ("xd", "scripts/reproduce_xd.sh", dict(CFG="toy", SOURCE="toy_shapes", SEEDS="1", TARGETS="toy_shapes"),
     dict(cfg="toy", source="toy_shapes", seeds=(1,), targets=("toy_shapes",)), TOPK),
    ("few_shot", "scripts/reproduce_few_shot.sh", dict(DATASETS="dtd caltech101", SHOT_LIST="1 4", SEEDS="1 2"),
     dict(datasets=("dtd", "caltech101"), shot_list=(1, 4), seeds=(1, 2)), TOPK),
])
def test_sweep_commands_are_the_scripts_commands(repo_root, tmp_path, protocol, script, env, kw, opts):
    s = settings(repo_root, tmp_path, shots=4, opts=opts, **kw)
    expected = [list(run.args) for run in protocol_runs(protocol, s)]
    got = recorded_commands(repo_root, tmp_path, script, *opts, DATA=s.data, OUTPUT=s.output, **ENV, **env)
    assert got == expected
    zero_shot = len(s.datasets) if protocol == "few_shot" else 0  # one zero-shot CLIP run per dataset
    # few_shot: each training beside a linear-probe CLIP run of the same shots and seed
    per_seed = {"base2new": 2, "xd": 1 + len(s.targets), "few_shot": 2 * len(s.shot_list)}[protocol]
    assert len(got) == zero_shot + per_seed * (
        len(s.seeds) * (1 if protocol == "xd" else len(s.datasets)))


def test_the_few_shot_script_ends_with_the_sweeps_few_shot_table(repo_root, tmp_path):
    """reproduce_few_shot.sh ends as ``sweep status few_shot --tables`` does: datasets x shots, with
    zero-shot CLIP and the linear probe (here before any result: every cell empty, and lines that say so)."""
    shim = tmp_path / "python"
    shim.write_text(RECORDER.format(python=sys.executable, record=tmp_path / "record.jsonl"))
    shim.chmod(0o755)
    env = dict(os.environ, PYTHON=str(shim), DATA=str(tmp_path / "data"), OUTPUT=str(tmp_path / "out"),
               TRAINER="MutualPrompt", DATASETS="dtd caltech101", SHOT_LIST="1 4", SEEDS="1")
    proc = subprocess.run(["bash", "scripts/reproduce_few_shot.sh", *TOPK], cwd=repo_root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = proc.stdout[proc.stdout.index("== few_shot: MutualPrompt / vit_b16_c4_ep10_batch4_ctxv1_fewshot"):]
    header = next(line for line in table.splitlines() if line.startswith("Dataset"))
    assert header.split() == ["Dataset", "zero-shot", "CLIP", "1", "shot", "4", "shots"]
    assert [line.split()[0] for line in table.splitlines() if line.startswith(("dtd", "caltech101"))] == \
        ["dtd", "caltech101"]
    assert "no zero-shot CLIP result yet for dtd" in table


def test_the_scripts_test_the_last_epoch_of_an_overridden_training_as_the_sweep_does(repo_root, tmp_path):
    """``OPTIM.MAX_EPOCH N`` among the overrides: both test the checkpoint of epoch N (LOADEP unset)."""
    s = settings(repo_root, tmp_path, cfg="toy", seeds=(2,), targets=("dtd",), opts=("OPTIM.MAX_EPOCH", "3"))
    got = recorded_commands(repo_root, tmp_path, "scripts/xd_test.sh", "dtd", "2", *s.opts, DATA=s.data,
                            OUTPUT=s.output, CFG="toy")
    assert got == [list(protocol_runs("xd", s)[1].args)]
    assert got[0][got[0].index("--load-epoch") + 1] == "3"


EDITED = {  # a changed definition of base-to-new: every kind of value, and the folders' layout
    "BASE2NEW_CFG": "toy",
    "BASE2NEW_DATASETS": '"toy_shapes dtd"',
    "BASE2NEW_SEEDS": '"5"',
    "BASE2NEW_SHOTS": "2",
    "BASE2NEW_TRAIN_DIR": "'{OUTPUT}/b2n/{TRAINER}/{CFG}/{DATASET}_{SHOTS}shots/base'",
    "BASE2NEW_TEST_DIR": "'{OUTPUT}/b2n/{TRAINER}/{CFG}/{DATASET}_{SHOTS}shots/{SUB}'",
    "BASE2NEW_TEST_OPTS": "'DATASET.NUM_SHOTS {SHOTS} DATASET.SUBSAMPLE_CLASSES {SUB} TEST.FINAL_MODEL last_step'",
}


def edited_checkout(repo_root, tmp_path, edits):
    """A checkout with this one's configs, run scripts and a fake train.py, its protocols.sh edited:
    each NAME in ``edits`` gets the given value (or its line is replaced by ``edits[NAME]`` when that
    holds an ``=``)."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "train.py").write_text("")
    os.symlink(os.path.join(repo_root, "configs"), checkout / "configs")
    shutil.copytree(os.path.join(repo_root, "scripts"), checkout / "scripts")
    definition = checkout / "scripts" / "protocols.sh"
    lines = definition.read_text().splitlines()
    for name, value in edits.items():
        (i,) = [i for i, line in enumerate(lines) if line.startswith(f"{name}=")]
        lines[i] = value if "=" in value else f"{name}={value}"
    definition.write_text("\n".join(lines) + "\n")
    return checkout, definition


def test_an_edited_definition_changes_the_scripts_and_the_sweep_alike(repo_root, tmp_path, monkeypatch):
    checkout, definition = edited_checkout(repo_root, tmp_path, EDITED)
    monkeypatch.setattr(protocols, "PROTOCOLS_FILE", str(definition))
    out = str(tmp_path / "out")
    got = recorded_commands(str(checkout), tmp_path, "scripts/reproduce_base2new.sh", *TOPK, OUTPUT=out,
                            DATA=str(tmp_path / "data"), TRAINER="MutualPrompt")
    runs = protocol_runs("base2new", Settings(repo_root=str(checkout), data=str(tmp_path / "data"), output=out,
                                              opts=TOPK))
    assert got == [list(run.args) for run in runs]
    assert [run.output_dir for run in runs] == [f"{out}/b2n/MutualPrompt/toy/{ds}_2shots/{split}/seed5"
                                                for ds in ("toy_shapes", "dtd") for split in ("base", "new")]
    assert runs[1].args[-4:] == ("TEST.FINAL_MODEL", "last_step", *TOPK)


def test_a_template_naming_a_value_the_script_lacks_stops_the_script(repo_root, tmp_path):
    """What the sweep refuses when it reads the file (tests/test_protocols.py), bash refuses when it fills."""
    checkout, _ = edited_checkout(repo_root, tmp_path, {"BASE2NEW_TRAIN_DIR": "'{OUTPUT}/{SOURCE}'"})
    env = {k: v for k, v in os.environ.items() if k != "SOURCE"}
    proc = subprocess.run(["bash", "scripts/base2new_train.sh", "dtd", "1"], cwd=checkout, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stdout
    assert proc.stderr == "protocols.sh: {SOURCE} in '{OUTPUT}/{SOURCE}' needs SOURCE, which is not set\n"


def test_the_summaries_read_the_folders_of_the_definition(repo_root, tmp_path):
    """The cross-dataset and few-shot summaries at the end of a sweep read the runs' folders."""
    for protocol, kw in (("xd", dict(targets=("dtd",), source="toy_shapes")), ("few_shot", dict(shot_list=(2,)))):
        s = settings(repo_root, tmp_path, cfg="toy", seeds=(1, 2), datasets=("dtd",), **kw)
        (variant,) = expand(protocol, s)
        run = [r for r in variant.runs if r.kind in ("train", "test")][-1]
        os.makedirs(run.output_dir)
        with open(os.path.join(run.output_dir, "log.txt"), "w") as f:
            f.write(f"{run.end_signal}\n* accuracy: 61.5%\n")
        lines = summary_lines(repo_root, variant)
        folder = os.path.dirname(run.output_dir)
        assert lines[1:5] == [f"Parsing files in {folder}", "seed2: accuracy: 61.50%",
                              f"missing: seed1 has no result after '{run.end_signal}'", "==="]
        assert f"Summary of directory: {folder}" in lines


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


def test_config_file_and_flags(repo_root, tmp_path, capsys):
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
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(["run", "few_shot", "--config", str(config)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"python -m mutual_prompt.sweep run: error: {config}: unknown option 'seedz'; expected one of ")
    assert err.count("\n") == 1


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
    from mutual_prompt.tools.sweep import slurm

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


PROG = "python -m mutual_prompt.sweep"
OPTION_ENV = ("DATA", "OUTPUT", "TRAINER", "CFG", "SHOTS", "SEEDS", "DATASETS", "TARGETS", "SOURCE", "SHOT_LIST", "SUB",
              "LOADEP")


@pytest.fixture
def clean_env(monkeypatch):
    """No option from the calling shell's environment."""
    for name in OPTION_ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def sweep_main(repo_root, tmp_path, *args, protocol="base2new"):
    """The sweep's main in this process, on the toy world, with a data folder that exists."""
    (tmp_path / "data").mkdir(exist_ok=True)
    return cli.main(["run", protocol, "--repo", repo_root, "--output", str(tmp_path / "out"), "--data",
                     str(tmp_path / "data"), "--cfg", "toy", "--datasets", "toy_shapes", *args])


@pytest.mark.parametrize("args, env, message", [
    (["--jobs", "-2"], {}, "--jobs: expected a number of processes >= 1; got -2"),
    (["--jobs", "0"], {}, "--jobs: expected a number of processes >= 1; got 0"),
    (["--gpus", "0,,1"], {}, "--gpus: expected comma-separated GPU ids such as 0,1,2,3; got '0,,1'"),
    (["--gpus", "0,1", "--jobs", "2"], {}, "--gpus and --jobs exclude each other (one run per GPU id, or N processes "
                                           "on the CPU)"),
    (["--seeds", "-1"], {}, "--seeds: expected seeds >= 0 (a negative seed leaves the run unseeded); got -1"),
    (["--seeds", "1", "1"], {}, "--seeds: 1 is given twice (two runs would write into one folder)"),
    (["--shots", "0"], {}, "--shots: expected a number of shots >= 1; got 0"),
    (["--load-epoch", "0"], {}, "--load-epoch: expected an epoch >= 1; got 0"),
    ([], {"SEEDS": "1 -1"}, "SEEDS: expected seeds >= 0 (a negative seed leaves the run unseeded); got -1"),
    ([], {"SHOTS": "0"}, "SHOTS: expected a number of shots >= 1; got 0"),
    ([], {"SHOTS": "four"}, "SHOTS: expected an integer; got 'four'"),
    ([], {"LOADEP": "0"}, "LOADEP: expected an epoch >= 1; got 0"),
    ([], {"SUB": "novel"}, "SUB: expected new or base; got 'novel'"),
    (["--executor", "slurm", "--sbatch", "account"], {}, "--sbatch takes KEY=VALUE (e.g. account=myproject); got "
                                                         "'account'"),
    (["DATASET.NUM_SHOTS", "4"], {}, "the overrides (KEY VALUE): DATASET.NUM_SHOTS is set by the protocol, which names "
                                     "the run folders after it; give --shots (or --shot-list for few_shot) instead"),
    (["--ablation", "sub", "DATASET.SUBSAMPLE_CLASSES all"], {}, "ablation 'sub': DATASET.SUBSAMPLE_CLASSES is set by "
                                                                 "the protocol, which names the run folders after it; "
                                                                 "give --sub (base2new's tests) instead"),
])
def test_bad_option_values_stop_the_sweep_before_anything_runs(repo_root, tmp_path, capsys, clean_env, args, env,
                                                                message):
    for name, value in env.items():
        clean_env.setenv(name, value)
    with pytest.raises(SystemExit) as exit_info:
        sweep_main(repo_root, tmp_path, "--dry-run", *args)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"{PROG} run: error: {message}\n"
    assert not (tmp_path / "out").exists()


def test_bad_shot_list_and_datasets_are_named(repo_root, tmp_path, capsys, clean_env):
    with pytest.raises(SystemExit):
        sweep_main(repo_root, tmp_path, "--dry-run", "--shot-list", "1", "0", protocol="few_shot")
    assert capsys.readouterr().err == f"{PROG} run: error: --shot-list: expected numbers of shots >= 1; got 0\n"
    clean_env.setenv("SHOT_LIST", "0 1")
    with pytest.raises(SystemExit):
        cli.main(["status", "few_shot", "--repo", repo_root, "--output", str(tmp_path / "out")])
    assert capsys.readouterr().err == f"{PROG} status: error: SHOT_LIST: expected numbers of shots >= 1; got 0\n"
    clean_env.delenv("SHOT_LIST")
    with pytest.raises(SystemExit) as exit_info:
        sweep_main(repo_root, tmp_path, "--dry-run", "--datasets", "toy_shapes", "toy_shape")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{PROG} run: error: --datasets: unknown dataset 'toy_shape' (did you mean 'toy_shapes'?); "
                          "valid datasets: caltech101, ")
    assert err.count("\n") == 1
    clean_env.setenv("DATASETS", "dtd eurosta")
    with pytest.raises(SystemExit):
        cli.main(["status", "base2new", "--repo", repo_root, "--output", str(tmp_path / "out")])
    assert capsys.readouterr().err.startswith(f"{PROG} status: error: DATASETS: unknown dataset 'eurosta' (did you mean "
                                              "'eurosat'?); ")
    config = tmp_path / "sweep.yaml"
    config.write_text("seeds: [1, -2]\n")
    with pytest.raises(SystemExit):
        sweep_main(repo_root, tmp_path, "--dry-run", "--config", str(config))
    assert capsys.readouterr().err == (f"{PROG} run: error: {config}: seeds: expected seeds >= 0 (a negative seed "
                                       "leaves the run unseeded); got -2\n")


def test_a_missing_data_folder_stops_the_sweep_before_anything_runs(repo_root, tmp_path, capsys, clean_env):
    """Only the toy world renders its data; any other dataset needs DATA to exist."""
    missing = tmp_path / "no_data"
    args = ["run", "base2new", "--repo", repo_root, "--output", str(tmp_path / "out"), "--cfg", "toy", "--datasets", "dtd"]
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*args, "--data", str(missing)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"{PROG} run: error: --data: no data folder {missing}\n"
    clean_env.setenv("DATA", str(missing))
    with pytest.raises(SystemExit):
        cli.main(args)
    assert capsys.readouterr().err == f"{PROG} run: error: DATA: no data folder {missing}\n"
    assert not (tmp_path / "out").exists()
    assert cli.main([*args, "--dry-run"]) == 0  # the plan needs no data


def test_the_doctors_table_stops_a_real_run_and_the_dry_run_shows_it_with_the_plan(repo_root, tmp_path, capsys,
                                                                                    clean_env):
    data = tmp_path / "data"
    BY_CONFIG["eurosat"].build(str(data))
    load(str(data), "EuroSAT")  # writes the split file
    (data / "eurosat" / "2750" / "Forest" / "Forest_0000.jpg").write_bytes(b"not an image")
    args = ["run", "base2new", "--repo", repo_root, "--output", str(tmp_path / "out"), "--cfg", "toy", "--data",
            str(data), "--datasets", "eurosat", "dtd", "toy_shapes"]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{PROG} run: error: not every dataset is usable; nothing was started\n"
                          f"Datasets under {data} (python -m mutual_prompt.doctor):\n")
    assert re.search(r"^eurosat\s+broken\s+1 of the 25 images checked \(all\) does not", err, flags=re.M)
    assert re.search(r"^dtd\s+missing\s+no folder ", err, flags=re.M) and "toy_shapes" not in err
    assert not (tmp_path / "out").exists()
    assert cli.main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^eurosat\s+broken\s", out, flags=re.M) and "warning: not every dataset is usable here" in out
    assert out.index("Datasets under") < out.index("train_base")  # the table, then the plan


FAKE_TRAIN = """import os, signal, sys, time
out = sys.argv[sys.argv.index("--output-dir") + 1]
os.makedirs(out, exist_ok=True)
mode = os.environ["FAKE_TRAIN"]
print("fake train.py starting in", out)
if mode == "ok":
    with open(os.path.join(out, "log.txt"), "w") as f:
        f.write("Finish training\\n* accuracy: 50.0%\\n")
elif mode == "usage-error":
    print("train.py: error: argument --seed: invalid int value: 'x'", file=sys.stderr)
    sys.exit(2)
elif mode == "traceback":
    raise FileNotFoundError("no folder data/dtd")
elif mode == "killed":
    os.kill(os.getpid(), signal.SIGKILL)
elif mode == "ignores-sigterm":  # a train.py that outlives its sweep, as where no parent-death signal exists
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    open(os.path.join(out, "log.txt"), "w").close()
    while True:
        time.sleep(0.1)
"""


@pytest.fixture
def fake_repo(tmp_path):
    """A checkout whose train.py does what FAKE_TRAIN says, in a second, with the toy world's configs."""
    repo = tmp_path / "repo"
    (repo / "configs" / "datasets").mkdir(parents=True)
    (repo / "configs" / "datasets" / "toy_shapes.yaml").write_text("DATASET: {NAME: ToyShapes}\n")
    (repo / "configs" / "trainers" / "MutualPrompt").mkdir(parents=True)
    (repo / "configs" / "trainers" / "MutualPrompt" / "toy.yaml").write_text("OPTIM: {MAX_EPOCH: 1}\n")
    (repo / "train.py").write_text(FAKE_TRAIN)
    (tmp_path / "data").mkdir()
    return repo


def fake_sweep_command(repo, tmp_path, command="run"):
    """One few-shot run of the fake train.py."""
    return [sys.executable, "-m", "mutual_prompt.sweep", command, "few_shot", "--repo", str(repo), "--data",
            str(tmp_path / "data"), "--output", str(tmp_path / "out"), "--cfg", "toy", "--datasets", "toy_shapes",
            "--shot-list", "1", "--seeds", "1"]


def fake_run(repo, tmp_path):
    s = Settings(repo_root=str(repo), data=str(tmp_path / "data"), output=str(tmp_path / "out"), cfg="toy",
                 datasets=("toy_shapes",), shot_list=(1,), seeds=(1,))
    (run,) = protocol_runs("few_shot", s)
    return run, RunFiles(str(repo), s.output, run)


def fake_env(mode):
    env = dict(os.environ, FAKE_TRAIN=mode)
    env.pop("PYTHONUNBUFFERED", None)  # the sweep must make its runs' output unbuffered itself
    for name in OPTION_ENV:
        env.pop(name, None)
    return env


def run_fake_sweep(repo, tmp_path, mode, command="run"):
    return subprocess.run(fake_sweep_command(repo, tmp_path, command), cwd=REPO_ROOT, env=fake_env(mode),
                          capture_output=True, text=True, timeout=120)


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("mode, detail", [
    ("usage-error", "exit code 2: train.py: error: argument --seed: invalid int value: 'x'"),
    ("traceback", "exit code 1: FileNotFoundError: no folder data/dtd"),
    ("killed", "killed by SIGKILL"),
])
def test_a_failed_runs_reason_is_in_its_summary_line(fake_repo, tmp_path, mode, detail):
    run, files = fake_run(fake_repo, tmp_path)
    proc = run_fake_sweep(fake_repo, tmp_path, mode)
    assert proc.returncode == 1, proc.stderr
    line = f"failed      {run.output_dir}  ({detail})"
    assert line in proc.stderr.splitlines(), proc.stderr  # as it happens
    assert line in proc.stdout.splitlines(), proc.stdout  # in the report at the end
    status = run_fake_sweep(fake_repo, tmp_path, "ok", "status")
    assert line in status.stdout.splitlines(), status.stdout


def test_a_killed_runs_output_is_complete(fake_repo, tmp_path):
    """output.txt holds every line the run printed before it was killed (no block buffer lost)."""
    run, files = fake_run(fake_repo, tmp_path)
    run_fake_sweep(fake_repo, tmp_path, "killed")
    with open(files.output, encoding="utf-8") as f:
        assert f.read().endswith(f"\nfake train.py starting in {run.output_dir}\n")


def _wait_for(condition, timeout, what):
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"gave up waiting until {what}")
        time.sleep(0.05)


def _alive(pid):
    """Whether ``pid`` runs (a zombie waiting for its new parent to reap it does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_rerun_waits_for_a_run_that_outlived_its_killed_sweep(fake_repo, tmp_path):
    """Where a train.py outlives its killed sweep (no parent-death signal, or one that ignores it), it
    keeps the run's lock: status says it runs (pid and host), and a re-run waits for it, saying so,
    instead of starting a second train.py in its folder."""
    run, files = fake_run(fake_repo, tmp_path)
    sweep = subprocess.Popen(fake_sweep_command(fake_repo, tmp_path), cwd=REPO_ROOT, env=fake_env("ignores-sigterm"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    orphan = 0
    rerun = None
    try:
        log = os.path.join(run.output_dir, "log.txt")
        _wait_for(lambda: os.path.exists(log) and files.read_state().get("pid"), 60, "the run started")
        orphan = files.read_state()["pid"]
        sweep.kill()
        sweep.wait()
        assert _alive(orphan)
        status = run_fake_sweep(fake_repo, tmp_path, "ok", "status")
        assert re.search(rf"^running\s+{re.escape(run.output_dir)}  \(log \d+ s ago; pid {orphan} on \S+ since ",
                         status.stdout, flags=re.M), status.stdout
        err = tmp_path / "rerun.txt"
        with open(err, "w") as f:
            rerun = subprocess.Popen(fake_sweep_command(fake_repo, tmp_path), cwd=REPO_ROOT, env=fake_env("ok"),
                                     stdout=f, stderr=subprocess.STDOUT, text=True)
        waiting = re.compile(rf"^waiting\s+{re.escape(run.output_dir)}  \(in use by pid {orphan} on \S+ since .*: "
                             "another sweep, or a train.py left by a killed one; starts here if it ends without a "
                             r"result\)$", flags=re.M)
        _wait_for(lambda: waiting.search(err.read_text()), 60, "the re-run said it waits")
        assert rerun.poll() is None and "started" not in err.read_text()
        os.kill(orphan, signal.SIGKILL)
        assert rerun.wait(timeout=60) == 0, err.read_text()
    finally:
        if orphan and _alive(orphan):
            os.kill(orphan, signal.SIGKILL)
        for proc in (sweep, rerun):
            if proc is not None and proc.poll() is None:
                proc.kill()
    text = err.read_text()
    assert re.search(rf"^started\s+{re.escape(run.output_dir)}", text, flags=re.M)
    assert text.index("waiting") < text.index("started")
    assert run_status(str(fake_repo), str(tmp_path / "out"), run).state == "done"


def test_outside_a_checkout_the_tools_find_the_checkout_the_package_was_installed_from(tmp_path, monkeypatch):
    from mutual_prompt.tools import install_into

    monkeypatch.chdir(tmp_path)
    assert cli.default_repo_root() == REPO_ROOT
    assert install_into.default_checkout() == REPO_ROOT


# What status shows without options: the last run into the output folder, and how far a training is.


def fake_status(repo, tmp_path, capsys, *args, protocol="few_shot"):
    """``status`` in this process, given only the output folder (and ``args``); returns (code, stdout)."""
    code = cli.main(["status", protocol, "--output", str(tmp_path / "out"), *args])
    return code, capsys.readouterr().out


def test_status_without_options_shows_the_last_run_into_the_output_folder(fake_repo, tmp_path, capsys, clean_env):
    """After a run with non-default options, status given only --output shows that run, not the
    protocol's default runs, and says in one line which remembered options it used and from when."""
    run, _ = fake_run(fake_repo, tmp_path)
    proc = run_fake_sweep(fake_repo, tmp_path, "ok")
    assert proc.returncode == 0, proc.stderr
    code, out = fake_status(fake_repo, tmp_path, capsys)
    assert code == 0
    lines = out.splitlines()
    assert re.fullmatch(r"Using the options of the last run into this output folder \(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d; "
                        r"options given here override them\): --repo \S+ --data \S+ --cfg toy --seeds 1 "
                        r"--datasets toy_shapes --shot-list 1", lines[0]), lines[0]
    assert f"done        {run.output_dir}  (50.00%)" in lines
    assert "[##############################] 1/1 done" in lines
    assert not any(line.startswith("pending") for line in lines)


def test_options_given_to_status_override_the_remembered_ones(fake_repo, tmp_path, capsys, clean_env):
    run, _ = fake_run(fake_repo, tmp_path)
    assert run_fake_sweep(fake_repo, tmp_path, "ok").returncode == 0
    code, out = fake_status(fake_repo, tmp_path, capsys, "--seeds", "1", "2", "--shot-list", "1", "2")
    assert code == 0
    head, *lines = out.splitlines()
    assert head.endswith(": --repo " + str(fake_repo) + f" --data {tmp_path / 'data'} --cfg toy --datasets toy_shapes")
    assert f"done        {run.output_dir}  (50.00%)" in lines
    assert sum(line.startswith("pending") for line in lines) == 3  # seed 2, and 2 shots
    clean_env.setenv("SEEDS", "7")  # the remembered run comes before the environment
    assert "--seeds 1" in fake_status(fake_repo, tmp_path, capsys)[1].splitlines()[0]


def test_a_run_remembers_its_overrides_and_ablations_and_a_dry_run_nothing(fake_repo, tmp_path, capsys, clean_env):
    out = tmp_path / "out"
    command = fake_sweep_command(fake_repo, tmp_path)
    assert subprocess.run([*command, "--dry-run"], cwd=REPO_ROOT, env=fake_env("ok"), timeout=120).returncode == 0
    assert not (out / ".sweep" / "remembered").exists()
    command[command.index("--seeds") + 1] = "3"
    proc = subprocess.run([*command, "--ablation", "long", "OPTIM.MAX_EPOCH 2", "OPTIM.LR", "0.1"], cwd=REPO_ROOT,
                          env=fake_env("ok"), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    code, text = fake_status(fake_repo, tmp_path, capsys)
    assert code == 0
    assert text.splitlines()[0].endswith("--seeds 3 --datasets toy_shapes --shot-list 1 OPTIM.LR 0.1, "
                                         "ablation long: OPTIM.MAX_EPOCH 2")
    assert f"{out}/ablations/long/few_shot/toy_shapes/MutualPrompt/toy_1shots/seed3  (50.00%)" in text
    assert "2/2 done" in text
    json_text = (out / ".sweep" / "remembered" / "few_shot.json").read_text()
    assert json.loads(json_text)["opts"] == ["OPTIM.LR", "0.1"]
    assert not list((out / ".sweep" / "remembered").glob(".*.tmp"))  # written atomically, nothing left over


def test_a_remembered_run_that_no_longer_checks_out_is_named(fake_repo, tmp_path, capsys, clean_env):
    """A dataset config deleted since the run: the error names the remembered option and its file; a
    memory that is not one names its file; status with the option given works."""
    assert run_fake_sweep(fake_repo, tmp_path, "ok").returncode == 0
    memory = tmp_path / "out" / ".sweep" / "remembered" / "few_shot.json"
    configs = fake_repo / "configs" / "datasets"
    (configs / "toy_shapes.yaml").rename(configs / "toy_shape.yaml")
    with pytest.raises(SystemExit) as exit_info:
        fake_status(fake_repo, tmp_path, capsys)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert re.fullmatch(rf"{PROG} status: error: --datasets \(remembered from the run of [\d: -]+, "
                        rf"{re.escape(str(memory))}\): unknown dataset 'toy_shapes' \(did you mean 'toy_shape'\?\); valid datasets: toy_shape "
                        r"\(the configs in \S+\)\n", err), err
    assert fake_status(fake_repo, tmp_path, capsys, "--datasets", "toy_shape")[0] == 0
    for content, what in (("{not json", "is not valid JSON"), ('{"options": {"seedz": [1]}}', "unknown option 'seedz'"),
                          ('{"options": {"seeds": ["one"]}}', None)):
        memory.write_text(content)
        with pytest.raises(SystemExit) as exit_info:
            fake_status(fake_repo, tmp_path, capsys)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        if what is None:  # a value of the wrong type is checked as any option's, naming where it came from
            assert err == (f"{PROG} status: error: --seeds (remembered from the run of ?, {memory}): expected an "
                           "integer; got 'one'\n")
        else:
            assert err.startswith(f"{PROG} status: error: {memory}: the remembered options of the last run are "
                                  f"unreadable (") and what in err and err.endswith("; delete the file or give status "
                                                                                     "the run's options\n"), err


DASSL_LINE = ("epoch [{e}/10] batch [20/40] time 0.101 (0.120) data 0.001 (0.002) loss 1.2345 (1.3000) "
              "acc 50.0000 (48.0000) lr 2.0000e-03 eta {eta}\n")


def test_status_shows_a_running_trainings_epoch_and_eta_from_its_log(fake_repo, tmp_path, capsys):
    """Running: the sweep's lock of the run is held (or, for a run the scripts started, its folder's
    run.lock); the epoch and ETA are the last progress line's of its newest log."""
    from mutual_prompt.files import exclusive_lock, owner_record
    from mutual_prompt.tools.sweep.report import status_lines

    run, files = fake_run(fake_repo, tmp_path)
    os.makedirs(files.run_dir)
    log = os.path.join(files.run_dir, "log.txt")
    with open(log, "w") as f:
        f.write("Loading trainer\n" + DASSL_LINE.format(e=2, eta="0:02:00") + DASSL_LINE.format(e=3, eta="0:01:23"))
    os.utime(log, (time.time() - 12, time.time() - 12))
    with exclusive_lock(files.lock, wait=False):
        files.write_state(state="running", pid=4242)
        status = run_status(str(fake_repo), str(tmp_path / "out"), run)
        assert status.state == "running"
        assert re.fullmatch(r"epoch 3/10, eta 0:01:23, log 1[2-5] s ago; pid 4242 on \S+ since [\d: -]+", status.detail)
        assert status_lines([status])[0].startswith(f"running     {run.output_dir}  (epoch 3/10, eta 0:01:23, log 1")
        with open(os.path.join(files.run_dir, "log.txt-2026-12-06-07-00-00"), "w") as f:  # a resumed run's log
            f.write(DASSL_LINE.format(e=9, eta="1 day, 2:03:04") + "Testing\n")
        detail = run_status(str(fake_repo), str(tmp_path / "out"), run).detail
        assert re.match(r"epoch 9/10, eta 1 day, 2:03:04, log \d s ago; pid 4242 ", detail), detail
    with exclusive_lock(os.path.join(files.run_dir, "run.lock"), wait=False, owner=dict(owner_record(), pid=77)):
        status = run_status(str(fake_repo), str(tmp_path / "out"), run)  # train.py run by the scripts
        assert status.state == "running" and re.fullmatch(r"epoch 9/10, eta 1 day, 2:03:04, log \d+ s ago; pid 77 on "
                                                          r"\S+ since \S+", status.detail), status.detail
    assert run_status(str(fake_repo), str(tmp_path / "out"), run).state == "interrupted"


def test_plot_without_matplotlib_is_refused_before_anything_runs(fake_repo, tmp_path, capsys, clean_env, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # "import matplotlib" raises ImportError
    clean_env.setenv("FAKE_TRAIN", "ok")
    args = ["few_shot", "--repo", str(fake_repo), "--data", str(tmp_path / "data"), "--output", str(tmp_path / "out"),
            "--cfg", "toy", "--datasets", "toy_shapes", "--shot-list", "1", "--seeds", "1",
            "--plot", str(tmp_path / "fig")]
    for command in ("run", "status"):
        with pytest.raises(SystemExit) as exit_info:
            cli.main([command, *args])
        assert exit_info.value.code == 2
        assert capsys.readouterr().err == (f'{PROG} {command}: error: --plot: figures need matplotlib: pip install -e '
                                           '".[plot]" (or pip install matplotlib)\n')
    assert not (tmp_path / "out").exists() and not (tmp_path / "fig").exists()
    assert cli.main(["run", *args, "--dry-run"]) == 0  # the plan draws nothing


def test_the_slurm_executor_without_submitit_is_refused_before_anything_runs(fake_repo, tmp_path, capsys, clean_env,
                                                                             monkeypatch):
    from mutual_prompt.tools.sweep import slurm

    monkeypatch.setattr(slurm, "submitit", None)
    for executor in ("slurm", "submitit-local"):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(fake_sweep_command(fake_repo, tmp_path)[3:] + ["--executor", executor])
        assert exit_info.value.code == 2
        assert capsys.readouterr().err == (f"{PROG} run: error: --executor {executor}: the SLURM executor needs "
                                           'submitit: pip install -e ".[slurm]" (or pip install submitit)\n')
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, message", [
    (["run", "base2nw", "--dry-run"], "run: error: unknown protocol 'base2nw' (did you mean 'base2new'?); valid "
                                      "protocols: base2new, few_shot, xd"),
    (["status", "fewshot"], "status: error: unknown protocol 'fewshot' (did you mean 'few_shot'?); valid protocols: "
                            "base2new, few_shot, xd"),
    (["statsu", "base2new"], ": error: unknown command 'statsu' (did you mean 'status'?); valid commands: run, status"),
])
def test_a_misspelt_protocol_or_command_gets_a_did_you_mean(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"{PROG}{' ' if argv[0] != 'statsu' else ''}{message}\n"


def test_a_dry_run_refuses_an_unknown_dataset_with_a_did_you_mean(repo_root, tmp_path, capsys, clean_env):
    for protocol, flag, name, guess in (("base2new", "--datasets", "eurosta", "eurosat"),
                                        ("xd", "--targets", "imagenet_skecth", "imagenet_sketch"),
                                        ("xd", "--source", "imagenett", "imagenet")):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["run", protocol, "--repo", repo_root, "--dry-run", flag, name])
        assert exit_info.value.code == 2
        assert capsys.readouterr().err.startswith(f"{PROG} run: error: {flag}: unknown dataset {name!r} (did you mean "
                                                  f"{guess!r}")


def help_text(capsys, *argv):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*argv, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_the_help_reads_cleanly_shows_defaults_and_lists_the_names(repo_root, capsys):
    parser, commands = cli.build_parser()
    texts = [help_text(capsys), help_text(capsys, "run"), help_text(capsys, "status")]
    for text in texts:  # no reStructuredText: literals, roles, directives
        assert not re.search(r"``|:(?:class|func|meth|mod|attr):`|^\s*\.\. \w", text, flags=re.M), text
    for name, command in commands.items():
        for action in command._actions:
            if action.help and action.dest not in ("help", "dry_run", "detach", "config", "protocol"):
                assert "default" in action.help, (name, action.dest)
    run, status = texts[1:]
    for text in (run, status):
        assert "one of base2new, xd, few_shot" in text and "protocols: base2new, xd, few_shot" in text
        for dataset in ("caltech101", "imagenet_sketch", "toy_shapes"):
            assert dataset in text
        assert re.search(r"SEEDS \(default: 1 2 3\)", text)
        assert re.search(r"DATASETS, base2new and few_shot \(default: the 11\s+benchmark datasets\)", text)
        assert "(default: local)" in text if text is run else "--executor" not in text
    assert "else the last run into the output folder" in status and "the last run" not in run.split("what to run")[1]


def test_two_sweeps_writing_the_memory_at_once_leave_one_whole_record(tmp_path):
    """Each write replaces the file whole: a reader sees one run's options, never a mix or a torn file."""
    import threading

    from mutual_prompt.tools.sweep import remembered

    path = remembered.remembered_path(str(tmp_path), "out", "base2new")
    datasets = {seed: [f"dataset{seed}_{i}" for i in range(200)] for seed in (1, 2)}

    def write(seed):
        for _ in range(40):
            remembered.remember(path, "/repo", {"seeds": [seed], "datasets": datasets[seed]}, (), ())

    writers = [threading.Thread(target=write, args=(seed,)) for seed in (1, 2)]
    for writer in writers:
        writer.start()
    reads = 0
    while any(writer.is_alive() for writer in writers):
        memory = remembered.load(path)
        if memory is not None:
            (seed,) = memory.options["seeds"]
            assert memory.options["datasets"] == datasets[seed]
            reads += 1
    for writer in writers:
        writer.join()
    assert reads and remembered.load(path).options["seeds"] in ([1], [2])
    assert os.listdir(os.path.dirname(path)) == ["base2new.json"]
