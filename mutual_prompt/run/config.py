"""Config nodes whose merge errors name the key, the file and what was expected, and the config keys
our trainers and datasets read but real Dassl's defaults lack. Used under both hosts."""
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml
from yacs.config import CfgNode

YAML_EXTENSIONS = (".yaml", ".yml")

# (path of the parent node, key, default): the one default of each. The built-in defaults
# (``mutual_prompt.runtime.config``) add them; under real Dassl each trainer's ``extend_cfg`` adds them,
# as CoOp's train.py does.
KEYS_DASSL_LACKS: Tuple[Tuple[Tuple[str, ...], str, Any], ...] = (
    # CoOp's key: "all", "base" (first half of the labels) or "new" (the rest, relabelled from 0).
    (("DATASET",), "SUBSAMPLE_CLASSES", "all"),
    # A local CLIP weights file (OpenAI JIT archive or state dict), see mutual_prompt.clip.loader;
    # it overrides the download by NAME.
    (("MODEL", "BACKBONE"), "PATH", ""),
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
    """A yacs ``CfgNode`` whose merge errors say which key, which file and what was expected, and why
    for a key the tree leaves out on purpose (``leave_out``)."""

    def leave_out(self, keys: Sequence[str], why: str) -> None:
        """Name dotted ``keys`` (a node's key stands for every key under it) that this tree leaves out on
        purpose: merging one into it is an error that gives ``why`` instead of calling the key unknown."""
        self.__dict__.setdefault(_LEFT_OUT, {}).update(dict.fromkeys(keys, why))

    def merge_from_file(self, cfg_filename: str) -> None:
        """Merge a YAML file. yacs would also import and run a ``.py`` config: that is refused."""
        if not str(cfg_filename).lower().endswith(YAML_EXTENSIONS):
            raise ValueError(
                f"{cfg_filename}: only YAML config files (.yaml or .yml) are accepted; a Python config file would "
                "be executed by yacs when loaded"
            )
        values = read_yaml_config(cfg_filename)
        try:
            self.merge_from_other_cfg(type(self)(values))
        except (KeyError, ValueError, AssertionError) as e:
            error = KeyError if _is_unknown_key(e) else type(e)
            raise error(f"{cfg_filename}: {self._reason(e)}") from e

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
            raise error(f"command-line overrides: {self._reason(e)}") from e

    def _reason(self, e: Exception) -> str:
        msg = _message(e)
        if not _is_unknown_key(e):
            return msg
        key = msg.split(":", 1)[1].strip()
        left_out = self.__dict__.get(_LEFT_OUT, {})
        why = next((left_out[k] for k in left_out if key == k or key.startswith(k + ".")), None)
        if why is not None:
            return f"config key '{key}' is {why}"
        return f"unknown config key '{key}' (check its spelling, or that the trainer's extend_cfg added it)"


def read_yaml_config(path: str) -> Optional[Dict[str, Any]]:
    """The mapping of config keys in the YAML file ``path`` (None for an empty file), read with
    ``yaml.safe_load`` as yacs does; every error names the file, and the line where YAML reports one."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError as e:
        raise FileNotFoundError(f"Config file not found: {path}") from e
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start}); config files are YAML") from e
    except OSError as e:
        raise ValueError(f"{path}: cannot read the config file ({e.strerror or e})") from e
    hint = PYTHON_HINT if _looks_like_python(text) else ""
    try:
        values = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        raise ValueError(f"{_yaml_error_place(path, e, text)}: {_yaml_problem(e)}{hint}") from e
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({' '.join(str(e).split())}){hint}") from e
    if values is not None and not isinstance(values, dict):
        raise ValueError(f"{path}: expected a YAML mapping of config keys (KEY: value lines), got a "
                         f"{type(values).__name__}{hint}")
    return values


PYTHON_HINT = "; the file looks like Python source, but config files are YAML (yacs' Python configs are refused)"
_PYTHON_LINE = re.compile(r"^\s*(import \w|from [\w.]+ import |def \w+\(|class \w+[(:])", re.MULTILINE)
_YAML_TAG = re.compile(r"tag '([^']*)'")


def _looks_like_python(text: str) -> bool:
    return _PYTHON_LINE.search(text) is not None


def _yaml_error_place(path: str, error: "yaml.MarkedYAMLError", text: str) -> str:
    """``path, line L, column C`` of the error, with the line's text."""
    mark = error.problem_mark or error.context_mark
    if mark is None:
        return path
    lines = text.splitlines()
    line = lines[mark.line].strip() if mark.line < len(lines) else ""
    shown = f" ({line[:80]!r})" if line else ""
    return f"{path}, line {mark.line + 1}, column {mark.column + 1}{shown}"


def _yaml_problem(error: "yaml.MarkedYAMLError") -> str:
    problem = error.problem or error.context or "not valid YAML"
    tag = _YAML_TAG.search(problem) if isinstance(error, yaml.constructor.ConstructorError) else None
    if tag:
        name = tag.group(1).replace("tag:yaml.org,2002:", "!!")
        return (f"the YAML tag {name} is not allowed: config files hold plain values (numbers, strings, lists, "
                "mappings), read with yaml.safe_load, which creates no Python objects")
    context = ""
    if error.context and error.problem:
        mark = error.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        context = f" ({error.context}{at})"
    return f"not valid YAML: {problem}{context}"


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
_LEFT_OUT = "LEFT_OUT_KEYS"


def _message(e: Exception) -> str:
    return str(e.args[0]) if e.args else str(e)


def _is_unknown_key(e: Exception) -> bool:
    """yacs reports an unknown key as a KeyError from a file and an AssertionError from a list."""
    return _message(e).startswith(_UNKNOWN_KEY_PREFIXES)

