"""scripts/protocols.sh read strictly: what it defines, and each kind of malformed line named by file
and line, in the reader and in the sweep's one-line error."""
import os

import pytest

from mutual_prompt.tools import protocols
from mutual_prompt.tools.protocols import ProtocolFileError, linear_probe, load, max_epoch, zero_shot
from mutual_prompt.tools.sweep import cli
from mutual_prompt.tools.sweep.plan import Ablation, Settings, expand


def test_the_definition_gives_each_protocols_defaults_and_templates():
    base2new, xd, few_shot = (load(protocols.PROTOCOLS_FILE)[p] for p in ("base2new", "xd", "few_shot"))
    assert base2new.defaults == {
        "cfg": "vit_b16_c4_ep10_batch1_ctxv1", "shots": 16, "seeds": (1, 2, 3), "sub": "new",
        "datasets": ("imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
                     "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101")}
    assert xd.defaults["targets"] == base2new.defaults["datasets"][1:] + (
        "imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r")
    assert (xd.defaults["source"], xd.defaults["cfg"]) == ("imagenet", "vit_b16_c4_ep5_batch4_ctxv1_xd")
    assert few_shot.defaults["shot_list"] == (1, 2, 4, 8, 16) and few_shot.test_dir is None
    assert base2new.test_dir.fill(OUTPUT="out", TRAINER="T", CFG="c", SHOTS=16, DATASET="dtd", SUB="new") == \
        "out/base2new/test_new/dtd/shots_16/T/c"
    assert xd.test_opts.fill() == ""
    assert few_shot.zeroshot_dir.fill(OUTPUT="out", CFG="vit_b16", DATASET="dtd") == "out/few_shot/dtd/ZeroshotMP/vit_b16"
    assert base2new.zeroshot_dir is None and xd.zeroshot_dir is None
    assert few_shot.linear_probe_dir.fill(OUTPUT="out", CFG="vit_b16", DATASET="dtd", SHOTS=4) == \
        "out/few_shot/dtd/LinearProbeMP/vit_b16_4shots"
    assert base2new.linear_probe_dir is None and xd.linear_probe_dir is None


def written(tmp_path, edit):
    """The repository's protocols.sh with ``edit(lines)`` applied, and the line number it changed."""
    with open(protocols.PROTOCOLS_FILE) as f:
        lines = f.read().splitlines()
    number = edit(lines)
    path = tmp_path / "protocols.sh"
    path.write_text("\n".join(lines) + "\n")
    return str(path), number


def replace(name, line):
    def edit(lines):
        (i,) = [i for i, text in enumerate(lines) if text.startswith(f"{name}=")]
        lines[i] = line
        return i + 1
    return edit


def append(line):
    def edit(lines):
        lines.append(line)
        return len(lines)
    return edit


@pytest.mark.parametrize("edit, message", [
    (append("echo hello"), "expected a comment or NAME=VALUE; got 'echo hello'"),
    (append("export XD_CFG=toy"), "expected a comment or NAME=VALUE; got 'export XD_CFG=toy'"),
    (replace("BASE2NEW_SEEDS", 'BASE2NEW_SEED="1 2 3"'), "unknown name 'BASE2NEW_SEED'; expected one of "
                                                         "BENCHMARK_DATASETS, BASE2NEW_CFG, "),
    (append("XD_CFG=toy"), "XD_CFG is defined twice (lines "),
    (replace("BASE2NEW_SEEDS", 'BASE2NEW_SEEDS="1 two"'), "BASE2NEW_SEEDS: expected a list of numbers; got '1 two'"),
    (replace("XD_SHOTS", "XD_SHOTS=''"), "XD_SHOTS: expected a number; got ''"),
    (replace("XD_CFG", "XD_CFG='a b'"), "XD_CFG: expected one word; got 'a b'"),
    (replace("XD_CFG", "XD_CFG=a b"), "XD_CFG: expected a word, a \"list of words\" or a 'template' (no $(...), "
                                      "backquotes, backslashes or spaces outside quotes); got 'a b'"),
    (replace("XD_TARGETS", 'XD_TARGETS="$(ls)"'), "XD_TARGETS: expected no $ but ${NAME} of a name above; got"),
    (replace("XD_TARGETS", 'XD_TARGETS="dtd ${DG_TARGET}"'), "XD_TARGETS: ${DG_TARGET} is not a name defined above"),
    (replace("XD_TARGETS", "XD_TARGETS=`ls`"), "XD_TARGETS: expected a word, a \"list of words\" or a 'template'"),
    (replace("BASE2NEW_TRAIN_DIR", "BASE2NEW_TRAIN_DIR='{OUTPUT}/{SUB}'"),
     "BASE2NEW_TRAIN_DIR: expected a template using only {OUTPUT} {TRAINER} {CFG} {SHOTS} {DATASET}; {SUB} is "
     "none of them; got '{OUTPUT}/{SUB}'"),
    (replace("XD_TEST_DIR", "XD_TEST_DIR=''"), "XD_TEST_DIR: expected a folder template; got ''"),
    (replace("XD_TRAIN_OPTS", "XD_TRAIN_OPTS='DATASET.NUM_SHOTS'"),
     "XD_TRAIN_OPTS: expected KEY VALUE pairs; got 'DATASET.NUM_SHOTS'"),
])
def test_a_malformed_line_is_named_by_file_and_line(tmp_path, edit, message):
    path, number = written(tmp_path, edit)
    with pytest.raises(ProtocolFileError) as info:
        load(path)
    assert str(info.value).startswith(f"{path}, line {number}: {message}")


