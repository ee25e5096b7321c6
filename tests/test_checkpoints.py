"""``mutual_prompt.run.checkpoints`` on its own: the reader refuses pickled objects unless the caller
trusts the file, ``module.`` is stripped on save and on load, and ``load_trained_models`` (every
trainer's ``load_model``) loads wrapped models strictly with the caller's config hint."""
import pickle

import pytest
import torch
from torch import nn

from mutual_prompt.run.checkpoints import (
    StateDictMismatchError,
    load_trained_models,
    read_checkpoint,
    save_checkpoint,
    strip_module_prefix,
)


class PickledScheduler:
    """A Python object in a checkpoint, as Dassl's scheduler is in CoOp's files."""


class Wrapped(nn.Module):
    """A DataParallel-style wrapper: the model is ``.module``."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module


def test_the_reader_refuses_pickled_objects_unless_the_caller_trusts_the_file(tmp_path):
    path = str(tmp_path / "model.pth.tar-1")
    torch.save({"state_dict": {"w": torch.ones(1)}, "epoch": 1, "scheduler": PickledScheduler()}, path)
    with pytest.raises(ValueError, match=r"Cannot read the checkpoint .*weights_only=True\) \(Unsupported global: "
                                         r"GLOBAL [\w.]*PickledScheduler\)\. .* --trust "):
        read_checkpoint(path)
    checkpoint = read_checkpoint(path, trusted_pickle_module=pickle)
    assert isinstance(checkpoint["scheduler"], PickledScheduler) and torch.equal(checkpoint["state_dict"]["w"], torch.ones(1))


def test_module_prefix_is_stripped_once_on_save_and_on_load(tmp_path):
    assert list(strip_module_prefix({"module.weight": 1, "bias": 2, "x.module.y": 3})) == ["weight", "bias", "x.module.y"]
    source = Wrapped(nn.Linear(2, 1))
    save_checkpoint({"state_dict": source.state_dict(), "epoch": 1, "val_result": None}, str(tmp_path / "linear"))
    assert list(read_checkpoint(str(tmp_path / "linear" / "model.pth.tar-1"))["state_dict"]) == ["weight", "bias"]
    target = nn.Linear(2, 1)
    load_trained_models({"linear": Wrapped(target)}, str(tmp_path), epoch=1)
    assert torch.equal(target.weight, source.module.weight) and torch.equal(target.bias, source.module.bias)


def test_trained_models_load_strictly_with_the_callers_hint(tmp_path, capsys):
    save_checkpoint({"state_dict": nn.Linear(2, 1).state_dict(), "epoch": 3, "val_result": 90.5},
                    str(tmp_path / "linear"), model_name="model-best.pth.tar")
    load_trained_models({"linear": nn.Linear(2, 1)}, str(tmp_path))
    assert f"Load {tmp_path}/linear/model-best.pth.tar to linear (epoch=3, val_result=90.5)" in capsys.readouterr().out
    seen = []

    def hint(saved, built):
        seen.append((tuple(saved["weight"].shape), tuple(built["weight"].shape)))
        return "HINT: width differs"

    with pytest.raises(StateDictMismatchError, match=r"(?s)weight: file \(1, 2\) vs model \(1, 3\).*HINT: width differs"):
        load_trained_models({"linear": nn.Linear(3, 1)}, str(tmp_path), config_hint=hint)
    assert seen == [((1, 2), (1, 3))]
