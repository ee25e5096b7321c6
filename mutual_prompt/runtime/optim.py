"""Optimizers with Dassl's config keys (the learning-rate schedules are in ``mutual_prompt.run.lr_schedulers``)."""
from typing import Iterable, List, Optional, Union

import torch
import torch.nn as nn

OPTIMIZERS = ("sgd", "adam", "amsgrad", "adamw", "rmsprop", "radam")


def build_optimizer(model: Union[nn.Module, Iterable], optim_cfg, param_groups: Optional[List[dict]] = None) -> torch.optim.Optimizer:
    name = optim_cfg.NAME
    if name not in OPTIMIZERS:
        raise ValueError(f"OPTIM.NAME must be one of {OPTIMIZERS}, got {name!r}")
    lr, wd = optim_cfg.LR, optim_cfg.WEIGHT_DECAY
    if param_groups is not None:
        params = param_groups
    elif isinstance(model, nn.Module):
        if optim_cfg.STAGED_LR:
            new_layers = optim_cfg.NEW_LAYERS
            if isinstance(new_layers, str):
                new_layers = [new_layers]
            if not new_layers:
                raise ValueError("OPTIM.STAGED_LR is True but OPTIM.NEW_LAYERS is empty")
            base, new = [], []
            for layer_name, module in model.named_children():
                (new if layer_name in new_layers else base).extend(p for p in module.parameters() if p.requires_grad)
            params = [{"params": base, "lr": lr * optim_cfg.BASE_LR_MULT}, {"params": new}]
        else:
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
