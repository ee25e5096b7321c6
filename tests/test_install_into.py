"""python -m mutual_prompt.install_into on generated host repositories shaped like CoOp, MaPLe and PromptSRC.

The hosts' train.py files are written here with the structure of those repositories (trainer imports
after the dataset imports, ``extend_cfg(cfg)`` with a docstring and one ``CfgNode`` per trainer, called
from ``setup_cfg``); the end-to-end test runs the kit's scripts in such a host under the built-in engine.
"""
import ast
import io
import json
import os
import re
import shutil
import subprocess
import sys
from typing import Dict, Sequence

import pytest

from helpers.dataset_trees import CALTECH
from mutual_prompt.tools.install_into import (
    CONFIG_DIR,
    EXTEND_CALL,
    EXTEND_IMPORT,
    HOST_SCRIPT_DIR,
    KIT_SCRIPTS,
    MANIFEST,
    TRAINER_IMPORT,
    InstallError,
    file_sha256,
    install,
    kit_files,
    patch_train_py,
)
from mutual_prompt.tools.results import TEST_END_SIGNAL, TRAIN_END_SIGNAL, parse_run

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# trainer modules and the config nodes their train.py adds, per host
HOSTS: Dict[str, Dict[str, Sequence[str]]] = {
    "coop": {"trainers": ("coop", "cocoop", "zsclip"), "nodes": ("COOP", "COCOOP")},
    "maple": {"trainers": ("coop", "cocoop", "zsclip", "maple", "independentVL", "vpt"),
              "nodes": ("COOP", "COCOOP", "MAPLE", "IVLP", "VPT")},
    "promptsrc": {"trainers": ("coop", "cocoop", "zsclip", "maple", "independentVL", "promptsrc"),
                  "nodes": ("COOP", "COCOOP", "MAPLE", "PROMPTSRC", "IVLP")},
}


def host_train_py(trainers: Sequence[str], nodes: Sequence[str], dassl: bool = True) -> str:
    """A train.py with the structure of CoOp's (and MaPLe's, PromptSRC's); ``dassl=False`` imports the
    same names from mutual_prompt.backend so that it runs where Dassl is not installed."""
    source = "dassl.utils" if dassl else "mutual_prompt.backend"
    lines = [
        "import argparse",
        "import torch",
        "",
        f"from {source} import setup_logger, set_random_seed, collect_env_info",
        f"from {'dassl.config' if dassl else 'mutual_prompt.backend'} import get_cfg_default",
        f"from {'dassl.engine' if dassl else 'mutual_prompt.backend'} import build_trainer",
        "",
        "# custom",
        "import datasets.caltech101",
        "import datasets.dtd",
        "",
        *[f"import trainers.{name}" for name in trainers],
        "",
        "",
        "def reset_cfg(cfg, args):",
        "    if args.root:",
        "        cfg.DATASET.ROOT = args.root",
        "    if args.output_dir:",
        "        cfg.OUTPUT_DIR = args.output_dir",
        "    if args.seed:",
        "        cfg.SEED = args.seed",
        "    if args.trainer:",
        "        cfg.TRAINER.NAME = args.trainer",
        "",
        "",
        "def extend_cfg(cfg):",
        '    """',
        "    Add new config variables.",
        '    """',
        "    from yacs.config import CfgNode as CN",
        "",
    ]
    for node in nodes:
        lines += [f"    cfg.TRAINER.{node} = CN()", f"    cfg.TRAINER.{node}.N_CTX = 16", f'    cfg.TRAINER.{node}.PREC = "fp16"']
    lines += [
        '    cfg.DATASET.SUBSAMPLE_CLASSES = "all"  # all, base or new',
        "",
        "",
        "def setup_cfg(args):",
        "    cfg = get_cfg_default()",
        "    extend_cfg(cfg)",
        "    if args.dataset_config_file:",
        "        cfg.merge_from_file(args.dataset_config_file)",
        "    if args.config_file:",
        "        cfg.merge_from_file(args.config_file)",
        "    reset_cfg(cfg, args)",
        "    cfg.merge_from_list(args.opts)",
        "    cfg.freeze()",
        "    return cfg",
        "",
        "",
        "def main(args):",
        "    cfg = setup_cfg(args)",
        "    if cfg.SEED >= 0:",
        "        set_random_seed(cfg.SEED)",
        "    setup_logger(cfg.OUTPUT_DIR)",
        "    trainer = build_trainer(cfg)",
        "    if args.eval_only:",
        "        trainer.load_model(args.model_dir, epoch=args.load_epoch)",
        "        trainer.test()",
        "        return",
        "    if not args.no_train:",
        "        trainer.train()",
        "",
        "",
        'if __name__ == "__main__":',
        "    parser = argparse.ArgumentParser()",
        *[f'    parser.add_argument("--{flag}", type=str, default="")'
          for flag in ("root", "output-dir", "config-file", "dataset-config-file", "trainer", "model-dir")],
        '    parser.add_argument("--seed", type=int, default=-1)',
        '    parser.add_argument("--load-epoch", type=int)',
        '    parser.add_argument("--eval-only", action="store_true")',
        '    parser.add_argument("--no-train", action="store_true")',
        '    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER)',
        "    main(parser.parse_args())",
    ]
    return "\n".join(lines) + "\n"


