"""Config nodes whose merge errors name the key, the file and what was expected, and the config keys
our trainers and datasets read but real Dassl's defaults lack. Used under both hosts."""
from typing import Any, List, Tuple

from yacs.config import CfgNode

YAML_EXTENSIONS = (".yaml", ".yml")

# (path of the parent node, key, default). The built-in defaults (``mutual_prompt.engine.config``)
# hold them already; under real Dassl each trainer's ``extend_cfg`` adds them, as CoOp's train.py does.
KEYS_DASSL_LACKS: Tuple[Tuple[Tuple[str, ...], str, Any], ...] = (
    (("DATASET",), "SUBSAMPLE_CLASSES", "all"),  # all, base or new (CoOp's key)
    (("MODEL", "BACKBONE"), "PATH", ""),  # a local CLIP weights file, see mutual_prompt.clip.loader
)


def add_keys_dassl_lacks(cfg: CfgNode) -> None:
    """Add each of ``KEYS_DASSL_LACKS`` missing from ``cfg`` with its default; keys already present
    keep their values."""
    for parents, key, default in KEYS_DASSL_LACKS:
        node = cfg
        for name in parents:
            node = node[name]
        if key not in node:
            node[key] = default


class Config(CfgNode):
    """A yacs ``CfgNode`` whose merge errors say which key, which file and what was expected."""

    def merge_from_file(self, cfg_filename: str) -> None:
        """Merge a YAML file. yacs would also import and run a ``.py`` config: that is refused."""
        if not str(cfg_filename).lower().endswith(YAML_EXTENSIONS):
            raise ValueError(
                f"{cfg_filename}: only YAML config files (.yaml or .yml) are accepted; a Python config file would "
                "be executed by yacs when loaded"
            )
        try:
            super().merge_from_file(cfg_filename)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"Config file not found: {cfg_filename}") from e
        except (KeyError, ValueError, AssertionError) as e:
            error = KeyError if _is_unknown_key(e) else type(e)
            raise error(f"{cfg_filename}: {_reason(e)}") from e

    def merge_from_other_cfg(self, cfg_other: CfgNode) -> None:
        if not self.is_frozen():
            _make_nodes_config(self)
        super().merge_from_other_cfg(cfg_other)

    def merge_from_list(self, cfg_list: List[str]) -> None:
        if len(cfg_list) % 2 != 0:
            raise ValueError(
                f"Command-line overrides must be KEY VALUE pairs; got an odd number of items: {cfg_list}"
            )
        try:
            super().merge_from_list(cfg_list)
        except (KeyError, ValueError, AssertionError) as e:
            error = KeyError if _is_unknown_key(e) else type(e)
            raise error(f"command-line overrides: {_reason(e)}") from e


def _make_nodes_config(node: CfgNode) -> None:
    """Turn plain yacs sub-nodes into ``Config`` in place.

    yacs decodes a file's node as its parent's class and merges it only into a node of exactly that
    class, so a block that a trainer's ``extend_cfg`` added as a plain ``CfgNode`` (CoOp's style)
    could not be set from a config file.
    """
    for key, value in node.items():
        if isinstance(value, CfgNode):
            if not isinstance(value, Config):
                converted = Config(new_allowed=value.is_new_allowed())
                converted.update(value)
                node[key] = value = converted
            _make_nodes_config(value)


_UNKNOWN_KEY_PREFIXES = ("Non-existent config key", "Non-existent key")


def _message(e: Exception) -> str:
    return str(e.args[0]) if e.args else str(e)


def _is_unknown_key(e: Exception) -> bool:
    """yacs reports an unknown key as a KeyError from a file and an AssertionError from a list."""
    return _message(e).startswith(_UNKNOWN_KEY_PREFIXES)


def _reason(e: Exception) -> str:
    msg = _message(e)
    if _is_unknown_key(e):
        key = msg.split(":", 1)[1].strip()
        return f"unknown config key '{key}' (check its spelling, or that the trainer's extend_cfg added it)"
    return str(msg)
