"""The layout's import rule: the built-in engine only stands in for Dassl, so nothing outside
``mutual_prompt/engine/`` and ``mutual_prompt/backend.py`` imports it (tests are exempt: the engine's
own tests import it), and ``mutual_prompt.backend`` exports only the names that differ by host."""
import ast
import os
import subprocess
import sys
from typing import Iterator, List

import pytest

from test_dassl_backend import needs_dassl

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENGINE = "mutual_prompt.engine"
# Where code that may run under real Dassl lives; the rule holds for every Python file below these.
SCANNED = ("mutual_prompt", "trainers", "datasets", "train.py", "parse_test_res.py", "benchmarks")
ALLOWED = (os.path.join("mutual_prompt", "engine") + os.sep, os.path.join("mutual_prompt", "backend.py"))

HOST_DEPENDENT_NAMES = [
    "BACKEND",
    "TRAINER_REGISTRY",
    "TrainerX",
    "build_trainer",
    "DATASET_REGISTRY",
    "DatasetBase",
    "Datum",
    "get_cfg_default",
    "build_optimizer",
    "compute_accuracy",
    "load_pretrained_weights",
    "setup_logger",
    "set_random_seed",
    "collect_env_info",
]


def python_files() -> Iterator[str]:
    """Paths relative to the repository root of the scanned files outside the allowed places."""
    for entry in SCANNED:
        path = os.path.join(REPO_ROOT, entry)
        if os.path.isfile(path):
            found = [path]
        else:
            found = [os.path.join(d, f) for d, _, files in os.walk(path) for f in files if f.endswith(".py")]
        for file in sorted(found):
            rel = os.path.relpath(file, REPO_ROOT)
            if not rel.startswith(ALLOWED[0]) and rel != ALLOWED[1]:
                yield rel


def package_of(rel_path: str) -> str:
    """The dotted package a module at ``rel_path`` (relative to the repository root) belongs to."""
    return ".".join(os.path.dirname(rel_path).split(os.sep)) if os.path.dirname(rel_path) else ""


def engine_imports(source: str, rel_path: str) -> List[str]:
    """``line: statement`` of each import of ``mutual_prompt.engine`` (or a module in it) in ``source``,
    absolute or relative, ``import``, ``from ... import`` or ``from mutual_prompt import engine``."""
    found = []
    for node in ast.walk(ast.parse(source, filename=rel_path)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package_of(rel_path).split(".") if package_of(rel_path) else []
                base = parts[: len(parts) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            modules = [module] + [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        if any(m == ENGINE or m.startswith(ENGINE + ".") for m in modules):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_nothing_outside_the_engine_and_the_backend_imports_the_engine():
    files = list(python_files())
    assert os.path.join("trainers", "mutual_prompt.py") in files and "train.py" in files
    offenders = []
    for rel in files:
        with open(os.path.join(REPO_ROOT, rel), encoding="utf-8") as f:
            offenders += [f"{rel}:{hit}" for hit in engine_imports(f.read(), rel)]
    assert offenders == [], "import mutual_prompt.backend (or a host-independent module) instead:\n" + "\n".join(offenders)


@pytest.mark.parametrize("path, source", [
    ("datasets/dtd.py", "import mutual_prompt.engine"),
    ("datasets/dtd.py", "import mutual_prompt.engine.utils as u"),
    ("datasets/dtd.py", "from mutual_prompt.engine.utils import read_image"),
    ("datasets/dtd.py", "from mutual_prompt import engine"),
    ("datasets/dtd.py", "from mutual_prompt import files, engine"),
    ("mutual_prompt/splits/listing.py", "from ...mutual_prompt import engine"),
    ("mutual_prompt/splits/listing.py", "from .. import engine"),
    ("mutual_prompt/splits/listing.py", "from ..engine import TrainerX"),
    ("mutual_prompt/resume.py", "from .engine.utils import read_image"),
    ("mutual_prompt/resume.py", "from . import engine"),
    ("mutual_prompt/resume.py", "def f():\n    from .engine import config\n"),
])
def test_the_rule_sees_every_form_of_engine_import(path, source):
    path = path.replace("/", os.sep)
    assert engine_imports(source, path) != []


@pytest.mark.parametrize("path, source", [
    ("datasets/dtd.py", "from mutual_prompt.backend import DatasetBase"),
    ("datasets/dtd.py", "import mutual_prompt.engineering"),
    ("mutual_prompt/resume.py", "from .files import atomic_path"),
    ("mutual_prompt/splits/listing.py", "from ..files import listdir_nohidden"),
    ("mutual_prompt/splits/listing.py", "from . import engine"),  # mutual_prompt.splits.engine
])
def test_the_rule_lets_other_imports_pass(path, source):
    assert engine_imports(source, path.replace("/", os.sep)) == []


def backend_names(backend: str) -> subprocess.CompletedProcess:
    code = "import mutual_prompt.backend as b; print(b.BACKEND, *b.__all__); [getattr(b, n) for n in b.__all__]"
    env = dict(os.environ, MUTUAL_PROMPT_BACKEND=backend)
    return subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("backend", ["builtin", pytest.param("dassl", marks=[pytest.mark.dassl, needs_dassl])])
def test_the_backend_exports_exactly_the_host_dependent_names(backend):
    proc = backend_names(backend)
    assert proc.returncode == 0, proc.stderr[-3000:]
    chosen, *names = proc.stdout.split()
    assert chosen == backend
    assert names == HOST_DEPENDENT_NAMES