def make_host(root, host: str = "coop", dassl: bool = True, text: str = None):
    """A host repository: train.py, one stand-in module per trainer, CoOp's dataset configs folder."""
    spec = HOSTS[host]
    (root / "trainers").mkdir(parents=True)
    (root / "trainers" / "__init__.py").write_text("")
    for name in spec["trainers"]:
        (root / "trainers" / f"{name}.py").write_text('"""the host\'s own trainer (stand-in)"""\n')
    (root / "configs" / "datasets").mkdir(parents=True)
    with open(os.path.join(REPO_ROOT, "configs", "datasets", "caltech101.yaml")) as f:
        (root / "configs" / "datasets" / "caltech101.yaml").write_text(f.read())
    (root / "train.py").write_text(text if text is not None else host_train_py(spec["trainers"], spec["nodes"], dassl))
    return root


def snapshot(root) -> Dict[str, bytes]:
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


@pytest.mark.parametrize("host", sorted(HOSTS))
def test_patch_adds_the_trainer_import_and_the_extend_cfg_call(host):
    spec = HOSTS[host]
    old = host_train_py(spec["trainers"], spec["nodes"])
    new = patch_train_py(old)
    old_lines, new_lines = old.splitlines(), new.splitlines()
    assert len(new_lines) == len(old_lines) + 3
    last_trainer_import = new_lines.index(f"import trainers.{spec['trainers'][-1]}")
    assert new_lines[last_trainer_import + 1] == TRAINER_IMPORT
    body = new_lines.index("def extend_cfg(cfg):")
    # right after the docstring, before the host's own keys, at the body's indentation
    assert new_lines[body + 4: body + 6] == ["    " + EXTEND_IMPORT, "    " + EXTEND_CALL]
    assert new_lines[body + 6] == "    from yacs.config import CfgNode as CN"
    ast.parse(new)


@pytest.mark.parametrize("host", sorted(HOSTS))
def test_patch_is_idempotent(host):
    spec = HOSTS[host]
    once = patch_train_py(host_train_py(spec["trainers"], spec["nodes"]))
    assert patch_train_py(once) == once


def test_patch_adds_only_what_is_missing():
    spec = HOSTS["coop"]
    text = host_train_py((*spec["trainers"], "mutual_prompt"), spec["nodes"])
    new = patch_train_py(text)
    assert new.count(TRAINER_IMPORT) == 1 and new.count(EXTEND_CALL) == 1


def test_patch_keeps_windows_line_endings():
    spec = HOSTS["coop"]
    text = host_train_py(spec["trainers"], spec["nodes"]).replace("\n", "\r\n")
    new = patch_train_py(text)
    assert new.count("\r\n") == new.count("\n") == text.count("\n") + 3


