"""train.py (CoOp's command line, merge order, config errors) and the ZeroshotMP trainer end to end."""
import os
import re
import subprocess
import sys

import pytest
import torch

import train
from _dataset_trees import TREES
from mutual_prompt.backend import build_trainer
from mutual_prompt.clip import load_clip, openai
from mutual_prompt.toy import TINY_CLIP_PATH
from test_clip_loader import tiny_clip
from trainers.zeroshot_mp import DEFAULT_TEMPLATE, class_prompts, prompt_template

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY_CONFIG = os.path.join(REPO_ROOT, "configs", "trainers", "ZeroshotMP", "toy.yaml")
CALTECH = next(t for t in TREES if t.name == "Caltech101")
COOP_FLAGS = ["--root", "--output-dir", "--resume", "--seed", "--source-domains", "--target-domains",
              "--transforms", "--config-file", "--dataset-config-file", "--trainer", "--backbone", "--head",
              "--eval-only", "--model-dir", "--load-epoch", "--no-train"]


@pytest.fixture(scope="module")
def tiny_clip_file(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("clip") / "tiny_clip.pt")
    torch.save({k: v.half() for k, v in tiny_clip().state_dict().items()}, path)
    return path


@pytest.fixture(scope="module")
def caltech_root(tmp_path_factory) -> str:
    """A generated Caltech101 tree: 5 classes, 2 identical test images each."""
    root = str(tmp_path_factory.mktemp("data"))
    CALTECH.build(root)
    return root


def zeroshot_args(root: str, clip_file: str, output_dir: str, *extra: str) -> list:
    return ["--root", root, "--trainer", "ZeroshotMP", "--output-dir", output_dir,
            "--dataset-config-file", os.path.join(REPO_ROOT, "configs", "datasets", "caltech101.yaml"),
            "--config-file", TOY_CONFIG, *extra, "MODEL.BACKBONE.PATH", clip_file, "USE_CUDA", "False"]


def write_yaml(path, text: str) -> str:
    path.write_text(text)
    return str(path)


def run_train_py(cwd, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """train.py in a fresh interpreter; fails the test with its output unless it exits with 0."""
    proc = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "train.py"), *args], cwd=str(cwd),
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def parse(*argv: str):
    return train.build_parser().parse_args(list(argv))


def test_help_lists_coops_flags(capsys):
    with pytest.raises(SystemExit) as info:
        train.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for flag in COOP_FLAGS:
        assert flag in out
    assert "opts" in out


def test_config_merge_order_dataset_then_method_then_flags_then_overrides(tmp_path):
    dataset_cfg = write_yaml(tmp_path / "dataset.yaml", "MODEL:\n  BACKBONE:\n    NAME: from_dataset\nSEED: 7\n")
    method_cfg = write_yaml(tmp_path / "method.yaml", "MODEL:\n  BACKBONE:\n    NAME: from_method\n")
    files = ["--dataset-config-file", dataset_cfg, "--config-file", method_cfg]

    def backbone(*argv: str) -> str:
        return train.setup_cfg(parse(*argv)).MODEL.BACKBONE.NAME

    assert backbone() == ""
    assert backbone("--dataset-config-file", dataset_cfg) == "from_dataset"
    assert backbone(*files) == "from_method"
    assert backbone(*files, "--backbone", "from_flag") == "from_flag"
    assert backbone(*files, "--backbone", "from_flag", "MODEL.BACKBONE.NAME", "from_override") == "from_override"

    cfg = train.setup_cfg(parse(*files))
    assert cfg.SEED == 7  # no --seed keeps the config's seed
    assert train.setup_cfg(parse(*files, "--seed", "0")).SEED == 0
    assert cfg.is_frozen()


