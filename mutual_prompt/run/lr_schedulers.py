"""Per-epoch learning-rate schedules (warm-up, then cosine / single step / multi step) with Dassl's
config keys, used under both hosts.

The warm-up schedules are written for current PyTorch (Dassl 0.6.3's pass ``verbose`` to
``LRScheduler`` and fail), so the real Dassl backend uses these too.
"""
import math
from typing import List

import torch
from torch.optim.lr_scheduler import LRScheduler

SCHEDULERS = ("cosine", "single_step", "multi_step")
WARMUP_TYPES = ("constant", "linear")


class EpochScheduler(LRScheduler):
    """Per-epoch schedule: optional warm-up, then cosine / single step / multi step, as Dassl's.

    The rate of epoch ``e`` is a pure function of ``e`` (closed form), so ``state_dict`` is just the
    epoch counter and a resumed run continues exactly.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, kind: str, max_epoch: int, stepsize, gamma: float,
                 warmup_epoch: int = 0, warmup_type: str = "constant", warmup_cons_lr: float = 1e-5,
                 warmup_min_lr: float = 1e-5, warmup_recount: bool = True, last_epoch: int = -1) -> None:
        self.kind = kind
        self.max_epoch = max_epoch
        self.stepsize = stepsize
        self.gamma = gamma
        self.warmup_epoch = max(warmup_epoch, 0)
        self.warmup_type = warmup_type
        self.warmup_cons_lr = warmup_cons_lr
        self.warmup_min_lr = warmup_min_lr
        self.warmup_recount = warmup_recount
        super().__init__(optimizer, last_epoch)

    def _main_lr(self, base_lr: float, epoch: int) -> float:
        if self.kind == "cosine":
            return base_lr * (1 + math.cos(math.pi * epoch / self.max_epoch)) / 2
        if self.kind == "single_step":
            return base_lr * self.gamma ** (epoch // self.stepsize)
        return base_lr * self.gamma ** sum(1 for m in self.stepsize if epoch >= m)

    def get_lr(self) -> List[float]:
        e = self.last_epoch
        if e < self.warmup_epoch:
            if self.warmup_type == "constant":
                return [self.warmup_cons_lr for _ in self.base_lrs]
            if e == 0:
                return [self.warmup_min_lr for _ in self.base_lrs]
            return [lr * e / self.warmup_epoch for lr in self.base_lrs]
        # Dassl's successor starts counting at the end of warm-up (recount) or at WARMUP_EPOCH.
        main_epoch = e - self.warmup_epoch + (0 if self.warmup_recount else self.warmup_epoch)
        return [self._main_lr(lr, main_epoch) for lr in self.base_lrs]


def build_lr_scheduler(optimizer: torch.optim.Optimizer, optim_cfg) -> EpochScheduler:
    kind = optim_cfg.LR_SCHEDULER
    if kind not in SCHEDULERS:
        raise ValueError(f"OPTIM.LR_SCHEDULER must be one of {SCHEDULERS}, got {kind!r}")
    stepsize = optim_cfg.STEPSIZE
    if kind == "single_step":
        if isinstance(stepsize, (list, tuple)):
            stepsize = stepsize[-1]
        if not isinstance(stepsize, int):
            raise TypeError(f"OPTIM.STEPSIZE must be an integer for single_step, got {stepsize!r}")
        if stepsize <= 0:
            stepsize = optim_cfg.MAX_EPOCH
    elif kind == "multi_step" and not isinstance(stepsize, (list, tuple)):
        raise TypeError(f"OPTIM.STEPSIZE must be a list for multi_step, got {stepsize!r}")
    if optim_cfg.WARMUP_EPOCH > 0 and optim_cfg.WARMUP_TYPE not in WARMUP_TYPES:
        raise ValueError(f"OPTIM.WARMUP_TYPE must be one of {WARMUP_TYPES}, got {optim_cfg.WARMUP_TYPE!r}")
    return EpochScheduler(optimizer, kind, optim_cfg.MAX_EPOCH, stepsize, optim_cfg.GAMMA, optim_cfg.WARMUP_EPOCH,
                          optim_cfg.WARMUP_TYPE, optim_cfg.WARMUP_CONS_LR, optim_cfg.WARMUP_MIN_LR,
                          optim_cfg.WARMUP_RECOUNT)