def test_extend_cfg_without_docstring_gets_the_call_first():
    text = "import trainers.coop\n\n\ndef extend_cfg(cfg):\n  cfg.X = 1\n\n\nextend_cfg(None)\n"
    lines = patch_train_py(text).splitlines()
    assert lines[lines.index("def extend_cfg(cfg):") + 1:][:3] == ["  " + EXTEND_IMPORT, "  " + EXTEND_CALL, "  cfg.X = 1"]


@pytest.mark.parametrize("text, reason", [
    ("import trainers\n\n\ndef main():\n    pass\n", "no module-level `import trainers.<name>`"),
    ("import trainers.coop\n\n\ndef setup_cfg(cfg):\n    pass\n", "no module-level `def extend_cfg(cfg):`"),
    ("import trainers.coop\n\n\ndef extend_cfg(cfg):\n    pass\n", "defined but never called"),
    ("import trainers.coop\ndef extend_cfg(cfg:\n", "is not valid Python"),
])
def test_patch_refuses_a_train_py_it_does_not_recognise(text, reason):
    with pytest.raises(InstallError, match="host/train.py") as info:
        patch_train_py(text, "host/train.py")
    assert reason in str(info.value)


def test_install_copies_the_kit_without_the_toy_configs_and_shows_the_diff(tmp_path):
    host = make_host(tmp_path / "CoOp")
    out = io.StringIO()
    assert install(str(host), REPO_ROOT, out=out)
    printed = out.getvalue()
    assert f"+{TRAINER_IMPORT}" in printed and f"+    {EXTEND_CALL}" in printed and "--- a/train.py" in printed
    with open(os.path.join(REPO_ROOT, "trainers", "mutual_prompt.py")) as f:
        assert (host / "trainers" / "mutual_prompt.py").read_text() == f.read()
    configs = sorted(os.listdir(host / CONFIG_DIR))
    ours = sorted(n for n in os.listdir(os.path.join(REPO_ROOT, CONFIG_DIR)) if not n.startswith("toy"))
    assert configs == ours and "vit_b16_c4_ep10_batch1_ctxv1.yaml" in configs
    assert sorted(os.listdir(host / HOST_SCRIPT_DIR)) == sorted(KIT_SCRIPTS)
    assert os.access(host / HOST_SCRIPT_DIR / "base2new_train.sh", os.X_OK) == os.access(
        os.path.join(REPO_ROOT, "scripts", "base2new_train.sh"), os.X_OK)
    assert TRAINER_IMPORT in (host / "train.py").read_text()


def test_kit_configs_are_for_real_backbones_and_datasets():
    for kit in kit_files(REPO_ROOT):
        if kit.target.endswith(".yaml"):
            with open(kit.source) as f:
                text = f.read()
            assert "toy" not in text.lower(), kit.source
            assert 'NAME: "ViT-B/16"' in text, kit.source


def test_second_install_changes_nothing_and_says_so(tmp_path):
    host = make_host(tmp_path / "MaPLe", "maple")
    install(str(host), REPO_ROOT, out=io.StringIO())
    before = snapshot(host)
    out = io.StringIO()
    assert not install(str(host), REPO_ROOT, out=out)
    assert "already installed and up to date" in out.getvalue()
    assert snapshot(host) == before


def kit_checkout(root):
    """A copy of this checkout's kit (trainer, configs, scripts) that a test may change."""
    shutil.copytree(os.path.join(REPO_ROOT, CONFIG_DIR), root / CONFIG_DIR)
    shutil.copytree(os.path.join(REPO_ROOT, "scripts"), root / "scripts")
    (root / "trainers").mkdir()
    shutil.copy2(os.path.join(REPO_ROOT, "trainers", "mutual_prompt.py"), root / "trainers" / "mutual_prompt.py")
    return root


