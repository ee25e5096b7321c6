"""Trainers with Dassl's interface: ``TrainerBase`` (models, checkpoints, loop), ``SimpleTrainer``
(data, evaluation, resume) and ``TrainerX`` (the labelled-data epoch loop with Dassl's printed line)."""
import datetime
import os
import time
from collections import OrderedDict, defaultdict
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from ..run.checkpoints import (BEST_MODEL_FILE, best_val_so_far, load_trained_models, resume_models, rng_state,
                               save_checkpoint, unwrapped)
from ..run.machine import run_header
from .config import check_supported
from .data.data_manager import DataManager
from .distributed import barrier, init_distributed, is_distributed, is_main_process
from .evaluation import build_evaluator
from .registry import Registry

TRAINER_REGISTRY = Registry("TRAINER")


class AverageMeter:
    def __init__(self) -> None:
        self.val = self.avg = self.sum = 0.0
        self.count = 0

    def update(self, val: float, n: int = 1) -> None:
        self.val = val
        self.sum += val * n
        self.count += n
        self.avg = self.sum / self.count


class MetricMeter:
    """Running averages of the losses a trainer reports, printed as ``name val (avg)``."""

    def __init__(self, delimiter: str = " ") -> None:
        self.meters: Dict[str, AverageMeter] = defaultdict(AverageMeter)
        self.delimiter = delimiter

    def update(self, input_dict: Optional[Dict[str, float]]) -> None:
        for k, v in (input_dict or {}).items():
            self.meters[k].update(v.item() if isinstance(v, torch.Tensor) else float(v))

    def __str__(self) -> str:
        return self.delimiter.join(f"{k} {m.val:.4f} ({m.avg:.4f})" for k, m in self.meters.items())


class TrainerBase:
    """Registered models with their optimizers and schedulers, checkpoints, and the epoch loop."""

    def __init__(self) -> None:
        self._models: "OrderedDict[str, nn.Module]" = OrderedDict()
        self._optims: "OrderedDict[str, Optional[torch.optim.Optimizer]]" = OrderedDict()
        self._scheds: "OrderedDict[str, object]" = OrderedDict()
        self._writer = None

    def register_model(self, name: str = "model", model: Optional[nn.Module] = None, optim=None, sched=None) -> None:
        if self.__dict__.get("_models") is None:
            raise AttributeError("Cannot assign model before super().__init__() call")
        if name in self._models:
            raise KeyError(f"A model named {name!r} is already registered")
        if model is None:
            raise ValueError(f"register_model({name!r}) needs a model")
        self._models[name] = model
        self._optims[name] = optim
        self._scheds[name] = sched

    def get_model_names(self, names=None) -> List[str]:
        names_real = list(self._models.keys())
        if names is None:
            return names_real
        names = [names] if isinstance(names, str) else list(names)
        for name in names:
            if name not in names_real:
                raise KeyError(f"No model named {name!r}; registered: {names_real}")
        return names

    def save_model(self, epoch: int, directory: str, is_best: bool = False, val_result=None, model_name: str = "") -> None:
        if not is_main_process():
            return
        for name in self.get_model_names():
            model = unwrapped(self._models[name])
            optim, sched = self._optims[name], self._scheds[name]
            save_checkpoint(
                {
                    "state_dict": model.state_dict(),
                    "epoch": epoch + 1,
                    "optimizer": optim.state_dict() if optim is not None else None,
                    "scheduler": sched.state_dict() if sched is not None else None,
                    "val_result": val_result,
                    "rng_state": rng_state(),
                    **self.resume_state(),
                },
                os.path.join(directory, name),
                is_best=is_best,
                model_name=model_name,
            )

    def resume_state(self) -> Dict[str, object]:
        """Entries beside the weights that a resumed run needs to continue as if uninterrupted."""
        return {}

    def resume_model_if_exist(self, directory: str) -> int:
        return resume_models(directory, self._models, self._optims, self._scheds)

    def load_model(self, directory: str, epoch: Optional[int] = None) -> None:
        """Load ``<directory>/<name>/model.pth.tar-<epoch>`` (``model-best.pth.tar`` without an epoch)
        into each registered model, strictly. No directory is an error when a registered model has
        learnable parameters (evaluating it would report untrained weights)."""
        if not directory:
            learnable = [n for n in self.get_model_names() if any(p.requires_grad for p in self._models[n].parameters())]
            if learnable:
                raise ValueError(
                    f"load_model() was given no directory (--eval-only without --model-dir), but "
                    f"{type(self).__name__} has learnable parameters ({', '.join(learnable)}): the result would be "
                    "that of untrained weights. Pass --model-dir <the --output-dir of the training run> "
                    "[--load-epoch N], or --no-load to evaluate the untrained weights on purpose."
                )
            print("Note that load_model() is skipped as no pretrained model is given")
            return
        load_trained_models(self._models, directory, epoch)

    def set_model_mode(self, mode: str = "train", names=None) -> None:
        for name in self.get_model_names(names):
            self._models[name].train(mode == "train")

    def update_lr(self, names=None) -> None:
        for name in self.get_model_names(names):
            if self._scheds[name] is not None:
                self._scheds[name].step()

    def detect_anomaly(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss).all():
            raise FloatingPointError(f"Loss is infinite or NaN ({self._progress()})")

    def _progress(self) -> str:
        """``epoch [e/E] batch [b/B]``, 1-based as the progress lines; the parts not yet known are left out."""
        parts = []
        if hasattr(self, "epoch"):
            parts.append(f"epoch [{self.epoch + 1}/{getattr(self, 'max_epoch', '?')}]")
        if hasattr(self, "batch_idx"):
            parts.append(f"batch [{self.batch_idx + 1}/{getattr(self, 'num_batches', '?')}]")
        return " ".join(parts) or "before the first batch"

    def init_writer(self, log_dir: str) -> None:
        if self._writer is None and is_main_process():
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                return
            self._writer = SummaryWriter(log_dir=log_dir)

    def close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def write_scalar(self, tag: str, scalar_value: float, global_step: Optional[int] = None) -> None:
        if self._writer is not None:
            self._writer.add_scalar(tag, scalar_value, global_step)

    def train(self, start_epoch: int, max_epoch: int) -> None:
        self.start_epoch = start_epoch
        self.max_epoch = max_epoch
        self.before_train()
        for self.epoch in range(self.start_epoch, self.max_epoch):
            self.before_epoch()
            self.run_epoch()
            self.after_epoch()
        self.after_train()

    def before_train(self) -> None:
        pass

    def after_train(self) -> None:
        pass

    def before_epoch(self) -> None:
        pass

    def after_epoch(self) -> None:
        pass

    def run_epoch(self) -> None:
        raise NotImplementedError

    def test(self):
        raise NotImplementedError

    def parse_batch_train(self, batch):
        raise NotImplementedError

    def parse_batch_test(self, batch):
        raise NotImplementedError

    def forward_backward(self, batch):
        raise NotImplementedError

    def model_inference(self, input):
        raise NotImplementedError

    def model_zero_grad(self, names=None) -> None:
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].zero_grad()

    def model_backward(self, loss: torch.Tensor) -> None:
        self.detect_anomaly(loss)
        loss.backward()
        self.sync_gradients()

    def sync_gradients(self, names=None) -> None:
        """Data-parallel training under torchrun: average the gradients of the registered models over
        ranks (what DistributedDataParallel does), whichever module the forward pass went through."""
        if not is_distributed():
            return
        world = torch.distributed.get_world_size()
        for name in self.get_model_names(names):
            for p in self._models[name].parameters():
                if p.requires_grad:
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                    torch.distributed.all_reduce(p.grad)
                    p.grad.div_(world)

    def model_update(self, names=None) -> None:
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].step()

    def model_backward_and_update(self, loss: torch.Tensor, names=None) -> None:
        self.model_zero_grad(names)
        self.model_backward(loss)
        self.model_update(names)


