"""LinearProbeMP: the search over C, the classifier as a linear layer, the feature cache, eval-only, and
the toy world through train.py (a 16-shot probe beats zero-shot CLIP on the base classes)."""
import math
import os
import re
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import train
from helpers.clip_weights import save_state_dict, tiny_clip
from helpers.dataset_trees import CALTECH, TREES
from helpers.runs import run_train_py
from mutual_prompt.backend import build_trainer
from mutual_prompt.run.config_checks import config_problems
from mutual_prompt.tools.results import parse_run
from mutual_prompt.tools.toy import TINY_CLIP_PATH
from trainers import linear_probe_mp
from trainers.linear_probe_mp import (
    COOP_C_GRID,
    MissingDependency,
    as_linear,
    fit_logistic_regression,
    per_class_sample,
    search_c,
)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO_ROOT, "configs", "trainers", "LinearProbeMP")
TOY_ZERO_SHOT_BASE = 88.30  # ZeroshotMP on ToyShapes' base classes (README's table)


# The search over C


def test_the_grid_s_best_value_wins_and_ties_go_to_the_value_tried_first():
    accuracy = {1e6: 0.5, 1e4: 0.9, 1e2: 0.7, 1.0: 0.9, 1e-2: 0.1}
    calls = []

    def val_accuracy(c):
        calls.append(c)
        return accuracy[c]

    assert search_c(val_accuracy, list(accuracy), steps=0) == (1e4, 0.9)
    assert calls == list(accuracy)  # each C fitted once


def test_the_refining_steps_find_the_best_c_between_grid_values():
    peak = 2.3  # the best C is 10 ** 2.3, between the grid's 1e2 and 1e4
    seen = []

    def val_accuracy(c):
        seen.append(c)
        return 1.0 - abs(math.log10(c) - peak) / 10

    c, accuracy = search_c(val_accuracy, COOP_C_GRID, steps=8)
    tried = list(seen)
    assert abs(math.log10(c) - peak) < 0.02
    assert accuracy == max(val_accuracy(x) for x in tried)  # the best of every C tried
    assert len(tried) == len(set(tried)) <= len(COOP_C_GRID) + 8 + 1  # each C fitted once; a step keeps one end


def test_a_c_that_overfits_the_training_set_loses_on_validation():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8))
    train_x = np.repeat(centres, 4, axis=0) + rng.normal(scale=2.0, size=(12, 8))
    train_y = np.repeat(np.arange(3), 4)
    val_x = np.repeat(centres, 20, axis=0) + rng.normal(scale=2.0, size=(60, 8))
    val_y = np.repeat(np.arange(3), 20)

    def val_accuracy(c):
        return float((fit_logistic_regression(train_x, train_y, c, 1000).predict(val_x) == val_y).mean())

    grid = [1e6, 1e-6]  # no regularisation vs. so much that every class gets the same score
    scores = [val_accuracy(c) for c in grid]
    assert scores[0] != scores[1]
    c, accuracy = search_c(val_accuracy, grid, steps=0)
    assert (c, accuracy) == (grid[int(np.argmax(scores))], max(scores))


@pytest.mark.parametrize("classes", [2, 4])
def test_the_linear_layer_predicts_what_the_classifier_predicts(classes):
    rng = np.random.default_rng(classes)
    x, y = rng.normal(size=(40, 6)).astype(np.float32), np.arange(40) % classes
    classifier = fit_logistic_regression(x, y, 1.0, 1000)
    linear = as_linear(classifier, classes)
    assert tuple(linear.weight.shape) == (classes, 6)
    with torch.no_grad():
        predicted = linear(torch.from_numpy(x)).argmax(dim=1).numpy()
    np.testing.assert_array_equal(predicted, classifier.predict(x))


def test_a_training_set_without_every_class_is_refused():
    x, y = np.random.default_rng(0).normal(size=(8, 3)), np.array([0, 1, 3, 0, 1, 3, 0, 1])
    with pytest.raises(ValueError, match=r"labels \[0, 1, 3\], expected every class 0\.\.3"):
        as_linear(fit_logistic_regression(x, y, 1.0, 100), 4)


