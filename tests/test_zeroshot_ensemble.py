"""ZeroshotMP's template ensemble (TRAINER.ZEROSHOT_MP.ENSEMBLE, CoOp's ZeroshotCLIP2): the templates, the
class features against a plain per-template computation, the key's check, and a toy-world run."""
import os
import re

import pytest
import torch
import torch.nn.functional as F

import train
from helpers.dataset_trees import CALTECH
from helpers.runs import REPO_ROOT, TOY_CONFIG, run_train_py, zeroshot_args
from mutual_prompt.backend import build_trainer
from mutual_prompt.clip import load_clip, openai
from mutual_prompt.run.config_checks import ConfigError, config_problems, validate_cfg
from mutual_prompt.tools.toy import TINY_CLIP_PATH
from trainers.zeroshot_mp import classifier_templates

# CoOp's IMAGENET_TEMPLATES_SELECT, written out here so that a changed list fails.
COOP_SELECTED = ["itap of a {}.", "a bad photo of the {}.", "a origami {}.", "a photo of the large {}.",
                 "a {} in a video game.", "art of the {}.", "a photo of the small {}."]
ENSEMBLE = ["TRAINER.ZEROSHOT_MP.ENSEMBLE", "True"]


def cfg_of(*opts: str):
    return train.setup_cfg(train.build_parser().parse_args(["--trainer", "ZeroshotMP", *opts]))


def test_the_ensemble_is_coops_seven_templates_and_the_dataset_s_own():
    assert classifier_templates(cfg_of("DATASET.NAME", "EuroSAT")) == ["a centered satellite photo of {}."]
    assert classifier_templates(cfg_of("DATASET.NAME", "EuroSAT", *ENSEMBLE)) == COOP_SELECTED + [
        "a centered satellite photo of {}."]
    assert classifier_templates(cfg_of("DATASET.NAME", "ToyShapes", *ENSEMBLE)) == COOP_SELECTED + ["a photo of a {}."]
    # CoOp's ZeroshotCLIP2 adds no own template for ImageNet, whose seven were selected on it
    assert classifier_templates(cfg_of("DATASET.NAME", "ImageNet", *ENSEMBLE)) == COOP_SELECTED
    assert classifier_templates(cfg_of("DATASET.NAME", "ImageNet", "TRAINER.ZEROSHOT_MP.TEMPLATE", "a {} photo.",
                                       *ENSEMBLE)) == COOP_SELECTED + ["a {} photo."]
    assert classifier_templates(cfg_of("TRAINER.ZEROSHOT_MP.TEMPLATE", "art of the {}.", *ENSEMBLE)) == COOP_SELECTED


def test_the_ensemble_equals_the_mean_of_the_per_template_features(caltech_root, tiny_clip_file, tmp_path, capsys):
    cfg = train.setup_cfg(train.build_parser().parse_args(
        zeroshot_args(caltech_root, tiny_clip_file, str(tmp_path / "out"), *ENSEMBLE)))
    trainer = build_trainer(cfg)
    assert "Prompt ensemble: the mean class text feature over 8 templates" in capsys.readouterr().out

    reference = load_clip("", tiny_clip_file)
    names = [name.replace("_", " ") for name in CALTECH.classnames]
    per_template = []
    with torch.no_grad():
        for template in COOP_SELECTED + ["a photo of a {}."]:  # Caltech101's own template last
            text = reference.encode_text(openai.tokenize([template.format(name) for name in names]))
            per_template.append(text / text.norm(dim=-1, keepdim=True))
        mean = sum(per_template) / len(per_template)
        expected = mean / mean.norm(dim=-1, keepdim=True)
        images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        image = F.normalize(reference.encode_image(images), dim=-1)
    torch.testing.assert_close(trainer.text_features, expected)
    assert not torch.allclose(expected, per_template[-1], atol=1e-3)  # the ensemble is not the one template
    torch.testing.assert_close(trainer.model_inference(images), reference.logit_scale.exp() * image @ expected.t())


def test_ensemble_must_be_a_boolean():
    cfg = cfg_of("DATASET.NAME", "Caltech101")
    cfg.defrost()
    cfg.TRAINER.ZEROSHOT_MP.ENSEMBLE = "yes"
    assert config_problems(cfg, training=False, trainer="ZeroshotMP") == [
        "TRAINER.ZEROSHOT_MP.ENSEMBLE must be True or False, got 'yes'"]
    with pytest.raises(ConfigError, match="^TRAINER.ZEROSHOT_MP.ENSEMBLE must be True or False, got 'yes'$"):
        validate_cfg(cfg, training=False, trainer="ZeroshotMP")


@pytest.mark.slow
def test_the_ensemble_runs_through_train_py_on_the_toy_world(tmp_path):
    if not os.path.isfile(TINY_CLIP_PATH):
        pytest.skip(f"{TINY_CLIP_PATH} not generated yet")
    output_dir = tmp_path / "toy_ensemble"
    proc = run_train_py(tmp_path, "--root", str(tmp_path / "data"), "--trainer", "ZeroshotMP", "--dataset-config-file",
                        os.path.join(REPO_ROOT, "configs", "datasets", "toy_shapes.yaml"), "--config-file", TOY_CONFIG,
                        "--output-dir", str(output_dir), "--eval-only", "--no-load", "TEST.SPLIT", "val", *ENSEMBLE,
                        "USE_CUDA", "False", timeout=600)
    assert "Prompt ensemble: the mean class text feature over 8 templates" in proc.stdout
    log = (output_dir / "log.txt").read_text()
    assert "Templates: ['itap of a {}.'" in log and "'a photo of a {}.']" in log
    result = log.split("=> result")[-1]
    accuracy = float(re.search(r"\* accuracy: ([\d.]+)%", result).group(1))
    assert "* total: 320" in result and accuracy > 100 / 64, result  # the 5 validation images of each class
