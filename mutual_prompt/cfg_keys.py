"""Config keys that our trainers and datasets read but real Dassl's defaults lack.

The built-in defaults (``mutual_prompt.engine.config``) already hold them; under real Dassl each
trainer's ``extend_cfg`` adds them through ``ensure_common_keys``, as CoOp's train.py does.
"""
from typing import Any, Tuple

# (path of the parent node, key, default)
COMMON_KEYS: Tuple[Tuple[Tuple[str, ...], str, Any], ...] = (
    (("DATASET",), "SUBSAMPLE_CLASSES", "all"),  # all, base or new (CoOp's key)
    (("MODEL", "BACKBONE"), "PATH", ""),  # a local CLIP weights file, see mutual_prompt.model.clip_loader
)


def ensure_common_keys(cfg) -> None:
    """Add each missing key with its default; keys already present keep their values."""
    for parents, key, default in COMMON_KEYS:
        node = cfg
        for name in parents:
            node = node[name]
        if key not in node:
            node[key] = default
