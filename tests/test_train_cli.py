"""train.py (CoOp's command line, merge order, config errors) and the ZeroshotMP trainer end to end."""
import os
import re
import subprocess
import sys

import pytest
import torch

import train
from helpers.clip_weights import tiny_clip
from helpers.dataset_trees import CALTECH
from helpers.runs import TOY_CONFIG, run_train_py, zeroshot_args
from mutual_prompt.backend import build_trainer
from mutual_prompt.clip import load_clip, openai
from mutual_prompt.run.config_checks import ConfigError
from mutual_prompt.tools.toy import TINY_CLIP_PATH
from trainers.zeroshot_mp import DEFAULT_TEMPLATE, class_prompts, prompt_template

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COOP_FLAGS = ["--root", "--output-dir", "--resume", "--seed", "--source-domains", "--target-domains",
              "--transforms", "--config-file", "--dataset-config-file", "--trainer", "--backbone", "--head",
              "--eval-only", "--model-dir", "--load-epoch", "--no-train"]


def write_yaml(path, text: str) -> str:
    path.write_text(text)
    return str(path)


def parse(*argv: str):
    return train.build_parser().parse_args(list(argv))


def test_help_lists_coops_flags(capsys):
    with pytest.raises(SystemExit) as info:
        train.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for flag in COOP_FLAGS:
        assert flag in out
    assert "KEY VALUE" in out and "config overrides, applied last" in out


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
    assert class_prompts("a photo of a {}.", ["dollar_bill", "face"]) == ["a photo of a dollar bill.",
                                                                          "a photo of a face."]


@pytest.mark.parametrize("template", ["a photo", "a {} or a {}"])
def test_a_template_without_one_class_name_slot_stops_the_trainer_build(caltech_root, tiny_clip_file, tmp_path,
                                                                        template):
    cfg = train.setup_cfg(parse(*zeroshot_args(caltech_root, tiny_clip_file, str(tmp_path / "out"),
                                               "TRAINER.ZEROSHOT_MP.TEMPLATE", template)))
    message = f"TRAINER.ZEROSHOT_MP.TEMPLATE must contain exactly one '{{}}' for the class name, got {template!r}"
    with pytest.raises(ConfigError, match="^" + re.escape(message) + "$"):
        build_trainer(cfg)


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


def test_help_lists_the_trainers_and_datasets_and_points_to_the_doctor(capsys):
    with pytest.raises(SystemExit):
        train.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    trainer_names = out.split("trainers (--trainer): ")[1].split(" dataset configs")[0].split(", ")
    assert {"MutualPrompt", "ZeroshotMP"} <= set(trainer_names)  # other tests may have registered more
    assert "caltech101, dtd, eurosat" in out and "toy_shapes" in out
    assert "dataset names (DATASET.NAME): " in out and "DescribableTextures" in out
    assert "python -m mutual_prompt.doctor" in out
    assert "(default: -1)" in out and "(default: model-best.pth.tar" in out


DETAIL_BLOCKS = ("** Arguments **", "** Config **", "** System info **", "Prompts: [")


def test_eval_only_end_to_end_writes_the_result_block_to_log_txt(caltech_root, tiny_clip_file, tmp_path):
    output_dir = tmp_path / "zeroshot"
    proc = run_train_py(tmp_path, *zeroshot_args(caltech_root, tiny_clip_file, str(output_dir), "--eval-only",
                                                 "--seed", "1"))
    log = (output_dir / "log.txt").read_text()
    for block in DETAIL_BLOCKS + ("Setting fixed seed: 1",):
        assert block in log
    for block in DETAIL_BLOCKS:  # the terminal gets the progress and the result, not the details
        assert block not in proc.stdout
    assert f"Arguments, config and environment: {output_dir / 'log.txt'} (--verbose prints them here too)" in proc.stdout
    assert proc.stdout.rstrip().splitlines()[-1].startswith("* macro_f1")
    assert "pkg_resources" not in proc.stderr
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
    proc = run_train_py(tmp_path, *zeroshot_args(caltech_root, tiny_clip_file, str(output_dir), "--no-train",
                                                 "--verbose"))
    log = (output_dir / "log.txt").read_text()
    assert "Prompts: [" in log and "no_train: True" in log
    for block in DETAIL_BLOCKS:  # --verbose: the details reach the terminal too, once each in the log
        assert block in proc.stdout and log.count(block) == 1
    assert "Arguments, config and environment:" not in proc.stdout
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