def test_install_updates_a_kit_file_that_changed_in_the_checkout(tmp_path):
    checkout = kit_checkout(tmp_path / "mutual-prompt")
    host = make_host(tmp_path / "PromptSRC", "promptsrc")
    install(str(host), str(checkout), out=io.StringIO())
    config = checkout / CONFIG_DIR / "vit_b16_c4_ep10_batch1_ctxv1.yaml"
    config.write_text(config.read_text() + "# changed upstream\n")
    out = io.StringIO()
    assert install(str(host), str(checkout), out=out)
    assert out.getvalue().splitlines()[0] == f"update {os.path.join(CONFIG_DIR, config.name)}"
    assert (host / CONFIG_DIR / config.name).read_text() == config.read_text()
    assert json.loads((host / MANIFEST).read_text())["files"][f"{CONFIG_DIR}/{config.name}"] == file_sha256(str(config))


def test_install_refuses_to_overwrite_kit_files_edited_in_the_host_and_names_them(tmp_path):
    checkout = kit_checkout(tmp_path / "mutual-prompt")
    host = make_host(tmp_path / "CoOp")
    install(str(host), str(checkout), out=io.StringIO())
    (host / "trainers" / "mutual_prompt.py").write_text("# my edits\n")
    script = host / HOST_SCRIPT_DIR / "base2new_train.sh"
    script.write_text(script.read_text() + "# my edits\n")
    (checkout / "trainers" / "mutual_prompt.py").write_text("# a new version upstream\n")  # would be updated
    (checkout / CONFIG_DIR / "new.yaml").write_text("OPTIM:\n  MAX_EPOCH: 1\n")  # would be added
    before = snapshot(host)
    with pytest.raises(InstallError) as info:
        install(str(host), str(checkout), out=io.StringIO())
    message = str(info.value)
    assert f"  {os.path.join('trainers', 'mutual_prompt.py')}\n" in message
    assert f"  {os.path.join(HOST_SCRIPT_DIR, 'base2new_train.sh')}\n" in message
    assert "Nothing was written. --force overwrites them, keeping each as <file>.orig" in message
    assert message.count("\n  ") == 2  # the unchanged kit files are not named
    assert snapshot(host) == before


def test_force_overwrites_an_edited_kit_file_keeping_a_copy(tmp_path):
    host = make_host(tmp_path / "CoOp")
    install(str(host), REPO_ROOT, out=io.StringIO())
    trainer = host / "trainers" / "mutual_prompt.py"
    trainer.write_text("# my edits\n")
    (host / "trainers" / "mutual_prompt.py.orig").write_text("# an earlier copy\n")
    out = io.StringIO()
    assert install(str(host), REPO_ROOT, force=True, out=out)
    kept = os.path.join("trainers", "mutual_prompt.py.orig.2")
    assert out.getvalue().splitlines()[0] == f"overwrite {os.path.join('trainers', 'mutual_prompt.py')} " \
                                             f"(your version is kept as {kept})"
    assert (host / kept).read_text() == "# my edits\n"
    assert (host / "trainers" / "mutual_prompt.py.orig").read_text() == "# an earlier copy\n"
    with open(os.path.join(REPO_ROOT, "trainers", "mutual_prompt.py")) as f:
        assert trainer.read_text() == f.read()
    assert not install(str(host), REPO_ROOT, out=io.StringIO())  # recorded: the next install is quiet


def test_without_a_manifest_identical_files_pass_and_differing_ones_are_refused(tmp_path):
    """A host installed by a version that kept no manifest: what is identical to the kit is ours."""
    host = make_host(tmp_path / "MaPLe", "maple")
    install(str(host), REPO_ROOT, out=io.StringIO())
    (host / MANIFEST).unlink()
    out = io.StringIO()
    assert not install(str(host), REPO_ROOT, out=out)
    assert "already installed and up to date" in out.getvalue()
    assert (host / MANIFEST).is_file()
    (host / MANIFEST).unlink()
    (host / CONFIG_DIR / "vit_b16_c4_ep10_batch1_ctxv1.yaml").write_text("old\n")
    with pytest.raises(InstallError, match=f"differ from the kit, and {re.escape(MANIFEST)} .* is missing"):
        install(str(host), REPO_ROOT, out=io.StringIO())


