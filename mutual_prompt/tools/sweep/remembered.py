"""The options of the last ``run PROTOCOL`` into an output folder, so that ``status PROTOCOL`` with no
options shows that run.

``run`` (not a dry run) writes ``<output>/.sweep/remembered/<protocol>.json`` before it starts any
run: the value of every "what to run" option it was given (by flag, ``--config`` file or environment
variable), its trailing overrides and ablations, and the checkout. The file is written atomically
(a second sweep into the same folder replaces it whole; a reader sees one run's options, never a
mix). ``status`` takes each option from its own flag or ``--config`` file first, then from this
file, then from the environment and the defaults, and names the remembered values it used.
"""
import os
import shlex
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from mutual_prompt.files import read_json, write_json

from .options import OPTIONS, UsageError
from .plan import Ablation
from .state import sweep_dir

# The output folder is the key (status reads the memory of the folder it is given); "how to run"
# (this machine's processes) says nothing about which runs there are.
NOT_REMEMBERED = frozenset({"output", "jobs", "gpus"})
REMEMBERED_DESTS = tuple(o.dest for o in OPTIONS if o.dest not in NOT_REMEMBERED)


def remembered_path(repo_root: str, output_root: str, protocol: str) -> str:
    """``<output>/.sweep/remembered/<protocol>.json`` (``output_root`` relative to ``repo_root`` unless absolute)."""
    return os.path.join(sweep_dir(os.path.join(repo_root, output_root)), "remembered", f"{protocol}.json")


@dataclass
class Remembered:
    """What one ``run`` was given: option values (by dest), overrides, ablations, checkout, when."""

    path: str
    time: str
    repo: str
    options: Dict[str, Any] = field(default_factory=dict)
    opts: Tuple[str, ...] = ()
    ablations: Tuple[Ablation, ...] = ()

    def source(self, dest: str) -> str:
        """How an error names a remembered value: ``--datasets (remembered from the run of <time>, <path>)``."""
        return f"--{dest.replace('_', '-')} (remembered from the run of {self.time}, {self.path})"


def remember(path: str, repo: str, options: Dict[str, Any], opts: Sequence[str], ablations: Sequence[Ablation]) -> None:
    """Write what a run was given into ``path``, atomically."""
    write_json({"time": time.strftime("%Y-%m-%d %H:%M:%S"), "repo": repo,
                "options": {dest: options[dest] for dest in REMEMBERED_DESTS if options.get(dest) is not None},
                "opts": list(opts),
                "ablations": [{"name": a.name, "cfg": a.cfg, "opts": list(a.opts)} for a in ablations]}, path)


def _invalid(path: str, what: str) -> UsageError:
    return UsageError(f"{path}: the remembered options of the last run are unreadable ({what}); delete the file "
                      "or give status the run's options")


def _strings(value: Any, path: str, what: str) -> Tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _invalid(path, f"{what}: expected a list of strings; got {value!r}")
    return tuple(value)


def load(path: str) -> Optional[Remembered]:
    """The remembered run in ``path``; None if there is none; a file that is not one is a UsageError
    naming it. Option values are checked as any option's (``options.convert``) where they are used."""
    if not os.path.exists(path):
        return None
    try:
        data = read_json(path)
    except (OSError, ValueError) as e:
        raise _invalid(path, str(e).replace(path + " ", "")) from None
    if not isinstance(data, dict) or not isinstance(data.get("options"), dict):
        raise _invalid(path, "expected a JSON object with 'options'")
    unknown = sorted(set(data["options"]) - set(REMEMBERED_DESTS))
    if unknown:
        raise _invalid(path, f"unknown option {unknown[0]!r}; expected one of {', '.join(REMEMBERED_DESTS)}")
    ablations = []
    for item in data.get("ablations", []):
        if not (isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get("cfg", ""), str)):
            raise _invalid(path, f"ablations: expected objects with a name, cfg and opts; got {item!r}")
        ablations.append(Ablation(item["name"], cfg=item.get("cfg", ""),
                                  opts=_strings(item.get("opts", []), path, f"ablation {item['name']!r} opts")))
    return Remembered(path, str(data.get("time", "?")), str(data.get("repo", "")), dict(data["options"]),
                      _strings(data.get("opts", []), path, "opts"), tuple(ablations))


def command_line(options: Dict[str, Any], opts: Sequence[str] = (), ablations: Sequence[Ablation] = (),
                 repo: str = "") -> str:
    """The flags that give these values: ``--cfg toy --datasets toy_shapes ... KEY VALUE``."""
    words: List[str] = ["--repo", repo] if repo else []
    for dest in REMEMBERED_DESTS:
        if dest in options:
            value = options[dest]
            words += [f"--{dest.replace('_', '-')}", *(str(v) for v in (value if isinstance(value, list) else [value]))]
    text = shlex.join([*words, *opts])
    for a in ablations:
        what = [f"cfg {a.cfg}"] * bool(a.cfg) + [" ".join(a.opts)] * bool(a.opts)
        text += f", ablation {a.name}: {'; '.join(what)}"
    return text