def test_stopping_before_convergence_is_a_log_line_not_a_warning(monkeypatch, recwarn):
    logged = []
    monkeypatch.setattr(linear_probe_mp, "detail", logged.append)
    x = np.random.default_rng(0).normal(size=(30, 5))
    fit_logistic_regression(x, np.arange(30) % 3, 1e6, 1)
    assert logged == ["C=1e+06: L-BFGS stopped at MAX_ITER 1 before converging"]
    assert len(recwarn) == 0


def test_without_scikit_learn_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.linear_model", None)
    with pytest.raises(MissingDependency, match=re.escape('pip install -e ".[linear_probe]"')):
        fit_logistic_regression(np.zeros((2, 2)), np.array([0, 1]), 1.0, 10)


# Config checks


def problems(*opts, config="toy.yaml"):
    return config_problems(setup(config, *opts), training=False)


def setup(config, *opts):
    args = ["--trainer", "LinearProbeMP", "--config-file", os.path.join(CONFIGS, config),
            "--dataset-config-file", os.path.join(REPO_ROOT, "configs", "datasets", "dtd.yaml"), *opts]
    return train.setup_cfg(train.build_parser().parse_args(args))


def test_the_shipped_configs_pass_and_bad_values_are_named():
    cfg = setup("vit_b16.yaml")
    assert config_problems(cfg, training=False) == [] and cfg.TRAINER.LINEAR_PROBE_MP.C_GRID == COOP_C_GRID
    assert problems() == []
    assert problems("TRAINER.LINEAR_PROBE_MP.PREC", "half") == [
        "TRAINER.LINEAR_PROBE_MP.PREC must be one of fp16, fp32, amp, bf16, got 'half'"]
    assert problems("TRAINER.LINEAR_PROBE_MP.SEARCH_STEPS", "-1", "TRAINER.LINEAR_PROBE_MP.MAX_ITER", "0") == [
        "TRAINER.LINEAR_PROBE_MP.SEARCH_STEPS must be >= 0, got -1",
        "TRAINER.LINEAR_PROBE_MP.MAX_ITER must be >= 1, got 0"]
    assert problems("TRAINER.LINEAR_PROBE_MP.C_GRID", "['1e6', 1.0]") == [
        "TRAINER.LINEAR_PROBE_MP.C_GRID must be a non-empty list of positive numbers, got ['1e6', 1.0] (YAML reads "
        "1e6 as text: write 1.0e+6)"]


# The trainer on a generated Caltech101 tree


def build(root, clip_file, output_dir, *opts, seed=1):
    args = ["--root", str(root), "--trainer", "LinearProbeMP", "--output-dir", str(output_dir), "--seed", str(seed),
            "--dataset-config-file", os.path.join(REPO_ROOT, "configs", "datasets", "caltech101.yaml"),
            "--config-file", os.path.join(CONFIGS, "toy.yaml"), "MODEL.BACKBONE.PATH", str(clip_file),
            "USE_CUDA", "False", "TRAINER.LINEAR_PROBE_MP.SEARCH_STEPS", "1", *opts]
    return build_trainer(train.setup_cfg(train.build_parser().parse_args(args)))


@pytest.fixture
def caltech(tmp_path):
    CALTECH.build(str(tmp_path / "data"))
    return tmp_path / "data"


def count_extractions(monkeypatch):
    extracted = []
    original = linear_probe_mp.LinearProbeMP.extract

    def extract(self, items, split):
        extracted.append(split)
        return original(self, items, split)

    monkeypatch.setattr(linear_probe_mp.LinearProbeMP, "extract", extract)
    return extracted