def test_a_broken_manifest_is_named(tmp_path):
    host = make_host(tmp_path / "CoOp")
    install(str(host), REPO_ROOT, out=io.StringIO())
    (host / MANIFEST).write_text("[1, 2]")
    with pytest.raises(InstallError, match=f"{re.escape(str(host / MANIFEST))} is not the kit's manifest"):
        install(str(host), REPO_ROOT, out=io.StringIO())


def test_dry_run_names_the_overwrites_force_would_make(tmp_path):
    host = make_host(tmp_path / "CoOp")
    install(str(host), REPO_ROOT, out=io.StringIO())
    (host / "trainers" / "mutual_prompt.py").write_text("# my edits\n")
    before = snapshot(host)
    out = io.StringIO()
    assert install(str(host), REPO_ROOT, dry_run=True, force=True, out=out)
    assert out.getvalue().splitlines() == [
        f"would overwrite {os.path.join('trainers', 'mutual_prompt.py')} (your version would be kept as "
        f"{os.path.join('trainers', 'mutual_prompt.py.orig')})"]
    assert snapshot(host) == before


def test_dry_run_writes_nothing(tmp_path):
    host = make_host(tmp_path / "CoOp")
    before = snapshot(host)
    out = io.StringIO()
    assert install(str(host), REPO_ROOT, dry_run=True, out=out)
    assert "would add trainers/mutual_prompt.py" in out.getvalue() and "would change train.py:" in out.getvalue()
    assert snapshot(host) == before


def test_refusal_writes_nothing(tmp_path):
    host = make_host(tmp_path / "Other", text="import trainers\n\nprint('not CoOp')\n")
    before = snapshot(host)
    with pytest.raises(InstallError, match="does not look like a CoOp-style train.py"):
        install(str(host), REPO_ROOT, out=io.StringIO())
    assert snapshot(host) == before


def test_install_refuses_a_folder_without_train_py_and_this_repository(tmp_path):
    with pytest.raises(InstallError, match="train.py does not exist"):
        install(str(tmp_path), REPO_ROOT)
    with pytest.raises(InstallError, match="mutual-prompt itself"):
        install(REPO_ROOT, REPO_ROOT)


def test_install_refuses_a_checkout_without_the_kit(tmp_path):
    host = make_host(tmp_path / "CoOp")
    with pytest.raises(InstallError, match="not a mutual-prompt checkout"):
        install(str(host), str(tmp_path / "nowhere"))
    assert "mutual_prompt" not in (host / "train.py").read_text()


def run_module(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mutual_prompt.install_into", *args],
                          capture_output=True, text=True, timeout=120)