class SimpleTrainer(TrainerBase):
    """Data, model, evaluator, resume, and evaluation after training."""

    def __init__(self, cfg) -> None:
        super().__init__()
        self.check_cfg(cfg)
        check_supported(cfg)
        self.device = init_distributed(cfg.USE_CUDA)
        print(run_header("builtin", self.device))
        self.start_epoch = self.epoch = 0
        self.max_epoch = cfg.OPTIM.MAX_EPOCH
        self.output_dir = cfg.OUTPUT_DIR
        self.cfg = cfg
        self.build_data_loader()
        self.build_model()
        self.evaluator = build_evaluator(cfg, lab2cname=self.lab2cname)
        self.best_result = -np.inf
        self.best_epoch: Optional[int] = None

    def check_cfg(self, cfg) -> None:
        pass

    def build_data_loader(self) -> None:
        dm = DataManager(self.cfg)
        self.train_loader_x = dm.train_loader_x
        self.val_loader = dm.val_loader
        self.test_loader = dm.test_loader
        self.num_classes = dm.num_classes
        self.num_source_domains = dm.num_source_domains
        self.lab2cname = dm.lab2cname
        self.dm = dm

    def build_model(self) -> None:
        raise NotImplementedError

    def resume_state(self) -> Dict[str, object]:
        return {"best_result": float(self.best_result), "best_epoch": self.best_epoch}

    def resume_model_if_exist(self, directory: str) -> int:
        """Resume the weights, optimizers and schedulers, and the best validation result so far."""
        start_epoch = super().resume_model_if_exist(directory)
        if start_epoch > 0:
            self.best_result, self.best_epoch = best_val_so_far(directory, self.get_model_names())
            if self.best_epoch is not None:
                print(f"Best val result so far: {self.best_result} (epoch {self.best_epoch})")
        return start_epoch

    def train(self) -> None:
        super().train(self.start_epoch, self.max_epoch)

    def before_train(self) -> None:
        directory = self.cfg.RESUME or self.output_dir
        self.start_epoch = self.resume_model_if_exist(directory)
        self.init_writer(os.path.join(self.output_dir, "tensorboard"))
        self.time_start = time.time()

    def after_train(self) -> None:
        print("Finish training")
        if not self.cfg.TEST.NO_TEST:
            if self.cfg.TEST.FINAL_MODEL == "best_val":
                print("Deploy the model with the best val performance")
                self.load_model(self.output_dir)
            else:
                print("Deploy the last-epoch model")
            self.test()
        elapsed = str(datetime.timedelta(seconds=round(time.time() - self.time_start)))
        print(f"Elapsed: {elapsed}")
        self.close_writer()
        barrier()

    def after_epoch(self) -> None:
        last_epoch = (self.epoch + 1) == self.max_epoch
        do_test = not self.cfg.TEST.NO_TEST
        freq = self.cfg.TRAIN.CHECKPOINT_FREQ
        meet_checkpoint_freq = (self.epoch + 1) % freq == 0 if freq > 0 else False
        if do_test and self.cfg.TEST.FINAL_MODEL == "best_val":
            curr_result = self.test(split="val")
            is_best = curr_result > self.best_result
            if is_best:
                self.best_result = curr_result
                self.best_epoch = self.epoch + 1
                self.save_model(self.epoch, self.output_dir, val_result=curr_result, model_name=BEST_MODEL_FILE)
        if meet_checkpoint_freq or last_epoch:
            self.save_model(self.epoch, self.output_dir)
        barrier()

    @torch.no_grad()
    def test(self, split: Optional[str] = None) -> float:
        """Evaluate on ``split`` (TEST.SPLIT by default) and return the first metric (accuracy)."""
        self.set_model_mode("eval")
        self.evaluator.reset()
        split = split or self.cfg.TEST.SPLIT
        if split == "val" and self.val_loader is not None:
            data_loader = self.val_loader
        else:
            split = "test"
            data_loader = self.test_loader
        print(f"Evaluate on the *{split}* set")
        for batch in tqdm(data_loader, disable=not is_main_process()):
            inputs, label = self.parse_batch_test(batch)
            self.evaluator.process(self.model_inference(inputs), label)
        results = self.evaluator.evaluate()
        for k, v in results.items():
            if isinstance(v, float):
                self.write_scalar(f"{split}/{k}", v, self.epoch)
        return list(results.values())[0]

    def model_inference(self, input):
        return self.model(input)

    def parse_batch_test(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def get_current_lr(self, names=None) -> float:
        name = self.get_model_names(names)[0]
        return self._optims[name].param_groups[0]["lr"]


class TrainerX(SimpleTrainer):
    """Epochs over the labelled loader ``train_loader_x``; subclasses write ``forward_backward``."""

    def before_epoch(self) -> None:
        sampler = getattr(self.train_loader_x, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.epoch)

    def run_epoch(self) -> None:
        self.set_model_mode("train")
        losses = MetricMeter()
        batch_time, data_time = AverageMeter(), AverageMeter()
        self.num_batches = len(self.train_loader_x)
        print_freq = self.cfg.TRAIN.PRINT_FREQ
        end = time.time()
        for self.batch_idx, batch in enumerate(self.train_loader_x):
            data_time.update(time.time() - end)
            loss_summary = self.forward_backward(batch)
            batch_time.update(time.time() - end)
            losses.update(loss_summary)
            meet_freq = (self.batch_idx + 1) % print_freq == 0
            only_few_batches = self.num_batches < print_freq
            if (meet_freq or only_few_batches) and is_main_process():
                nb_remain = (self.num_batches - self.batch_idx - 1) + (self.max_epoch - self.epoch - 1) * self.num_batches
                eta = str(datetime.timedelta(seconds=int(batch_time.avg * nb_remain)))
                print(
                    f"epoch [{self.epoch + 1}/{self.max_epoch}] "
                    f"batch [{self.batch_idx + 1}/{self.num_batches}] "
                    f"time {batch_time.val:.3f} ({batch_time.avg:.3f}) "
                    f"data {data_time.val:.3f} ({data_time.avg:.3f}) "
                    f"{losses} "
                    f"lr {self.get_current_lr():.4e} "
                    f"eta {eta}"
                )
            n_iter = self.epoch * self.num_batches + self.batch_idx
            for name, meter in losses.meters.items():
                self.write_scalar("train/" + name, meter.avg, n_iter)
            self.write_scalar("train/lr", self.get_current_lr(), n_iter)
            end = time.time()

    def parse_batch_train(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)


def build_trainer(cfg) -> SimpleTrainer:
    if cfg.VERBOSE:
        print(f"Loading trainer: {cfg.TRAINER.NAME}")
    return TRAINER_REGISTRY.get(cfg.TRAINER.NAME)(cfg)
