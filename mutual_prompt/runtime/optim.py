"""Optimizers with Dassl's config keys (the learning-rate schedules are in ``mutual_prompt.run.lr_schedulers``)."""
from typing import Iterable, List, Optional, Union

import torch
import torch.nn as nn

OPTIMIZERS = ("sgd", "adam", "amsgrad", "adamw", "rmsprop", "radam")


def build_optimizer(model: Union[nn.Module, Iterable], optim_cfg, param_groups: Optional[List[dict]] = None) -> torch.optim.Optimizer:
    """``OPTIM.NAME``'s optimizer over ``param_groups``, else the trainable parameters of ``model`` (a
    module, or the parameters themselves), as Dassl's ``build_optimizer``."""
    name = optim_cfg.NAME
    if name not in OPTIMIZERS:
        raise ValueError(f"OPTIM.NAME must be one of {OPTIMIZERS}, got {name!r}")
    lr, wd = optim_cfg.LR, optim_cfg.WEIGHT_DECAY
    if param_groups is not None:
        params = param_groups
    elif isinstance(model, nn.Module):
        params = [p for p in model.parameters() if p.requires_grad]
    else:
        params = list(model)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=optim_cfg.MOMENTUM, weight_decay=wd,
                               dampening=optim_cfg.SGD_DAMPNING, nesterov=optim_cfg.SGD_NESTEROV)
    betas = (optim_cfg.ADAM_BETA1, optim_cfg.ADAM_BETA2)
    if name in ("adam", "amsgrad"):
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, betas=betas, amsgrad=name == "amsgrad")
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd, betas=betas)
    if name == "radam":
        return torch.optim.RAdam(params, lr=lr, weight_decay=wd, betas=betas)
    return torch.optim.RMSprop(params, lr=lr, momentum=optim_cfg.MOMENTUM, weight_decay=wd, alpha=optim_cfg.RMSPROP_ALPHA)