def test_features_are_cached_in_the_dataset_folder_and_reused(caltech, tiny_clip_file, tmp_path, monkeypatch):
    extracted = count_extractions(monkeypatch)
    first = build(caltech, tiny_clip_file, tmp_path / "out1")
    features, labels = first.features("test")
    assert extracted == ["test"]
    cached = os.listdir(os.path.join(first.dm.dataset.dataset_dir, linear_probe_mp.FEATURES_FOLDER))
    assert len(cached) == 1 and cached[0].startswith("test-")

    again = build(caltech, tiny_clip_file, tmp_path / "out2")  # another run, the same weights and images
    torch.testing.assert_close(again.features("test"), (features, labels))
    assert extracted == ["test"]
    with torch.no_grad():  # the cached features are CLIP's image features of the test images, in order
        images = torch.stack([again.test_loader.dataset[i]["img"] for i in range(len(labels))])
        torch.testing.assert_close(again.encode_image(images).float(), features)


def test_features_of_other_weights_or_images_are_not_read_from_the_cache(caltech, tiny_clip_file, tmp_path,
                                                                        monkeypatch):
    extracted = count_extractions(monkeypatch)
    build(caltech, tiny_clip_file, tmp_path / "out1").features("test")
    other_weights = save_state_dict(tiny_clip(seed=1), tmp_path / "other_clip.pt")
    other = build(caltech, other_weights, tmp_path / "out2")
    features, _ = other.features("test")
    assert extracted == ["test", "test"]
    with torch.no_grad():
        image = other.test_loader.dataset[0]["img"].unsqueeze(0)
        torch.testing.assert_close(other.encode_image(image).float(), features[:1])

    build(caltech, tiny_clip_file, tmp_path / "out3", "DATASET.NUM_SHOTS", "1", seed=1).features("train")
    build(caltech, tiny_clip_file, tmp_path / "out4", "DATASET.NUM_SHOTS", "1", seed=2).features("train")
    assert extracted[2:] == ["train", "train"]  # each seed's few-shot images have their own features


def test_without_scikit_learn_the_trainer_is_refused_before_any_feature_is_computed(caltech, tiny_clip_file, tmp_path,
                                                                                   monkeypatch):
    extracted = count_extractions(monkeypatch)
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(MissingDependency, match=re.escape('pip install -e ".[linear_probe]"')):
        build(caltech, tiny_clip_file, tmp_path / "out")
    assert extracted == []


def test_per_class_sample_draws_that_many_of_each_label_with_the_seed():
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 0])
    chosen = per_class_sample(labels, 2, seed=1)
    assert sorted(labels[chosen].tolist()) == [0, 0, 1, 1, 2, 2] and list(chosen) == sorted(chosen)
    np.testing.assert_array_equal(per_class_sample(labels, 2, seed=1), chosen)
    assert sorted(labels[per_class_sample(labels, 3, seed=2)].tolist()) == [0, 0, 0, 1, 1, 1, 2, 2]


def test_where_the_val_split_is_the_test_split_c_is_searched_on_a_few_of_its_images(tmp_path, tiny_clip_file, capsys):
    imagenet = next(tree for tree in TREES if tree.name == "ImageNet")  # val = test, 2 images per class
    imagenet.build(str(tmp_path / "data"))
    args = ["--root", str(tmp_path / "data"), "--trainer", "LinearProbeMP", "--output-dir", str(tmp_path / "out"),
            "--seed", "1", "--dataset-config-file", os.path.join(REPO_ROOT, "configs", "datasets", "imagenet.yaml"),
            "--config-file", os.path.join(CONFIGS, "toy.yaml"), "MODEL.BACKBONE.PATH", tiny_clip_file,
            "USE_CUDA", "False", "DATASET.NUM_SHOTS", "1"]
    trainer = build_trainer(train.setup_cfg(train.build_parser().parse_args(args)))
    features, labels = trainer.validation_features()
    assert sorted(labels.tolist()) == list(range(5)) and features.shape[0] == 5  # 1 per class, not all 10
    assert "C is searched on 1 of its images per class (seed 1)" in capsys.readouterr().out


def test_without_a_dataset_folder_of_its_own_the_cache_goes_to_the_output_folder(tmp_path):
    class Dataset:
        dataset_dir = "caltech-101"  # a class's folder name, not a folder its __init__ found

    out = str(tmp_path / "out")
    assert linear_probe_mp.features_folder(Dataset(), out) == os.path.join(out, "clip_features")
    assert linear_probe_mp.features_folder(SimpleNamespace(dataset_dir=str(tmp_path / "gone")), out) == \
        os.path.join(out, "clip_features")
    assert linear_probe_mp.features_folder(SimpleNamespace(dataset_dir=str(tmp_path)), out) == \
        os.path.join(str(tmp_path), "clip_features")