def test_command_line_refusal_is_one_error_line_with_exit_2(tmp_path):
    host = make_host(tmp_path / "Other", text="print('hello')\n")
    proc = run_module(str(host))
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"python -m mutual_prompt.install_into: error: {host / 'train.py'} does not look "
                                  "like a CoOp-style train.py")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_host_file_that_cannot_be_written_is_one_error_line_with_exit_2(tmp_path):
    host = make_host(tmp_path / "CoOp")
    (host / "trainers" / "mutual_prompt.py").mkdir()  # a folder where the trainer file goes
    proc = run_module(str(host))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("python -m mutual_prompt.install_into: error: [Errno 21] Is a directory")
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_kit_scripts_train_and_test_base_to_new_in_the_host(tmp_path, vit_b16_shaped_file):
    """The README's steps in a generated CoOp-shaped host: install, train on base, eval-only on new."""
    host = make_host(tmp_path / "CoOp", dassl=False)
    data = tmp_path / "data"
    CALTECH.build(str(data))
    proc = run_module(str(host))
    assert proc.returncode == 0, proc.stderr
    # The host has no datasets/ package of its own: its `import datasets.caltech101` finds ours.
    env = dict(os.environ, DATA=str(data), PYTHON=sys.executable, MUTUAL_PROMPT_BACKEND="builtin",
               PYTHONPATH=REPO_ROOT)
    overrides = ["MODEL.BACKBONE.PATH", vit_b16_shaped_file, "OPTIM.MAX_EPOCH", "1", "USE_CUDA", "False"]
    for script, extra_env in (("base2new_train.sh", {}), ("base2new_test.sh", {"LOADEP": "1"})):
        run = subprocess.run(["bash", str(host / HOST_SCRIPT_DIR / script), "caltech101", "1", *overrides],
                             cwd=str(tmp_path), env=dict(env, **extra_env), capture_output=True, text=True,
                             timeout=600)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    common = os.path.join("caltech101", "shots_16", "MutualPrompt", "vit_b16_c4_ep10_batch1_ctxv1", "seed1")
    train_dir = host / "output" / "base2new" / "train_base" / common
    test_dir = host / "output" / "base2new" / "test_new" / common
    assert parse_run(str(train_dir), end_signal=TRAIN_END_SIGNAL) is not None
    assert parse_run(str(test_dir), end_signal=TEST_END_SIGNAL) is not None
    log = (test_dir / "log.txt").read_text()
    assert "model.pth.tar-1" in log and "# classes  2" in log
    train_log = (train_dir / "log.txt").read_text()
    # MaPLe's and PromptSRC's parse_test_res.py wait for the first line, CoOp's for the second
    assert train_log.index("\nFinished training\n") < train_log.index("\nFinish training\n") < train_log.index(
        "* accuracy:")
    assert "\nBackend: built-in runtime (MUTUAL_PROMPT_BACKEND=builtin)\n" in train_log


RECORDER = """#!/bin/bash
if [ "$1" = train.py ]; then
  "{python}" -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "${{@:2}}" >> "{record}"
else
  exec "{python}" "$@"
fi
"""
B2N_TAIL = os.path.join("caltech101", "shots_{shots}", "MutualPrompt", "vit_b16_c4_ep10_batch1_ctxv1", "seed1")


