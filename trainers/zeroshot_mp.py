"""ZeroshotMP: zero-shot CLIP, the baseline every prompt learner is compared with.

The classifier is CLIP's text features of one prompt per class, filled into a template, computed
once when the model is built; nothing is trained, so ``--eval-only`` needs no checkpoint. With
``TRAINER.ZEROSHOT_MP.ENSEMBLE True`` it is the template ensemble of CoOp's ``ZeroshotCLIP2``: per
class, the mean of the normalised text features over several templates, renormalised. Named so that
it can sit beside CoOp's ``ZeroshotCLIP`` in the same registry.
"""
from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from yacs.config import CfgNode as CN

from mutual_prompt.backend import BACKEND, TRAINER_REGISTRY, TrainerX
from mutual_prompt.clip import (
    PromptImageEncoder,
    autocast,
    is_vision_transformer,
    load_frozen_clip,
    resolve_precision,
    tokenize,
)
from mutual_prompt.run.console import detail
from mutual_prompt.run.machine import start_under_dassl
from mutual_prompt.run.config import add_keys_dassl_lacks
from mutual_prompt.run.config_checks import validate_cfg

DEFAULT_TEMPLATE = "a photo of a {}."

# CoOp's hand-made prompt per dataset (trainers/zsclip.py there); other datasets use DEFAULT_TEMPLATE.
DATASET_TEMPLATES = {
    "OxfordPets": "a photo of a {}, a type of pet.",
    "OxfordFlowers": "a photo of a {}, a type of flower.",
    "FGVCAircraft": "a photo of a {}, a type of aircraft.",
    "DescribableTextures": "{} texture.",
    "EuroSAT": "a centered satellite photo of {}.",
    "StanfordCars": "a photo of a {}.",
    "Food101": "a photo of {}, a type of food.",
    "SUN397": "a photo of a {}.",
    "Caltech101": "a photo of a {}.",
    "UCF101": "a photo of a person doing {}.",
    "ImageNet": "a photo of a {}.",
    "ImageNetSketch": "a photo of a {}.",
    "ImageNetV2": "a photo of a {}.",
    "ImageNetA": "a photo of a {}.",
    "ImageNetR": "a photo of a {}.",
}

# CoOp's IMAGENET_TEMPLATES_SELECT (trainers/imagenet_templates.py there): the 7 templates its
# ZeroshotCLIP2 ensembles, with the dataset's own template added for every dataset but ImageNet.
ENSEMBLE_TEMPLATES = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)


def extend_cfg(cfg) -> None:
    """Add ``TRAINER.ZEROSHOT_MP.*`` (and keys real Dassl lacks) to ``cfg``; idempotent."""
    add_keys_dassl_lacks(cfg)
    if "ZEROSHOT_MP" in cfg.TRAINER:
        return
    zs = CN()
    zs.TEMPLATE = ""  # e.g. "a photo of a {}."; "" = CoOp's template for DATASET.NAME
    zs.ENSEMBLE = False  # True: average the class features over ENSEMBLE_TEMPLATES + the template above
    zs.PREC = "fp16"  # fp16 (as CoOp's ZeroshotCLIP; fp32 on the CPU), fp32, amp or bf16
    cfg.TRAINER.ZEROSHOT_MP = zs


def prompt_template(cfg) -> str:
    """TRAINER.ZEROSHOT_MP.TEMPLATE, else CoOp's template for the dataset, else ``DEFAULT_TEMPLATE``."""
    return cfg.TRAINER.ZEROSHOT_MP.TEMPLATE or DATASET_TEMPLATES.get(cfg.DATASET.NAME, DEFAULT_TEMPLATE)


def classifier_templates(cfg) -> List[str]:
    """The templates of the classifier: ``prompt_template(cfg)`` alone, or with ENSEMBLE CoOp's
    ``ENSEMBLE_TEMPLATES`` and then it, as CoOp's ZeroshotCLIP2 does (which adds no template of its own
    for ImageNet, whose 7 were selected on it: unless TEMPLATE is set, nor do we)."""
    own = prompt_template(cfg)
    if not cfg.TRAINER.ZEROSHOT_MP.ENSEMBLE:
        return [own]
    coop_leaves_it_out = cfg.DATASET.NAME == "ImageNet" and not cfg.TRAINER.ZEROSHOT_MP.TEMPLATE
    return list(ENSEMBLE_TEMPLATES) + ([] if coop_leaves_it_out or own in ENSEMBLE_TEMPLATES else [own])


def class_prompts(template: str, classnames: List[str]) -> List[str]:
    return [template.format(name.replace("_", " ")) for name in classnames]


@torch.no_grad()
def class_text_features(clip_model: nn.Module, template_list: Sequence[str], classnames: List[str], precision: str,
                        device) -> torch.Tensor:
    """[C, D]: per template, the L2-normalised text features of its class prompts; their mean over the
    templates, L2-normalised again."""
    features = []
    for template in template_list:
        tokens = tokenize(class_prompts(template, classnames)).to(device)
        with autocast(precision, device):
            features.append(F.normalize(clip_model.encode_text(tokens).float(), dim=-1))
    return F.normalize(torch.stack(features).mean(dim=0), dim=-1)


@TRAINER_REGISTRY.register()
class ZeroshotMP(TrainerX):
    """Zero-shot CLIP; ``model_inference`` returns ``exp(logit_scale) * cos(image, class text)``."""

    def check_cfg(self, cfg) -> None:
        """``validate_cfg`` with this trainer's block; nothing is trained, so OPTIM is not read."""
        validate_cfg(cfg, training=False, trainer="ZeroshotMP")

    def build_data_loader(self) -> None:
        """Under Dassl, first the run's environment block and the worker cap (see ``start_under_dassl``)."""
        start_under_dassl(BACKEND, self.device, self.cfg)
        super().build_data_loader()

    def build_model(self) -> None:
        cfg = self.cfg
        self.precision = resolve_precision(cfg.TRAINER.ZEROSHOT_MP.PREC, self.device, "TRAINER.ZEROSHOT_MP.PREC")
        weights = f", weights: {cfg.MODEL.BACKBONE.PATH}" if cfg.MODEL.BACKBONE.PATH else ""
        print(f"Loading CLIP (backbone: {cfg.MODEL.BACKBONE.NAME}{weights}, precision: {self.precision})")
        clip_model = load_frozen_clip(cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.PATH, self.device,
                                      self.precision, cfg.INPUT.SIZE)

        classnames = self.dm.dataset.classnames
        template_list = classifier_templates(cfg)
        if len(template_list) == 1:
            detail(f"Prompts: {class_prompts(template_list[0], classnames)}")
        else:
            print(f"Prompt ensemble: the mean class text feature over {len(template_list)} templates")
            detail(f"Templates: {template_list}")
        self.text_features = class_text_features(clip_model, template_list, classnames, self.precision, self.device)
        self.clip_model = clip_model
        vit = is_vision_transformer(clip_model.visual)
        self.encode_image = PromptImageEncoder(clip_model.visual) if vit else clip_model.encode_image

    @torch.no_grad()
    def model_inference(self, image: torch.Tensor) -> torch.Tensor:
        with autocast(self.precision, self.device):
            image_features = self.encode_image(image).float()
        image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        return self.clip_model.logit_scale.exp() * image_features @ self.text_features.t()

    def train(self) -> None:
        """Nothing to train: evaluate, as a training run would at its end."""
        print("ZeroshotMP has no parameters to train; evaluating")
        self.test()
