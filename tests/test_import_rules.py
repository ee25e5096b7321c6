"""The layout's import rules, read from the source with ``ast``.

Layers (docs/DEVELOPING.md): the **core** (``backend.py``, ``files.py``, ``names.py``, ``clip/``, ``method/``, ``data/``,
``runtime/``, ``run/``) and the **tooling** (``tools/`` and the ``python -m`` entry points beside the
core). Tooling imports the core, never the other way round. Inside the core, ``clip/`` imports nothing
of the method, the data, the host or the runs but the checkpoint reader (it is reusable alone),
``method/`` imports only ``clip/``, and the built-in runtime only stands in for Dassl: nothing outside
``runtime/`` and ``backend.py`` imports it. The package's only ``torch.load`` is in
``run/checkpoints.py``. The CoOp-shaped top level (``train.py``, ``trainers/``, ``datasets/``,
``parse_test_res.py``) and ``benchmarks/`` use the layers and are used by neither.
"""
import ast
import os
import subprocess
import sys
from typing import Dict, Iterator, List, Tuple

import pytest

from helpers.real_dassl import needs_dassl

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "mutual_prompt"
RUNTIME = "mutual_prompt.runtime"
SCANNED = (PACKAGE, "trainers", "datasets", "train.py", "parse_test_res.py", "interpret_prompt.py", "benchmarks")

CORE = ("backend", "files", "names", "clip", "method", "data", "runtime", "run")
TOOLING = ("tools",)
ENTRY_POINTS = ("sweep", "convert", "install_into", "toy", "doctor")  # python -m mutual_prompt.<name>, into tools/
# What each core part may import of the package, besides itself.
CORE_ALLOWED: Dict[str, Tuple[str, ...]] = {
    "files": (),
    "names": (),
    "clip": ("files", "names", "run.checkpoints"),  # run.checkpoints: the package's one torch.load
    "method": ("clip",),
    "data": ("backend", "files", "names"),
    "runtime": ("files", "names", "data", "run"),
    "run": ("backend", "files", "names", "clip", "method", "data"),
    "backend": ("runtime", "run"),
}
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
    """Paths, relative to the repository root, of every Python file under ``SCANNED``."""
    for entry in SCANNED:
        path = os.path.join(REPO_ROOT, entry)
        if os.path.isfile(path):
            found = [path]
        else:
            found = [os.path.join(d, f) for d, _, files in os.walk(path) for f in files if f.endswith(".py")]
        for file in sorted(found):
            yield os.path.relpath(file, REPO_ROOT)


def package_of(rel_path: str) -> List[str]:
    """The dotted package, as parts, of the module at ``rel_path``."""
    folder = os.path.dirname(rel_path)
    return folder.split(os.sep) if folder else []