def run_kit_script(tmp_path, host, script, *args, **env):
    """A kit script in ``host`` with a ``PYTHON`` that records train.py's arguments instead of running it:
    (exit status, stderr, recorded argument lists). An ``env`` value of None removes that variable."""
    record = tmp_path / "record.jsonl"
    record.unlink(missing_ok=True)
    shim = tmp_path / "python"
    shim.write_text(RECORDER.format(python=sys.executable, record=record))
    shim.chmod(0o755)
    environment = dict(os.environ, PYTHON=str(shim), DATA=str(tmp_path / "data"))
    environment.update(env)
    proc = subprocess.run(["bash", str(host / HOST_SCRIPT_DIR / script), *args], cwd=str(tmp_path),
                          env={k: v for k, v in environment.items() if v is not None},
                          capture_output=True, text=True, timeout=120)
    recorded = [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []
    return proc.returncode, proc.stderr, recorded


def value_after(args, flag):
    return args[args.index(flag) + 1]


@pytest.fixture
def installed_host(tmp_path):
    host = make_host(tmp_path / "CoOp")
    install(str(host), REPO_ROOT, out=io.StringIO())
    return host


def test_kit_test_script_loads_the_last_epoch_of_a_training_run_with_its_own_max_epoch(tmp_path, installed_host):
    train_dir = installed_host / "output" / "base2new" / "train_base" / B2N_TAIL.format(shots=16)
    (train_dir / "prompt_learner").mkdir(parents=True)
    for epoch in (1, 2):
        (train_dir / "prompt_learner" / f"model.pth.tar-{epoch}").write_bytes(b"")
    (train_dir / "log.txt").write_text("epoch [2/2] batch [1/1]\nFinish training\n* accuracy: 50.0%\n")
    rc, err, runs = run_kit_script(tmp_path, installed_host, "base2new_test.sh", "caltech101", "1")
    assert rc == 0, err
    assert value_after(runs[0], "--load-epoch") == "2"
    assert installed_host / value_after(runs[0], "--model-dir") == train_dir
    rc, err, runs = run_kit_script(tmp_path, installed_host, "base2new_test.sh", "caltech101", "1",
                                   "OPTIM.MAX_EPOCH", "5")
    assert rc == 0, err
    assert value_after(runs[0], "--load-epoch") == "5"  # the test's own override comes first
    (train_dir / "log.txt").write_text("epoch [1/2] batch [1/1]\n")  # interrupted: not its last epoch
    rc, err, runs = run_kit_script(tmp_path, installed_host, "base2new_test.sh", "caltech101", "1")
    assert rc == 0, err
    assert value_after(runs[0], "--load-epoch") == "10"  # the config's OPTIM.MAX_EPOCH


@pytest.mark.parametrize("script, args", [
    ("base2new_train.sh", ("caltech101", "1")),
    ("base2new_test.sh", ("caltech101", "1")),
])
def test_kit_scripts_name_the_shots_folder_after_a_num_shots_override(tmp_path, installed_host, script, args):
    rc, err, runs = run_kit_script(tmp_path, installed_host, script, *args, "DATASET.NUM_SHOTS", "4", LOADEP="1")
    assert rc == 0, err
    assert value_after(runs[0], "--output-dir").endswith(B2N_TAIL.format(shots=4))
    assert runs[0][-2:] == ["DATASET.NUM_SHOTS", "4"]
    assert runs[0][runs[0].index("DATASET.NUM_SHOTS") + 1] == "4"  # the protocol's own value agrees


def test_kit_scripts_say_which_data_folder_they_read_when_data_is_not_set(tmp_path, installed_host):
    rc, err, runs = run_kit_script(tmp_path, installed_host, "base2new_train.sh", "caltech101", "1", DATA=None)
    assert rc == 0, err
    default = value_after(runs[0], "--root")
    assert default == str(installed_host / "data")
    assert err.strip() == (f"DATA is not set: reading caltech101 from {default}, the default (export "
                           f"DATA=/path/to/datasets; python -m mutual_prompt.doctor --root {default} caltech101 checks it)")
    rc, err, runs = run_kit_script(tmp_path, installed_host, "base2new_train.sh", "caltech101", "1")
    assert rc == 0 and err == ""


def test_kit_scripts_refuse_shots_that_disagree_with_the_num_shots_override(tmp_path, installed_host):
    rc, err, runs = run_kit_script(tmp_path, installed_host, "base2new_train.sh", "caltech101", "1",
                                   "DATASET.NUM_SHOTS", "4", SHOTS="16")
    assert rc == 2 and runs == []
    assert err.strip() == ("SHOTS=16 names the folders shots_16, but the override DATASET.NUM_SHOTS 4 trains on 4 "
                           "shots: give one of them, or the same number to both")
    rc, err, runs = run_kit_script(tmp_path, installed_host, "few_shot.sh", "caltech101", "8",
                                   "DATASET.NUM_SHOTS", "2")
    assert rc == 2 and runs == [] and "SHOTS=8 names the folders shots_8" in err
    rc, err, runs = run_kit_script(tmp_path, installed_host, "few_shot.sh", "caltech101", "8",
                                   "DATASET.NUM_SHOTS", "8", SEEDS="1")
    assert rc == 0 and len(runs) == 1, err


def test_help_reads_cleanly_and_shows_the_defaults():
    proc = run_module("--help")
    assert proc.returncode == 0
    text = proc.stdout
    description = text.split("\n\n")[1]
    assert not description.rstrip().endswith(":"), description
    assert "--force" in text and "<file>.orig" in text
    assert f"(default: {REPO_ROOT}," in " ".join(text.split())
    assert " ".join(text.split()).count("(default:") == 3