def test_a_cache_file_from_other_weights_at_the_same_path_is_not_used(caltech, tiny_clip_file, tmp_path):
    trainer = build(caltech, tiny_clip_file, tmp_path / "out")
    items = trainer.split_items("test")
    key = linear_probe_mp.cache_key(trainer.cfg, trainer.precision, items)
    path = linear_probe_mp.cache_path(trainer.features_dir, "test", key)
    trainer.features("test")
    assert linear_probe_mp.read_cache(path, key, len(items)) is not None
    stale = dict(key, backbone={**key["backbone"], "MODEL.BACKBONE.SHA256": "0" * 64})
    assert linear_probe_mp.read_cache(path, stale, len(items)) is None
    assert linear_probe_mp.read_cache(path, key, len(items) + 1) is None


def test_eval_only_loads_the_fitted_probe_and_gives_the_same_accuracy(caltech, tiny_clip_file, tmp_path):
    common = ["--root", str(caltech), "--trainer", "LinearProbeMP",
              "--dataset-config-file", os.path.join(REPO_ROOT, "configs", "datasets", "caltech101.yaml"),
              "--config-file", os.path.join(CONFIGS, "toy.yaml"), "--seed", "1"]
    opts = ["MODEL.BACKBONE.PATH", tiny_clip_file, "USE_CUDA", "False", "TRAINER.LINEAR_PROBE_MP.SEARCH_STEPS", "1"]
    run_train_py(tmp_path, *common, "--output-dir", str(tmp_path / "fit"), *opts)
    fitted = parse_run(str(tmp_path / "fit"))
    log = (tmp_path / "fit" / "log.txt").read_text()
    assert fitted is not None and "Best C: " in log and "Finish training" in log
    state = torch.load(tmp_path / "fit" / "linear_probe" / "model-best.pth.tar", weights_only=True)
    assert set(state["state_dict"]) == {"weight", "bias"} and state["C"] > 0

    proc = run_train_py(tmp_path, *common, "--output-dir", str(tmp_path / "eval"), "--eval-only",
                        "--model-dir", str(tmp_path / "fit"), *opts)
    assert "Load " in proc.stdout and "model-best.pth.tar to linear_probe" in proc.stdout
    assert parse_run(str(tmp_path / "eval"), end_signal="=> result") == fitted

    refused = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "train.py"), *common, "--output-dir",
                              str(tmp_path / "eval2"), "--eval-only", *opts], cwd=str(tmp_path), capture_output=True,
                             text=True, timeout=300)
    assert refused.returncode == 2 and "--eval-only needs --model-dir" in refused.stderr


@pytest.mark.slow
def test_a_16_shot_probe_beats_zero_shot_clip_on_the_toy_base_classes(tmp_path):
    if not os.path.isfile(TINY_CLIP_PATH):
        pytest.skip(f"{TINY_CLIP_PATH} not generated yet")
    out = tmp_path / "seed1"
    run_train_py(tmp_path, "--root", str(tmp_path / "data"), "--trainer", "LinearProbeMP", "--dataset-config-file",
                 os.path.join(REPO_ROOT, "configs", "datasets", "toy_shapes.yaml"), "--config-file",
                 os.path.join(CONFIGS, "toy.yaml"), "--output-dir", str(out), "--seed", "1", "DATASET.NUM_SHOTS", "16",
                 "DATASET.SUBSAMPLE_CLASSES", "base", "USE_CUDA", "False", timeout=900)
    assert "* total: 640" in (out / "log.txt").read_text().split("=> result")[-1]
    accuracy = parse_run(str(out))
    assert accuracy is not None and accuracy > TOY_ZERO_SHOT_BASE + 1.0, accuracy

    proc = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "parse_test_res.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"* accuracy: {accuracy:.2f}%" in proc.stdout
