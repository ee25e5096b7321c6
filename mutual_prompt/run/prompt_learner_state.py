"""What a ``prompt_learner`` state dict says about the config that wrote it, to name the config keys
that differ when a checkpoint does not load."""
from typing import Any, Dict, Mapping

import torch

MP = "TRAINER.MUTUAL_PROMPT."
COOP_ONLY_KEYS = ("token_prefix", "token_suffix")


def describe_prompt_learner(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, Any]:
    """The settings a state dict's keys and shapes imply, by the config key that decides each."""
    described: Dict[str, Any] = {}
    ctx = state_dict.get("ctx")
    if ctx is not None and ctx.dim() == 2:
        described[MP + "N_CTX / CTX_INIT (context tokens)"] = ctx.shape[0]
        described["MODEL.BACKBONE.NAME (text width)"] = ctx.shape[1]
    linear2 = state_dict.get("ftp.meta_net.linear2.weight")
    if linear2 is None:
        described[MP + "FTP.MODE"] = "none"
    elif ctx is not None and linear2.shape[0] == ctx.shape[-1]:
        described[MP + "FTP.MODE"] = "shared"
    elif ctx is not None and linear2.shape[0] == ctx.numel():
        described[MP + "FTP.MODE"] = "fine"
    tokens = state_dict.get("tvp.base_tokens")
    described[MP + "TVP.ENABLED"] = tokens is not None
    if tokens is not None and tokens.dim() == 3:
        described[MP + "TVP.DEPTH"] = tokens.shape[0]
        described[MP + "TVP.N_TOKENS"] = tokens.shape[1]
        described["MODEL.BACKBONE.NAME (image width)"] = tokens.shape[2]
    return described


def config_difference_hint(checkpoint_state: Mapping[str, torch.Tensor], model_state: Mapping[str, torch.Tensor]) -> str:
    """The config keys that probably differ between the run that wrote ``checkpoint_state`` and the
    model built now, one line each; a CoOp/CoCoOp checkpoint is named as such."""
    if any(k.startswith("meta_net.") or k in COOP_ONLY_KEYS for k in checkpoint_state):
        return ("This is a CoOp/CoCoOp checkpoint (meta_net.*, token_prefix, token_suffix): convert it with "
                "`python -m mutual_prompt.convert from-coop` and evaluate it with FTP.MODE shared (CoCoOp) or none "
                "(CoOp) and TVP.ENABLED False.")
    saved, built = describe_prompt_learner(checkpoint_state), describe_prompt_learner(model_state)
    lines = [f"  {key}: checkpoint {saved.get(key, '?')}, config {built.get(key, '?')}"
             for key in dict.fromkeys([*built, *saved]) if saved.get(key) != built.get(key)]
    if not lines:
        return ""
    return "Config keys that probably differ from the run that wrote the checkpoint:\n" + "\n".join(lines)