def test_flags_set_coops_keys():
    cfg = train.setup_cfg(parse("--root", "/data", "--output-dir", "out", "--resume", "ckpt", "--source-domains", "a",
                                "b", "--target-domains", "c", "--transforms", "normalize", "--trainer", "ZeroshotMP",
                                "--backbone", "RN50", "--head", "mlp"))
    assert (cfg.DATASET.ROOT, cfg.OUTPUT_DIR, cfg.RESUME, cfg.TRAINER.NAME) == ("/data", "out", "ckpt", "ZeroshotMP")
    assert list(cfg.DATASET.SOURCE_DOMAINS) == ["a", "b"] and list(cfg.DATASET.TARGET_DOMAINS) == ["c"]
    assert list(cfg.INPUT.TRANSFORMS) == ["normalize"]
    assert (cfg.MODEL.BACKBONE.NAME, cfg.MODEL.HEAD.NAME) == ("RN50", "mlp")
    # every trainer's keys and the keys real Dassl lacks are there before any file is merged
    assert cfg.TRAINER.ZEROSHOT_MP.TEMPLATE == ""
    assert cfg.DATASET.SUBSAMPLE_CLASSES == "all" and cfg.MODEL.BACKBONE.PATH == ""


def test_unknown_key_on_the_command_line_exits_non_zero_naming_it(capsys):
    with pytest.raises(SystemExit) as info:
        train.main(["--trainer", "ZeroshotMP", "TRAINER.ZEROSHOT_MP.TEMPLTE", "a {}."])
    assert info.value.code != 0
    assert "TRAINER.ZEROSHOT_MP.TEMPLTE" in capsys.readouterr().err


def test_unknown_key_in_a_config_file_names_the_key_and_the_file(tmp_path, capsys):
    bad = write_yaml(tmp_path / "bad_method.yaml", "OPTIM:\n  LEARNING_RATE: 0.1\n")
    with pytest.raises(SystemExit) as info:
        train.main(["--config-file", bad])
    assert info.value.code != 0
    err = capsys.readouterr().err
    assert "OPTIM.LEARNING_RATE" in err and "bad_method.yaml" in err


def test_odd_number_of_overrides_is_an_error(capsys):
    with pytest.raises(SystemExit) as info:
        train.main(["SEED"])
    assert info.value.code != 0
    assert "KEY VALUE pairs" in capsys.readouterr().err


def test_mutual_prompt_keys_reach_the_model():
    from trainers.mutual_prompt import build_mutual_prompt_clip

    def model(*opts: str):
        cfg = train.setup_cfg(parse("--trainer", "MutualPrompt", *opts))
        return build_mutual_prompt_clip(cfg, ["cat", "dog"], tiny_clip())

    default = model()
    assert default.text_encoder.chunk_size == 2000  # a test batch of 100 images x 1000 classes is chunked
    assert not default.text_encoder.checkpoint and default.prompt_learner.tvp is not None
    changed = model("TRAINER.MUTUAL_PROMPT.TEXT_CHUNK", "0", "TRAINER.MUTUAL_PROMPT.TEXT_CHECKPOINT", "True",
                    "TRAINER.MUTUAL_PROMPT.TVP.ENABLED", "False", "TRAINER.MUTUAL_PROMPT.FTP.MODE", "shared")
    assert changed.text_encoder.chunk_size == 0 and changed.text_encoder.checkpoint
    assert changed.prompt_learner.tvp is None and changed.prompt_learner.ftp.mode == "shared"


def test_prompt_template_defaults_per_dataset_and_can_be_set(tmp_path):
    def template(*opts: str) -> str:
        return prompt_template(train.setup_cfg(parse(*opts)))

    assert template("DATASET.NAME", "EuroSAT") == "a centered satellite photo of {}."
    assert template("DATASET.NAME", "ToyShapes") == DEFAULT_TEMPLATE
    assert template("DATASET.NAME", "EuroSAT", "TRAINER.ZEROSHOT_MP.TEMPLATE", "itap of a {}.") == "itap of a {}."
    with pytest.raises(ValueError, match="exactly one '{}'.*'a photo'"):
        template("TRAINER.ZEROSHOT_MP.TEMPLATE", "a photo")
    assert class_prompts("a photo of a {}.", ["dollar_bill", "face"]) == ["a photo of a dollar bill.",
                                                                          "a photo of a face."]