def test_a_missing_name_is_named(tmp_path):
    path, _ = written(tmp_path, lambda lines: lines.remove("XD_SHOTS=16"))
    with pytest.raises(ProtocolFileError) as info:
        load(path)
    assert str(info.value) == f"{path}: no XD_SHOTS (every name of the protocols is needed)"


def test_the_sweep_stops_on_a_malformed_definition_with_one_line(repo_root, tmp_path, monkeypatch, capsys):
    path, number = written(tmp_path, replace("BASE2NEW_SHOTS", "BASE2NEW_SHOTS=sixteen"))
    monkeypatch.setattr(protocols, "PROTOCOLS_FILE", path)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", "base2new", "--repo", repo_root, "--output", str(tmp_path / "out"), "--dry-run"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (f"python -m mutual_prompt.sweep run: error: {path}, line {number}: "
                                       "BASE2NEW_SHOTS: expected a number; got 'sixteen'\n")


def test_max_epoch_reads_the_overrides_then_the_config(repo_root, tmp_path):
    toy = os.path.join(repo_root, "configs", "trainers", "MutualPrompt", "toy.yaml")
    assert max_epoch(toy, ["OPTIM.MAX_EPOCH", "3", "OPTIM.LR", "0.1"]) == 3
    config = tmp_path / "c.yaml"
    config.write_text("OPTIM:\n  MAX_EPOCH: 7\n")
    assert max_epoch(str(config)) == 7
    config.write_text("OPTIM:\n  LR: 0.1\n")
    assert max_epoch(str(config)) == 10
    with pytest.raises(ValueError, match=r"^override OPTIM.MAX_EPOCH: expected an integer; got 'x'$"):
        max_epoch(toy, ["OPTIM.MAX_EPOCH", "x"])
    with pytest.raises(FileNotFoundError, match=r"^Config file .*missing.yaml not found$"):
        max_epoch(str(tmp_path / "missing.yaml"))


def test_zero_shot_takes_the_zeroshot_config_of_the_trainings_backbone(repo_root, tmp_path):
    trainers = os.path.join(repo_root, "configs", "trainers")
    fewshot = os.path.join(trainers, "MutualPrompt", "vit_b16_c4_ep10_batch4_ctxv1_fewshot.yaml")
    assert zero_shot(fewshot) == ("vit_b16", ())
    assert zero_shot(os.path.join(trainers, "MutualPrompt", "toy_cocoop.yaml")) == ("toy", ())
    # The same weights: MODEL.BACKBONE.* overrides go with it, the method's do not.
    assert zero_shot(fewshot, ["OPTIM.LR", "0.1", "MODEL.BACKBONE.PATH", "/w/ViT-B-16.pt"]) == \
        ("vit_b16", ("MODEL.BACKBONE.PATH", "/w/ViT-B-16.pt"))
    with pytest.raises(ValueError, match=r"^no zero-shot CLIP line: no config in .*ZeroshotMP has "
                                         r"MODEL.BACKBONE.NAME 'RN50', the backbone of .*fewshot.yaml$"):
        zero_shot(fewshot, ["MODEL.BACKBONE.NAME", "RN50"])