def imported_modules(source: str, rel_path: str) -> List[Tuple[int, str]]:
    """``(line, module)`` for every module an import in ``source`` may bring in, relative imports resolved;
    ``from a import b`` gives both ``a`` and ``a.b`` (``b`` may be a module)."""
    found = []
    for node in ast.walk(ast.parse(source, filename=rel_path)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package_of(rel_path)
                module = ".".join(parts[: len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def part_of(module: str) -> str:
    """The first name under ``mutual_prompt`` of a module of the package ('' for the package itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer_of(part: str) -> str:
    if part in CORE:
        return "core"
    if part in TOOLING or part in ENTRY_POINTS:
        return "tooling"
    return "package" if part == "" else "unknown"


def module_of(rel_path: str) -> str:
    dotted = rel_path[:-3].replace(os.sep, ".")
    return dotted[: -len(".__init__")] if dotted.endswith(".__init__") else dotted


def torch_load_calls(source: str, rel_path: str) -> List[int]:
    """The lines of the calls of ``torch.load`` in ``source``, whatever name ``torch`` or ``load`` is
    imported under (``torch.serialization.load`` included)."""
    tree = ast.parse(source, filename=rel_path)
    modules, functions = set(), set()  # names bound to torch / torch.serialization, and to their load
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {alias.asname or alias.name.split(".")[0] for alias in node.names
                        if alias.name in ("torch", "torch.serialization")}
        elif isinstance(node, ast.ImportFrom) and node.module in ("torch", "torch.serialization"):
            functions |= {alias.asname or alias.name for alias in node.names if alias.name == "load"}
            modules |= {alias.asname or alias.name for alias in node.names if alias.name == "serialization"}

    def is_torch_load(func: ast.expr) -> bool:
        if isinstance(func, ast.Name):
            return func.id in functions
        if not (isinstance(func, ast.Attribute) and func.attr == "load"):
            return False
        owner = func.value
        if isinstance(owner, ast.Attribute) and owner.attr == "serialization":
            owner = owner.value
        return isinstance(owner, ast.Name) and owner.id in modules

    return sorted(node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call) and is_torch_load(node.func))


def arrows() -> Iterator[Tuple[str, int, str]]:
    """``(file, line, imported module)`` for every import of a package module in the scanned files."""
    for rel in python_files():
        with open(os.path.join(REPO_ROOT, rel), encoding="utf-8") as f:
            for line, module in imported_modules(f.read(), rel):
                if module == PACKAGE or module.startswith(PACKAGE + "."):
                    yield rel, line, module


def allowed(importer: str, imported: str) -> bool:
    """Whether module ``importer`` (dotted) may import module ``imported`` (dotted, in the package)."""
    target = part_of(imported)
    if not importer.startswith(PACKAGE + "."):  # train.py, trainers/, datasets/, benchmarks/
        return target != "runtime"
    source = part_of(importer)
    if target in ("", source):
        return True
    if layer_of(source) == "tooling":
        return target != "runtime" and (source in TOOLING or target in TOOLING)
    allowed_targets = CORE_ALLOWED[source]
    return any(imported == f"{PACKAGE}.{a}" or imported.startswith(f"{PACKAGE}.{a}.") for a in allowed_targets)


def test_every_part_of_the_package_belongs_to_a_layer():
    parts = {name[:-3] if name.endswith(".py") else name for name in os.listdir(os.path.join(REPO_ROOT, PACKAGE))
             if name.endswith(".py") or os.path.isfile(os.path.join(REPO_ROOT, PACKAGE, name, "__init__.py"))}
    assert parts - {"__init__"} == set(CORE) | set(TOOLING) | set(ENTRY_POINTS)


def test_every_import_follows_the_layers():
    found = list(arrows())
    assert any(rel == os.path.join("trainers", "mutual_prompt.py") for rel, _, _ in found)
    offenders = [f"{rel}:{line}: imports {module}" for rel, line, module in found
                 if not allowed(module_of(rel), module)]
    assert offenders == [], "\n".join(offenders)


def test_the_package_calls_torch_load_once_in_run_checkpoints():
    calls = []
    for rel in python_files():
        if rel.startswith(PACKAGE + os.sep):
            with open(os.path.join(REPO_ROOT, rel), encoding="utf-8") as f:
                calls += [f"{rel}:{line}" for line in torch_load_calls(f.read(), rel)]
    assert len(calls) == 1 and calls[0].startswith(os.path.join(PACKAGE, "run", "checkpoints.py") + ":"), calls


@pytest.mark.parametrize("source, lines", [
    ("import torch\nx = torch.load(p, weights_only=True)", [2]),
    ("import torch as t\nx = t.load(p)", [2]),
    ("from torch import load\nx = load(p)", [2]),
    ("from torch import load as read\nx = read(p)", [2]),
    ("import torch.serialization\nx = torch.serialization.load(p)", [2]),
    ("from torch import serialization\nx = serialization.load(p)", [2]),
    ("import json, torch\nx = json.load(f)\ny = torch.save(x, p)", []),
])
def test_every_form_of_torch_load_is_found(source, lines):
    assert torch_load_calls(source, "mutual_prompt/x.py") == lines


def test_the_entry_points_only_call_into_the_tooling():
    for rel, _, module in arrows():
        importer = module_of(rel)
        if importer.startswith(PACKAGE + ".") and part_of(importer) in ENTRY_POINTS:
            assert part_of(module) in ("tools", part_of(importer)), f"{rel} imports {module}"


@pytest.mark.parametrize("importer, imported", [
    ("mutual_prompt.clip.loader", "mutual_prompt.tools.toy"),  # core -> tooling
    ("mutual_prompt.run.checkpoints", "mutual_prompt.tools.results"),
    ("mutual_prompt.data.fewshot", "mutual_prompt.sweep"),  # an entry point is tooling too
    ("mutual_prompt.clip.loader", "mutual_prompt.method"),  # clip stays reusable alone
    ("mutual_prompt.clip.loader", "mutual_prompt.backend"),
    ("mutual_prompt.clip.loader", "mutual_prompt.run.config"),  # of the runs, clip reads checkpoints only
    ("mutual_prompt.method.tvp", "mutual_prompt.data"),
    ("mutual_prompt.data.listing", "mutual_prompt.runtime.utils"),  # only the backend picks the runtime
    ("mutual_prompt.tools.sweep.cli", "mutual_prompt.runtime"),
    ("trainers.mutual_prompt", "mutual_prompt.runtime.trainer"),
    ("datasets.dtd", "mutual_prompt.runtime"),
])
def test_the_rules_refuse_an_arrow_that_breaks_them(importer, imported):
    assert not allowed(importer, imported)


@pytest.mark.parametrize("path, source, module", [
    ("datasets/dtd.py", "import mutual_prompt.runtime.utils as u", "mutual_prompt.runtime.utils"),
    ("datasets/dtd.py", "from mutual_prompt import runtime", "mutual_prompt.runtime"),
    ("mutual_prompt/data/listing.py", "from .. import runtime", "mutual_prompt.runtime"),
    ("mutual_prompt/data/listing.py", "from ..runtime import TrainerX", "mutual_prompt.runtime"),
    ("mutual_prompt/clip/loader.py", "from ..tools.toy import TINY_CLIP_PATH", "mutual_prompt.tools.toy"),
    ("mutual_prompt/run/checkpoints.py", "def f():\n    from ..tools import results\n", "mutual_prompt.tools.results"),
    ("mutual_prompt/runtime/data/data_manager.py", "from ...data.labels import x", "mutual_prompt.data.labels"),
])
def test_every_form_of_import_is_resolved(path, source, module):
    assert module in [m for _, m in imported_modules(source, path.replace("/", os.sep))]


@pytest.mark.parametrize("importer, imported", [
    ("mutual_prompt.tools.sweep.state", "mutual_prompt.files"),  # tooling -> core
    ("mutual_prompt.sweep", "mutual_prompt.tools.sweep.cli"),  # entry point -> tooling
    ("mutual_prompt.method.mutual_prompt_clip", "mutual_prompt.clip"),
    ("mutual_prompt.clip.loader", "mutual_prompt.run.checkpoints"),
    ("mutual_prompt.backend", "mutual_prompt.runtime"),
    ("mutual_prompt.runtime.trainer", "mutual_prompt.run.fingerprint"),
    ("trainers.mutual_prompt", "mutual_prompt.backend"),
])
def test_the_rules_let_the_layered_arrows_pass(importer, imported):
    assert allowed(importer, imported)


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


# Tests: fixtures shared by several test modules are in tests/conftest.py, other shared code in
# tests/helpers/; no file under tests/ imports a test module.

TESTS_DIR = os.path.join(REPO_ROOT, "tests")


def names_of_test_modules() -> List[str]:
    return sorted(name[:-3] for name in os.listdir(TESTS_DIR) if name.startswith("test_") and name.endswith(".py"))


def imports_of_test_modules(source: str, rel_path: str, test_modules: List[str]) -> List[Tuple[int, str]]:
    """``(line, module)`` for each import of one of ``test_modules`` (as ``test_x`` or ``tests.test_x``) in
    ``source``: import statements, and code held in strings (a script for a subprocess, ``__import__``,
    ``importlib.import_module``)."""
    import re

    def names_a_test_module(module: str) -> bool:
        parts = module.split(".")
        parts = parts[1:] if parts[0] == "tests" else parts
        return bool(parts) and parts[0] in test_modules

    found = [(line, module) for line, module in imported_modules(source, rel_path) if names_a_test_module(module)]
    in_text = re.compile(r"(?:\b(?:import|from)\s+|(?:__import__|import_module)\(\s*['\"])((?:tests\.)?test_\w+)")
    for node in ast.walk(ast.parse(source, filename=rel_path)):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            function = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if function in ("__import__", "import_module") and names_a_test_module(str(node.args[0].value)):
                found.append((node.lineno, node.args[0].value))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found += [(node.lineno, m) for m in in_text.findall(node.value) if names_a_test_module(m)]
    return found


def test_no_file_under_tests_imports_a_test_module():
    modules = names_of_test_modules()
    assert "test_import_rules" in modules
    offenders = []
    for folder, _, files in os.walk(TESTS_DIR):
        for name in sorted(f for f in files if f.endswith(".py")):
            rel = os.path.relpath(os.path.join(folder, name), REPO_ROOT)
            with open(os.path.join(REPO_ROOT, rel), encoding="utf-8") as f:
                offenders += [f"{rel}:{line}: imports {module}" for line, module in
                              imports_of_test_modules(f.read(), rel, modules)]
    hint = "\n(fixtures that several test modules use belong in tests/conftest.py, other shared code in tests/helpers/)"
    assert offenders == [], "\n".join(offenders) + hint


@pytest.mark.parametrize("source, found", [
    ("from test_a import f", ["test_a", "test_a.f"]),
    ("import tests.test_a as t", ["tests.test_a"]),
    ("def f():\n    from test_a import g\n", ["test_a", "test_a.g"]),
    ("SCRIPT = '''\nimport json, sys\nimport tests.test_a as t\n'''", ["tests.test_a"]),
    ("m = __import__('test_a')", ["test_a"]),
    ("m = importlib.import_module(\"tests.test_a\")", ["tests.test_a"]),
    ("from helpers.runs import python\nimport test_b\nx = 'from test_b import y'", []),  # test_b: no such test module
])
def test_every_form_of_importing_a_test_module_is_found(source, found):
    assert [m for _, m in imports_of_test_modules(source, os.path.join("tests", "test_x.py"), ["test_a"])] == found