def test_zeroshot_logits_are_scaled_cosines_of_image_and_class_prompt_features(caltech_root, tiny_clip_file,
                                                                               tmp_path, capsys):
    cfg = train.setup_cfg(parse(*zeroshot_args(caltech_root, tiny_clip_file, str(tmp_path / "out"),
                                               "TRAINER.ZEROSHOT_MP.TEMPLATE", "itap of a {}.")))
    trainer = build_trainer(cfg)
    images = torch.randn(3, 3, 32, 32)

    reference = load_clip("", tiny_clip_file)
    with torch.no_grad():
        prompts = [f"itap of a {name.replace('_', ' ')}." for name in CALTECH.classnames]
        text = reference.encode_text(openai.tokenize(prompts))
        image = reference.encode_image(images)
    cosines = torch.nn.functional.normalize(image, dim=-1) @ torch.nn.functional.normalize(text, dim=-1).t()
    expected = reference.logit_scale.exp() * cosines

    assert trainer.dm.dataset.classnames == CALTECH.classnames
    torch.testing.assert_close(trainer.model_inference(images), expected)

    trainer.train()  # nothing to train: it evaluates instead
    out = capsys.readouterr().out
    assert "no parameters to train" in out and "=> result" in out and "* total: 10" in out


def test_eval_only_end_to_end_writes_the_result_block_to_log_txt(caltech_root, tiny_clip_file, tmp_path):
    output_dir = tmp_path / "zeroshot"
    run_train_py(tmp_path, *zeroshot_args(caltech_root, tiny_clip_file, str(output_dir), "--eval-only", "--seed", "1"))
    log = (output_dir / "log.txt").read_text()
    for block in ("** Arguments **", "** Config **", "** System info **", "Setting fixed seed: 1"):
        assert block in log
    assert "Prompts: ['a photo of a face.', 'a photo of a leopard.', 'a photo of a accordion.'" in log
    assert "eval_only: True" in log and "TEMPLATE: " in log
    result = log[log.index("=> result"):]
    assert "* total: 10" in result
    # every test image is the same picture, so every prediction is the same class: 2 of 10 right
    assert re.search(r"\* accuracy: 20\.0%", result), result


def test_a_backbone_name_the_weights_file_does_not_hold_is_refused_before_any_work(caltech_root, tiny_clip_file,
                                                                                  tmp_path):
    cfg = train.setup_cfg(parse(*zeroshot_args(caltech_root, tiny_clip_file, str(tmp_path / "out"),
                                               "MODEL.BACKBONE.NAME", "RN50")))
    with pytest.raises(ValueError, match=f"^MODEL.BACKBONE.NAME RN50 does not match MODEL.BACKBONE.PATH "
                                         f"{re.escape(tiny_clip_file)}: the file holds ViT patch 8, 32 px"):
        build_trainer(cfg)


def test_no_train_builds_the_trainer_and_stops(caltech_root, tiny_clip_file, tmp_path):
    output_dir = tmp_path / "no_train"
    run_train_py(tmp_path, *zeroshot_args(caltech_root, tiny_clip_file, str(output_dir), "--no-train"))
    log = (output_dir / "log.txt").read_text()
    assert "Prompts: [" in log and "no_train: True" in log
    assert "=> result" not in log


@pytest.mark.slow
def test_toy_clip_zero_shot_on_toy_shapes_is_far_above_chance(tmp_path):
    if not os.path.isfile(TINY_CLIP_PATH):
        pytest.skip(f"{TINY_CLIP_PATH} not generated yet")
    output_dir = tmp_path / "toy"
    run_train_py(tmp_path, "--root", str(tmp_path / "data"), "--trainer", "ZeroshotMP", "--dataset-config-file",
                 os.path.join(REPO_ROOT, "configs", "datasets", "toy_shapes.yaml"), "--config-file", TOY_CONFIG,
                 "--output-dir", str(output_dir), "--eval-only", "USE_CUDA", "False", timeout=600)
    result = (output_dir / "log.txt").read_text().split("=> result")[-1]
    accuracy = float(re.search(r"\* accuracy: ([\d.]+)%", result).group(1))
    assert "* total: 1,280" in result
    assert accuracy > 70.0, result  # chance is 1/64