def test_the_few_shot_plan_runs_zero_shot_clip_once_per_dataset(repo_root, tmp_path):
    s = Settings(repo_root=repo_root, data="data", output="out", cfg="toy", datasets=("toy_shapes", "dtd"),
                 shot_list=(1, 2), seeds=(1, 2))
    main, cocoop, no_tvp = expand("few_shot", s, [Ablation("cocoop", cfg="toy_cocoop"),
                                                  Ablation("no_tvp", opts=("TRAINER.MUTUAL_PROMPT.TVP.ENABLED", "False"))])
    zero_shot_runs = [r for r in main.runs if r.kind == "zero_shot"]
    assert [r.output_dir for r in zero_shot_runs] == [f"out/few_shot/{ds}/ZeroshotMP/toy/seed1" for ds in ("toy_shapes", "dtd")]
    assert main.runs[0] == zero_shot_runs[0] and main.runs[9] == zero_shot_runs[1]  # each dataset's first run
    args = zero_shot_runs[1].args
    assert args[args.index("--trainer") + 1] == "ZeroshotMP"
    assert args[args.index("--config-file") + 1] == "configs/trainers/ZeroshotMP/toy.yaml"
    assert args[-2:] == ("--eval-only", "--no-load") and "TRAINER.MUTUAL_PROMPT.TVP.ENABLED" not in args
    assert [r for r in cocoop.runs if r.kind == "zero_shot"] == []  # the same runs as main's: made once
    assert [r.output_dir for r in no_tvp.runs if r.kind == "zero_shot"] == [
        f"out/ablations/no_tvp/few_shot/{ds}/ZeroshotMP/toy/seed1" for ds in ("toy_shapes", "dtd")]
    no_match = expand("few_shot", Settings(repo_root=repo_root, data="data", output="out", cfg="toy",
                                           datasets=("dtd",), shot_list=(1,), seeds=(1,),
                                           opts=("MODEL.BACKBONE.NAME", "RN50")))[0]
    assert [r.kind for r in no_match.runs] == ["train"]  # no ZeroshotMP or LinearProbeMP config of RN50


def test_linear_probe_takes_the_linear_probe_config_of_the_trainings_backbone(repo_root):
    trainers = os.path.join(repo_root, "configs", "trainers")
    fewshot = os.path.join(trainers, "MutualPrompt", "vit_b16_c4_ep10_batch4_ctxv1_fewshot.yaml")
    assert linear_probe(fewshot) == ("vit_b16", ())
    assert linear_probe(os.path.join(trainers, "MutualPrompt", "toy.yaml"), ["MODEL.BACKBONE.PATH", "/w/t.pt"]) == \
        ("toy", ("MODEL.BACKBONE.PATH", "/w/t.pt"))
    with pytest.raises(ValueError, match=r"^no linear-probe CLIP curve: no config in .*LinearProbeMP has "
                                         r"MODEL.BACKBONE.NAME 'RN50', the backbone of .*fewshot.yaml$"):
        linear_probe(fewshot, ["MODEL.BACKBONE.NAME", "RN50"])


def test_the_few_shot_plan_runs_the_linear_probe_with_each_shots_and_seed(repo_root):
    s = Settings(repo_root=repo_root, data="data", output="out", cfg="toy", datasets=("dtd",), shot_list=(1, 4),
                 seeds=(1, 2))
    no_tvp_ablation = Ablation("no_tvp", opts=("TRAINER.MUTUAL_PROMPT.TVP.ENABLED", "False"))
    main, cocoop, no_tvp = expand("few_shot", s, [Ablation("cocoop", cfg="toy_cocoop"), no_tvp_ablation])
    assert [(r.kind, r.output_dir) for r in main.runs] == [
        ("zero_shot", "out/few_shot/dtd/ZeroshotMP/toy/seed1"),
        ("train", "out/few_shot/dtd/MutualPrompt/toy_1shots/seed1"),
        ("train", "out/few_shot/dtd/MutualPrompt/toy_1shots/seed2"),
        ("linear_probe", "out/few_shot/dtd/LinearProbeMP/toy_1shots/seed1"),
        ("linear_probe", "out/few_shot/dtd/LinearProbeMP/toy_1shots/seed2"),
        ("train", "out/few_shot/dtd/MutualPrompt/toy_4shots/seed1"),
        ("train", "out/few_shot/dtd/MutualPrompt/toy_4shots/seed2"),
        ("linear_probe", "out/few_shot/dtd/LinearProbeMP/toy_4shots/seed1"),
        ("linear_probe", "out/few_shot/dtd/LinearProbeMP/toy_4shots/seed2")]
    args = main.runs[-1].args
    assert args[args.index("--trainer") + 1] == "LinearProbeMP" and args[args.index("--seed") + 1] == "2"
    assert args[args.index("--config-file") + 1] == "configs/trainers/LinearProbeMP/toy.yaml"
    assert args[-2:] == ("DATASET.NUM_SHOTS", "4") and "--eval-only" not in args  # it fits: a training run
    assert [r.kind for r in cocoop.runs] == ["train"] * 4  # its reference runs are main's: made once
    assert "TRAINER.MUTUAL_PROMPT.TVP.ENABLED" not in no_tvp.runs[3].args and no_tvp.runs[3].kind == "linear_probe"
    lp_itself = expand("few_shot", Settings(repo_root=repo_root, data="data", output="out", trainer="LinearProbeMP",
                                            cfg="toy", datasets=("dtd",), shot_list=(1,), seeds=(1,)))[0]
    assert [r.kind for r in lp_itself.runs] == ["zero_shot", "train"]  # its own runs are the curve
