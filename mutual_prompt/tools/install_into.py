"""Add MutualPrompt to a CoOp-style repository (CoOp, CoCoOp, MaPLe, PromptSRC, ...):

    python -m mutual_prompt.install_into PATH_TO_REPO [--dry-run]

Copies the drop-in kit from this checkout of mutual-prompt into the host repository:

    trainers/mutual_prompt.py                     -> trainers/mutual_prompt.py
    configs/trainers/MutualPrompt/<cfg>.yaml      -> configs/trainers/MutualPrompt/ (not the toy ones)
    scripts/<run script>.sh                       -> scripts/mutual_prompt/

and adds two things to the host's ``train.py``: ``import trainers.mutual_prompt`` after its last
trainer import, and a call of our ``extend_cfg`` at the start of its ``extend_cfg(cfg)``. Running
it again changes nothing (kit files that changed here are updated). The diff of ``train.py`` is
printed; a ``train.py`` without CoOp's structure is refused, and nothing is written then.
"""
import argparse
import ast
import difflib
import filecmp
import os
import shutil
import sys
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from mutual_prompt.files import atomic_path
from mutual_prompt.tools import PACKAGE_CHECKOUT

TRAINER_MODULE = "trainers.mutual_prompt"
TRAINER_IMPORT = f"import {TRAINER_MODULE}"
EXTEND_IMPORT = f"from {TRAINER_MODULE} import extend_cfg as extend_mutual_prompt_cfg"
EXTEND_CALL = "extend_mutual_prompt_cfg(cfg)"
CONFIG_DIR = os.path.join("configs", "trainers", "MutualPrompt")
HOST_SCRIPT_DIR = os.path.join("scripts", "mutual_prompt")
# The run scripts that work in a host repository, with the files they source (the reproduce_* scripts
# and the quick start need this repository's parse_test_res.py and toy world).
KIT_SCRIPTS = ("_common.sh", "protocols.sh", "base2new_train.sh", "base2new_test.sh", "xd_train.sh",
               "xd_test.sh", "dg_test.sh", "few_shot.sh")
TOY_CONFIG_PREFIX = "toy"


class InstallError(Exception):
    """The host repository (or this checkout) cannot take the kit; the message says why."""


@dataclass(frozen=True)
class KitFile:
    source: str  # absolute path in this checkout
    target: str  # path relative to the host repository's root


def default_checkout() -> str:
    """The mutual-prompt checkout this package was installed from (``pip install -e``)."""
    return PACKAGE_CHECKOUT


def kit_files(checkout: str) -> List[KitFile]:
    """What the kit copies: the trainer, the non-toy MutualPrompt configs and the run scripts."""
    trainer = os.path.join(checkout, "trainers", "mutual_prompt.py")
    config_dir = os.path.join(checkout, CONFIG_DIR)
    if not (os.path.isfile(trainer) and os.path.isdir(config_dir)):
        raise InstallError(
            f"{checkout} is not a mutual-prompt checkout (expected trainers/mutual_prompt.py and {CONFIG_DIR}/); "
            "install mutual-prompt with `pip install -e /path/to/mutual-prompt` or pass --checkout"
        )
    files = [KitFile(trainer, os.path.join("trainers", "mutual_prompt.py"))]
    for name in sorted(os.listdir(config_dir)):
        if name.endswith(".yaml") and not name.startswith(TOY_CONFIG_PREFIX):
            files.append(KitFile(os.path.join(config_dir, name), os.path.join(CONFIG_DIR, name)))
    for name in KIT_SCRIPTS:
        files.append(KitFile(os.path.join(checkout, "scripts", name), os.path.join(HOST_SCRIPT_DIR, name)))
    return files


def _imports_module(node: ast.stmt, module: str) -> bool:
    return isinstance(node, ast.Import) and any(alias.name == module for alias in node.names)


def _is_trainer_import(node: ast.stmt) -> bool:
    return isinstance(node, ast.Import) and any(alias.name.startswith("trainers.") for alias in node.names)


def _find_extend_cfg(tree: ast.Module) -> Optional[ast.FunctionDef]:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "extend_cfg":
            return node
    return None


def _calls(tree: ast.AST, name: str) -> bool:
    return any(
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name
        for node in ast.walk(tree)
    )