# User errors: one "train.py: error:" line, exit 2, before anything is written


def train_py(cwd, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, os.path.join(REPO_ROOT, "train.py"), *args], cwd=str(cwd),
                          capture_output=True, text=True, timeout=timeout)


def assert_one_error_line(proc: subprocess.CompletedProcess, message: str) -> None:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.endswith(f"train.py: error: {message}\n"), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("opts, message", [
    (["TEST.FINAL_MODEL", "best"], "TEST.FINAL_MODEL must be one of last_step, best_val, got 'best'"),
    (["OPTIM.MAX_EPOCH", "0"], "OPTIM.MAX_EPOCH must be >= 1, got 0"),
])
def test_a_typo_that_used_to_run_is_refused_before_anything_is_written(caltech_root, tiny_clip_file, tmp_path, opts,
                                                                      message):
    out = tmp_path / "out"
    args = zeroshot_args(caltech_root, tiny_clip_file, str(out), "--trainer", "MutualPrompt", *opts)
    assert_one_error_line(train_py(tmp_path, *args), message)
    assert not out.exists()


def test_max_epoch_0_is_no_error_where_nothing_is_trained(caltech_root, tiny_clip_file, tmp_path):
    run_train_py(tmp_path, *zeroshot_args(caltech_root, tiny_clip_file, str(tmp_path / "out"), "--eval-only",
                                          "OPTIM.MAX_EPOCH", "0"))


@pytest.mark.parametrize("name", ["run.log", "seed1.txt"])
def test_an_output_dir_named_like_a_log_file_is_refused(caltech_root, tiny_clip_file, tmp_path, capsys, name):
    out = tmp_path / name
    with pytest.raises(SystemExit) as info:
        train.main(zeroshot_args(caltech_root, tiny_clip_file, str(out), "--eval-only"))
    assert info.value.code == 2
    assert f"--output-dir {out}: an output directory is a folder" in capsys.readouterr().err
    assert not out.exists() and os.listdir(tmp_path) == []


def test_a_yaml_error_in_the_config_file_is_one_error_line_naming_file_and_line(tmp_path):
    bad = write_yaml(tmp_path / "method.yaml", "OPTIM:\n  LR: [0.1\n")
    proc = train_py(tmp_path, "--trainer", "ZeroshotMP", "--config-file", bad)
    assert_one_error_line(proc, f"{bad}, line 3, column 1: not valid YAML: expected ',' or ']', but got "
                                "'<stream end>' (while parsing a flow sequence at line 2, column 7)")


def test_a_dataset_layout_error_while_building_is_one_error_line(tiny_clip_file, tmp_path):
    empty_root = tmp_path / "data"
    empty_root.mkdir()
    out = tmp_path / "out"
    proc = train_py(tmp_path, *zeroshot_args(str(empty_root), tiny_clip_file, str(out), "--eval-only"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("train.py: error: ") and str(empty_root) in last and "caltech-101" in last, last
    assert last.endswith(f"(python -m mutual_prompt.doctor --root {empty_root} Caltech101 checks the whole dataset)")
    assert (out / "log.txt").read_text().strip().splitlines()[-1] == last  # the log says why the run stopped


@pytest.mark.parametrize("flags, message", [
    (["--trainer", "MutualPromt"], "TRAINER.NAME (--trainer): unknown trainer 'MutualPromt' (did you mean "
                                   "'MutualPrompt'?); valid trainers: LinearProbeMP, MutualPrompt, ZeroshotMP"),
    (["--trainer", "MutualPrompt", "DATASET.NAME", "ToyShape"],
     "DATASET.NAME (--dataset-config-file): unknown dataset 'ToyShape' (did you mean 'ToyShapes'?); valid datasets: "),
], ids=["trainer", "dataset"])
def test_an_unknown_trainer_or_dataset_name_is_a_config_error_with_a_did_you_mean(tmp_path, flags, message):
    toy_dataset = os.path.join(REPO_ROOT, "configs", "datasets", "toy_shapes.yaml")
    proc = train_py(tmp_path, "--dataset-config-file", toy_dataset, "--config-file", TOY_CONFIG,
                    "--output-dir", str(tmp_path / "out"), "--root", str(tmp_path), *flags)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"train.py: error: {message}"), last
    assert "KeyError" not in proc.stderr and not (tmp_path / "out").exists()
    if "DATASET" in message:
        assert "Caltech101" in last and "ToyShapes" in last


def test_a_missing_weights_file_is_one_error_line(caltech_root, tmp_path):
    missing = str(tmp_path / "weights" / "clip.pt")
    proc = train_py(tmp_path, *zeroshot_args(caltech_root, missing, str(tmp_path / "out"), "--eval-only"))
    assert_one_error_line(proc, f"CLIP weights file not found: {missing} (MODEL.BACKBONE.PATH or clip's cache)")


@pytest.mark.parametrize("opts, message", [
    (["MODEL.BACKBONE.NAME", "RN50"], "MODEL.BACKBONE.NAME RN50 does not match MODEL.BACKBONE.PATH {path}: the file "
                                     "holds ViT patch 8, 32 px"),
    (["INPUT.SIZE", "(64, 64)"], "INPUT.SIZE (64, 64) does not match the CLIP backbone's input resolution (32, 32); "
                                 "set INPUT.SIZE (32, 32)"),
], ids=["backbone name", "input size"])
def test_weights_that_do_not_fit_the_config_are_one_error_line(caltech_root, tiny_clip_file, tmp_path, opts, message):
    proc = train_py(tmp_path, *zeroshot_args(caltech_root, tiny_clip_file, str(tmp_path / "out"), "--eval-only", *opts))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"train.py: error: {message.format(path=tiny_clip_file)}"), last


