"""``python -m mutual_prompt.convert``: CoOp/CoCoOp prompt_learner checkpoints to ours and back, on
files generated here in the layout CoOp's trainers write under Dassl (state_dict with
token_prefix/token_suffix, epoch, optimizer state, a pickled scheduler object, val_result)."""
import os
import subprocess
import sys
import types
from collections import OrderedDict

import pytest
import torch

from helpers.method_arguments import arguments
from mutual_prompt.clip import load_clip
from mutual_prompt.method import MutualPromptCLIP
from mutual_prompt.run.checkpoints import load_state_dict_strictly, read_checkpoint
from mutual_prompt.tools.convert import from_coop, main, read_coop_checkpoint, to_coop

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSNAMES = ["red_circle", "blue_square", "green_triangle"]
N_CTX, TEXT_WIDTH, VIS_DIM, SUFFIX = 4, 64, 128, 72  # the toy CLIP's sizes
SCHEDULER_MODULE = "coop_test_only_lr_scheduler"  # stands for dassl.optim.lr_scheduler; gone when loading


def coop_state_dict(cocoop: bool, seed: int = 0) -> "OrderedDict[str, torch.Tensor]":
    """A prompt_learner state dict in CoOp's (``cocoop=False``) or CoCoOp's layout, fp16 as with PREC fp16."""
    g = torch.Generator().manual_seed(seed)
    state = OrderedDict(ctx=torch.randn(N_CTX, TEXT_WIDTH, generator=g) * 0.02)
    if cocoop:
        state["meta_net.linear1.weight"] = torch.randn(VIS_DIM // 16, VIS_DIM, generator=g) * 0.1
        state["meta_net.linear1.bias"] = torch.randn(VIS_DIM // 16, generator=g) * 0.1
        state["meta_net.linear2.weight"] = torch.randn(TEXT_WIDTH, VIS_DIM // 16, generator=g) * 0.1
        state["meta_net.linear2.bias"] = torch.randn(TEXT_WIDTH, generator=g) * 0.1
    state["token_prefix"] = torch.randn(len(CLASSNAMES), 1, TEXT_WIDTH, generator=g)
    state["token_suffix"] = torch.randn(len(CLASSNAMES), SUFFIX, TEXT_WIDTH, generator=g)
    return OrderedDict((k, v.half()) for k, v in state.items())


def write_coop_checkpoint(path, state_dict, epoch=10, val_result=None) -> str:
    """What Dassl's save_model writes for CoOp/CoCoOp: the scheduler's state pickles objects (its
    successor scheduler, with the optimizer), of a class that will not import when the file is read."""
    params = [torch.nn.Parameter(v.float()) for k, v in state_dict.items() if not k.startswith("token_")]
    optimizer = torch.optim.SGD(params, lr=0.002, momentum=0.9)
    sum(p.sum() for p in params).backward()
    optimizer.step()
    module = types.ModuleType(SCHEDULER_MODULE)
    warmup = type("ConstantWarmupScheduler", (), {"__module__": SCHEDULER_MODULE})
    module.ConstantWarmupScheduler = warmup
    scheduler = warmup()
    scheduler.successor = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 10)
    scheduler.warmup_epoch, scheduler.cons_lr = 1, 1e-5
    sys.modules[SCHEDULER_MODULE] = module
    try:
        torch.save({"state_dict": state_dict, "epoch": epoch, "optimizer": optimizer.state_dict(),
                    "scheduler": {"successor": scheduler.successor, "warmup": scheduler}, "val_result": val_result},
                   str(path))
    finally:
        del sys.modules[SCHEDULER_MODULE]
    return str(path)


@pytest.fixture
def cocoop_file(tmp_path) -> str:
    folder = tmp_path / "cocoop" / "prompt_learner"
    folder.mkdir(parents=True)
    return write_coop_checkpoint(folder / "model.pth.tar-10", coop_state_dict(cocoop=True), val_result=None)


def convert(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mutual_prompt.convert", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)


def test_a_coop_file_needs_trust_and_the_error_says_so(cocoop_file, tmp_path):
    with pytest.raises(ValueError, match=r"weights_only=True.*from-coop --trust"):
        read_checkpoint(cocoop_file)  # what MutualPrompt.load_model says about such a file
    proc = convert("from-coop", cocoop_file, str(tmp_path / "ours"))
    assert proc.returncode == 2
    assert "cannot be read with torch.load(weights_only=True) (Unsupported global: GLOBAL " in proc.stderr
    assert proc.stderr.rstrip().endswith("add --trust.")  # the way out is the last thing said
    assert not (tmp_path / "ours").exists()


def test_cocoop_import_maps_meta_net_drops_class_buffers_and_loads_weights_only(cocoop_file, tmp_path):
    proc = convert("from-coop", "--trust", cocoop_file, str(tmp_path / "ours"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "ours" / "prompt_learner" / "model.pth.tar-10"
    assert "FTP.MODE shared" in proc.stdout and f"--model-dir {tmp_path / 'ours'} --load-epoch 10" in proc.stdout
    converted = torch.load(out, weights_only=True)
    original = coop_state_dict(cocoop=True)
    assert list(converted["state_dict"]) == ["ctx", "ftp.meta_net.linear1.weight", "ftp.meta_net.linear1.bias",
                                             "ftp.meta_net.linear2.weight", "ftp.meta_net.linear2.bias"]
    assert torch.equal(converted["state_dict"]["ftp.meta_net.linear2.weight"], original["meta_net.linear2.weight"].float())
    assert (converted["epoch"], converted["val_result"], converted["optimizer"], converted["scheduler"]) == (10, None, None, None)


def test_round_trip_cocoop_to_ours_to_cocoop(cocoop_file, tmp_path):
    ours = from_coop(cocoop_file, str(tmp_path / "ours"), trust=True)
    back = torch.load(to_coop(ours, str(tmp_path / "back")), weights_only=True)
    original = read_coop_checkpoint(cocoop_file, trust=True)
    assert type(original["scheduler"]["warmup"]).__name__ == "ConstantWarmupScheduler"  # a stand-in
    expected = {k: v for k, v in original["state_dict"].items() if not k.startswith("token_")}
    assert list(back["state_dict"]) == list(expected)
    assert all(torch.equal(back["state_dict"][k], v.float()) for k, v in expected.items())
    assert back["epoch"] == original["epoch"] and back["val_result"] is None
    # CoOp's and CoCoOp's load_model read state_dict and epoch, delete token_prefix/token_suffix if
    # present and load the rest: the exported file has exactly the rest.
    assert set(back) == {"state_dict", "epoch", "optimizer", "scheduler", "val_result"}


def test_coop_import_is_ftp_none_and_val_result_is_kept(tmp_path):
    source = write_coop_checkpoint(tmp_path / "model-best.pth.tar", coop_state_dict(cocoop=False), epoch=7, val_result=81.25)
    out = from_coop(source, str(tmp_path / "ours"), trust=True)
    converted = torch.load(out, weights_only=True)
    assert list(converted["state_dict"]) == ["ctx"] and (converted["epoch"], converted["val_result"]) == (7, 81.25)
    back = torch.load(to_coop(out, str(tmp_path / "back")), weights_only=True)
    assert list(back["state_dict"]) == ["ctx"]


def test_class_specific_context_and_foreign_keys_are_refused(tmp_path):
    csc = coop_state_dict(cocoop=False)
    csc["ctx"] = torch.zeros(len(CLASSNAMES), N_CTX, TEXT_WIDTH)
    with pytest.raises(ValueError, match=r"class-specific context, TRAINER.COOP.CSC True"):
        from_coop(write_coop_checkpoint(tmp_path / "csc.pth.tar-1", csc), str(tmp_path / "a"), trust=True)
    maple = dict(coop_state_dict(cocoop=False), **{"compound_prompts_text.0": torch.zeros(2, TEXT_WIDTH)})
    with pytest.raises(ValueError, match=r"keys that CoOp's and CoCoOp's prompt learners do not have: \['compound_prompts_text.0'\]"):
        from_coop(write_coop_checkpoint(tmp_path / "maple.pth.tar-1", maple), str(tmp_path / "b"), trust=True)


def toy_model(**kwargs) -> MutualPromptCLIP:
    return MutualPromptCLIP(load_clip("toy"), CLASSNAMES, **arguments(**kwargs)).eval()


def test_export_refuses_what_coop_cannot_hold(tmp_path):
    for kwargs, words in [(dict(ftp_mode="fine", tvp_enabled=False), "FTP.MODE fine and TVP off"),
                          (dict(ftp_mode="shared", tvp_enabled=True), "FTP.MODE shared and TVP on")]:
        path = tmp_path / "prompt_learner" / "model.pth.tar-1"
        path.parent.mkdir(exist_ok=True)
        torch.save({"state_dict": toy_model(**kwargs).prompt_learner.state_dict(), "epoch": 1}, path)
        with pytest.raises(ValueError, match=words):
            to_coop(str(path), str(tmp_path / "out"))


def test_imported_cocoop_weights_give_the_logits_of_the_same_weights_set_directly(cocoop_file, tmp_path):
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    imported = toy_model(ftp_mode="shared", tvp_enabled=False)
    path = from_coop(cocoop_file, str(tmp_path / "ours"), trust=True)
    load_state_dict_strictly(imported.prompt_learner, read_checkpoint(path)["state_dict"], path)

    direct = toy_model(ftp_mode="shared", tvp_enabled=False)
    original = coop_state_dict(cocoop=True)
    with torch.no_grad():
        direct.prompt_learner.ctx.copy_(original["ctx"].float())
        for name, param in direct.prompt_learner.ftp.meta_net.named_parameters():
            param.copy_(original[f"meta_net.{name}"].float())
        expected = direct(images)
        assert torch.equal(imported(images), expected)
        assert not torch.equal(toy_model(ftp_mode="shared", tvp_enabled=False)(images), expected)


def test_existing_output_is_kept_unless_forced(cocoop_file, tmp_path, capsys):
    from_coop(cocoop_file, str(tmp_path / "ours"), trust=True)
    out = tmp_path / "ours" / "prompt_learner" / "model.pth.tar-10"
    out.write_bytes(b"previous")
    with pytest.raises(SystemExit) as info:
        main(["from-coop", "--trust", cocoop_file, str(tmp_path / "ours")])
    assert info.value.code == 2 and "--force" in capsys.readouterr().err
    assert out.read_bytes() == b"previous"
    main(["from-coop", "--trust", "--force", cocoop_file, str(tmp_path / "ours")])
    assert "ctx" in torch.load(out, weights_only=True)["state_dict"]


def test_a_missing_source_is_one_error_line(tmp_path):
    missing = str(tmp_path / "run" / "prompt_learner" / "model.pth.tar-5")
    for command in ("to-coop", "from-coop"):
        proc = convert(command, missing, str(tmp_path / "out"))
        assert proc.returncode == 2
        assert proc.stderr == f"python -m mutual_prompt.convert: error: No checkpoint file at {missing}\n"


def test_an_output_that_cannot_be_written_is_one_error_line(cocoop_file, tmp_path):
    (tmp_path / "out" / "prompt_learner" / "model.pth.tar-10").mkdir(parents=True)  # a folder in the file's place
    proc = convert("from-coop", "--trust", "--force", cocoop_file, str(tmp_path / "out"))
    assert proc.returncode == 2
    assert proc.stderr.startswith("python -m mutual_prompt.convert: error: [Errno 21] Is a directory")
    assert len(proc.stderr.strip().splitlines()) == 1
