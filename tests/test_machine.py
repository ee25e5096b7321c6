"""The head of a run's log (backend, versions, device) and the data-loader workers capped by the usable
cores: the functions, and both in a trainer built by the built-in runtime."""
import torch
from yacs.config import CfgNode as CN

from helpers.tiny_trainer import make_cfg
from mutual_prompt.run import machine
from mutual_prompt.runtime import build_trainer


def test_the_header_names_the_backend_the_versions_and_the_cpu(monkeypatch):
    monkeypatch.setenv("MUTUAL_PROMPT_BACKEND", "builtin")
    lines = machine.run_header("builtin", torch.device("cpu")).splitlines()
    assert lines[0] == machine.HEADER_TITLE
    assert lines[1] == "Backend: built-in runtime (MUTUAL_PROMPT_BACKEND=builtin)"
    assert lines[2].startswith("Versions: mutual-prompt 0.1.0 (")
    assert f"torch {torch.__version__}," in lines[2] and "clip-anytorch " in lines[2] and "Python 3." in lines[2]
    assert "not installed" not in lines[2]
    assert lines[3] == (f"Device: cpu, {torch.get_num_threads()} threads "
                        f"({machine.usable_cores()} usable cores)")


def test_the_backend_line_says_why_the_builtin_runtime_and_names_dassls_version(monkeypatch):
    monkeypatch.delenv("MUTUAL_PROMPT_BACKEND", raising=False)
    assert machine.backend_line("builtin") == "Backend: built-in runtime (Dassl does not import)"
    monkeypatch.setattr(machine, "package_version", lambda dist, module="": {"dassl": "0.6.3"}[dist])
    assert machine.backend_line("dassl") == "Backend: Dassl 0.6.3"


def test_package_version_falls_back_to_the_module_then_says_not_installed(monkeypatch):
    assert machine.package_version("no-such-distribution-here") == "not installed"
    assert machine.package_version("no-such-distribution-here", "torch") == torch.__version__


def test_workers_above_the_usable_cores_are_capped_with_one_line(monkeypatch, capsys):
    monkeypatch.setattr(machine, "usable_cores", lambda: 2)
    cfg = CN({"DATALOADER": CN({"NUM_WORKERS": 8})})
    cfg.freeze()
    machine.cap_num_workers(cfg)
    assert cfg.DATALOADER.NUM_WORKERS == 2 and cfg.is_frozen()
    assert capsys.readouterr().out == "DATALOADER.NUM_WORKERS 8 -> 2: this process may use 2 CPU cores\n"
    for requested in (2, 1, 0):
        cfg = CN({"DATALOADER": CN({"NUM_WORKERS": requested})})
        machine.cap_num_workers(cfg)
        assert cfg.DATALOADER.NUM_WORKERS == requested
    assert capsys.readouterr().out == ""


def test_usable_cores_is_the_affinity_of_this_process(monkeypatch):
    monkeypatch.setattr(machine.os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    assert machine.usable_cores() == 3


def test_the_builtin_runtime_prints_the_header_and_caps_the_loaders_workers(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(machine, "usable_cores", lambda: 1)
    trainer = build_trainer(make_cfg(tmp_path, tmp_path / "out", **{"DATALOADER.NUM_WORKERS": 8}))
    out = capsys.readouterr().out
    assert out.index(machine.HEADER_TITLE) < out.index("DATALOADER.NUM_WORKERS 8 -> 1")
    assert "Backend: built-in runtime" in out and "Device: cpu" in out
    assert trainer.train_loader_x.num_workers == 1 and trainer.test_loader.num_workers == 1


def test_under_dassl_our_trainers_print_the_header_and_cap_the_workers_themselves(monkeypatch, capsys):
    monkeypatch.setattr(machine, "usable_cores", lambda: 2)
    monkeypatch.setattr(machine, "package_version", lambda dist, module="": "0.6.3")
    cfg = CN({"DATALOADER": CN({"NUM_WORKERS": 8})})
    machine.start_under_dassl("builtin", torch.device("cpu"), cfg)  # the built-in runtime does both itself
    assert capsys.readouterr().out == "" and cfg.DATALOADER.NUM_WORKERS == 8
    machine.start_under_dassl("dassl", torch.device("cpu"), cfg)
    out = capsys.readouterr().out
    assert out.startswith(f"{machine.HEADER_TITLE}\nBackend: Dassl 0.6.3\n") and cfg.DATALOADER.NUM_WORKERS == 2