def test_unreadable_images_are_listed_before_the_first_epoch(tiny_clip_file, tmp_path):
    root = tmp_path / "data"
    CALTECH.build(str(root))
    folder = root / "caltech-101" / "101_ObjectCategories" / "Faces"
    for path in folder.iterdir():
        path.write_bytes(b"not an image")
    out = tmp_path / "out"
    proc = train_py(tmp_path, *zeroshot_args(str(root), tiny_clip_file, str(out)))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    match = re.fullmatch(r"train\.py: error: (\d) of the \d+ images of train_x, test cannot be opened: (.*) "
                         r"\(python -m mutual_prompt\.doctor --root (\S+) Caltech101 checks the whole dataset\)", last)
    assert match and match.group(3) == str(root), last
    listed = match.group(2).split("; ")
    assert len(listed) == int(match.group(1)) >= 3  # all the class's images but those in val, which is not read
    assert all(entry.startswith(str(folder)) and entry.endswith(" (not an image file PIL can identify)")
               for entry in listed), listed
    log = (out / "log.txt").read_text()
    assert "Checking that the" in log and "=> result" not in log


def test_the_image_check_lists_the_first_ten_and_counts_the_rest(tmp_path, capsys):
    from types import SimpleNamespace

    from mutual_prompt.data.image_check import UnreadableImages, check_images_open
    from PIL import Image

    good = tmp_path / "good.png"
    Image.new("RGB", (4, 4)).save(good)
    missing = [SimpleNamespace(impath=str(tmp_path / f"missing_{i:02d}.jpg")) for i in range(12)]
    check_images_open({"train_x": [SimpleNamespace(impath=str(good))] * 3})
    assert "All 1 images open" in capsys.readouterr().out  # each file is opened once
    with pytest.raises(UnreadableImages) as err:
        check_images_open({"train_x": [SimpleNamespace(impath=str(good))], "test": missing})
    message = str(err.value)
    assert message.startswith(f"12 of the 13 images of train_x, test cannot be opened: {missing[0].impath} (missing); ")
    assert message.endswith(f"{missing[9].impath} (missing); and 2 more")
    assert missing[10].impath not in message


def test_a_long_image_check_says_how_far_it_got(tmp_path, capsys, monkeypatch):
    from types import SimpleNamespace

    from mutual_prompt.data import image_check
    from PIL import Image

    paths = [tmp_path / f"{i}.png" for i in range(4)]
    for path in paths[:3]:
        Image.new("RGB", (4, 4)).save(path)
    monkeypatch.setattr(image_check, "PROGRESS_SECONDS", 0.0)  # every image takes "long"
    with pytest.raises(image_check.UnreadableImages):
        image_check.check_images_open({"test": [SimpleNamespace(impath=str(path)) for path in paths]})
    assert capsys.readouterr().out.splitlines() == [
        "Checking that the 4 images of test open ...",
        "  1 of 4 images checked, 0 unreadable so far",
        "  2 of 4 images checked, 0 unreadable so far",
        "  3 of 4 images checked, 0 unreadable so far",
    ]
