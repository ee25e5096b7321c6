"""A task small enough to train in seconds with the built-in runtime, registered on import:
``TrainerTestSet`` (three classes of flat-coloured noise images, generated under DATASET.ROOT),
``TinyLinear`` (a linear classifier on mean colours), ``make_cfg`` for them and ``run`` to train one."""
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from helpers.image_tree import make_datums, make_images
from mutual_prompt.run.lr_schedulers import build_lr_scheduler
from mutual_prompt.runtime import (
    DATASET_REGISTRY,
    TRAINER_REGISTRY,
    DatasetBase,
    TrainerX,
    build_optimizer,
    build_trainer,
    compute_accuracy,
    get_cfg_default,
    set_random_seed,
)

CLASSES = {"alpha": 6, "beta": 6, "gamma": 6}


def trainer_test_images(cfg) -> list:
    """The sorted paths of three classes of flat-coloured noise images, generated under DATASET.ROOT."""
    root = os.path.join(cfg.DATASET.ROOT, "trainer_test_set")
    if not os.path.isdir(root):
        make_images(root, CLASSES, size=(16, 16), seed=3)
    return sorted(os.path.join(root, c, f) for c in CLASSES for f in os.listdir(os.path.join(root, c)))


@DATASET_REGISTRY.register()
class TrainerTestSet(DatasetBase):
    """Three classes of flat-coloured noise images, generated under DATASET.ROOT."""

    def __init__(self, cfg):
        items = make_datums(trainer_test_images(cfg), classnames=list(CLASSES))
        super().__init__(train_x=items, val=items[::2], test=items)


@TRAINER_REGISTRY.register()
class TinyLinear(TrainerX):
    """A linear classifier on mean colours: enough to learn the test set in a few epochs."""

    def build_model(self):
        torch.manual_seed(0)
        self.model = nn.Linear(3, self.num_classes)
        self.optim = build_optimizer(self.model, self.cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, self.cfg.OPTIM)
        self.register_model("linear", self.model, self.optim, self.sched)

    def features(self, img):
        return img.mean(dim=(2, 3))

    def forward_backward(self, batch):
        img, label = self.parse_batch_train(batch)
        out = self.model(self.features(img))
        loss = F.cross_entropy(out, label)
        self.model_backward_and_update(loss)
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return {"loss": loss.item(), "acc": compute_accuracy(out, label)[0].item()}

    def model_inference(self, img):
        return self.model(self.features(img))


def make_cfg(root, out, epochs=3, **opts):
    """TinyLinear on TrainerTestSet under ``root``, writing to ``out``; ``opts`` set dotted keys."""
    cfg = get_cfg_default()
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NAME = "TrainerTestSet"
    cfg.TRAINER.NAME = "TinyLinear"
    cfg.OUTPUT_DIR = str(out)
    cfg.SEED = 1
    cfg.USE_CUDA = False
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 4
    cfg.INPUT.SIZE = (16, 16)
    cfg.INPUT.TRANSFORMS = ("random_flip", "normalize")
    cfg.OPTIM.NAME = "sgd"
    cfg.OPTIM.LR = 0.5
    cfg.OPTIM.MAX_EPOCH = epochs
    cfg.OPTIM.LR_SCHEDULER = "cosine"
    cfg.TRAIN.PRINT_FREQ = 2
    for k, v in opts.items():
        node = cfg
        *path, last = k.split(".")
        for p in path:
            node = node[p]
        node[last] = v
    return cfg


def run(cfg):
    """Seed as train.py does, build the trainer of ``cfg`` and train it."""
    set_random_seed(cfg.SEED)
    trainer = build_trainer(cfg)
    trainer.train()
    return trainer