def patch_train_py(text: str, path: str = "train.py") -> str:
    """``text`` with the trainer import and the ``extend_cfg`` call added (unchanged if both are there).

    Raises InstallError, naming ``path`` and what is missing, for a file without CoOp's structure:
    module-level ``import trainers.<name>`` lines, a module-level ``def extend_cfg(cfg)`` and a
    call of it.
    """
    try:
        tree = ast.parse(text, filename=path)
    except SyntaxError as e:
        raise InstallError(f"{path} is not valid Python ({e.msg}, line {e.lineno}); nothing was changed") from e
    trainer_imports = [node for node in tree.body if _is_trainer_import(node)]
    extend = _find_extend_cfg(tree)
    problems = []
    if not trainer_imports:
        problems.append("no module-level `import trainers.<name>` line (CoOp's train.py imports each trainer so)")
    if extend is None or [a.arg for a in extend.args.args] != ["cfg"]:
        problems.append("no module-level `def extend_cfg(cfg):`")
    elif not _calls(tree, "extend_cfg"):
        problems.append("`extend_cfg(cfg)` is defined but never called")
    if problems:
        raise InstallError(
            f"{path} does not look like a CoOp-style train.py: " + "; ".join(problems)
            + ". Nothing was changed; add MutualPrompt by hand as docs/DROP_IN.md shows."
        )
    lines = text.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    insertions: List[Tuple[int, List[str]]] = []  # (index in lines, new lines), applied bottom-up
    if not any(_imports_module(node, TRAINER_MODULE) for node in tree.body):
        insertions.append((trainer_imports[-1].end_lineno, [TRAINER_IMPORT + newline]))
    if not _calls(extend, "extend_mutual_prompt_cfg"):
        body = extend.body
        has_docstring = (
            isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        )
        at = body[0].end_lineno if has_docstring else body[0].lineno - 1
        indent = " " * body[0].col_offset  # a block's statements share one indentation
        insertions.append((at, [indent + EXTEND_IMPORT + newline, indent + EXTEND_CALL + newline]))
    for at, new in sorted(insertions, reverse=True):
        if at > 0 and not lines[at - 1].endswith(("\n", "\r")):
            lines[at - 1] += newline
        lines[at:at] = new
    return "".join(lines)


def _write_text(path: str, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)


def _copy(source: str, target: str) -> None:
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
    shutil.copymode(source, target)


def install(host: str, checkout: Optional[str] = None, dry_run: bool = False, out=sys.stdout) -> bool:
    """Install the kit into ``host``; returns whether anything changed (or would, with ``dry_run``)."""
    checkout = checkout or default_checkout()
    train_py = os.path.join(host, "train.py")
    if not os.path.isfile(train_py):
        raise InstallError(f"{train_py} does not exist: PATH_TO_REPO must be the root of a CoOp-style repository")
    if not os.path.isdir(os.path.join(host, "trainers")):
        raise InstallError(f"{host} has no trainers/ folder: PATH_TO_REPO must be the root of a CoOp-style repository")
    if os.path.realpath(host) == os.path.realpath(checkout):
        raise InstallError(f"{host} is mutual-prompt itself; give the path of the repository to add it to")
    with open(train_py, encoding="utf-8", newline="") as f:
        old = f.read()
    new = patch_train_py(old, train_py)  # refuses before anything is copied
    files = kit_files(checkout)
    verb = "would " if dry_run else ""
    changed = False
    for kit in files:
        target = os.path.join(host, kit.target)
        if os.path.isfile(target) and filecmp.cmp(kit.source, target, shallow=False):
            continue
        action = "update" if os.path.exists(target) else "add"
        print(f"{verb}{action} {kit.target}", file=out)
        changed = True
        if not dry_run:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            _copy(kit.source, target)
    if new != old:
        changed = True
        print(f"{verb}change train.py:", file=out)
        out.writelines(difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), "a/train.py", "b/train.py"))
        if not dry_run:
            _write_text(train_py, new)
    if not changed:
        print(f"{host}: MutualPrompt is already installed and up to date", file=out)
    elif not dry_run:
        print(f"MutualPrompt installed in {host}: run e.g. `bash scripts/mutual_prompt/base2new_train.sh caltech101 1`"
              " there (DATA, CFG, SHOTS, LOADEP, TRAINER, OUTPUT from the environment)", file=out)
    return changed


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mutual_prompt.install_into", description=__doc__.split("\n", 1)[0])
    parser.add_argument("host", metavar="PATH_TO_REPO", help="root of the CoOp-style repository (holds train.py)")
    parser.add_argument("--dry-run", action="store_true", help="show what would change, write nothing")
    parser.add_argument("--checkout", default=None,
                        help="mutual-prompt checkout to copy the kit from (default: the one this package is in)")
    args = parser.parse_args(argv)
    try:
        install(args.host, args.checkout, args.dry_run)
    except (InstallError, OSError) as e:  # OSError: a file of the host that cannot be read or written
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
