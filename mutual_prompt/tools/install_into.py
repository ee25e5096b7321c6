"""Add MutualPrompt to a CoOp-style repository (CoOp, CoCoOp, MaPLe, PromptSRC, ...).

    python -m mutual_prompt.install_into PATH_TO_REPO [--dry-run] [--force]

Copies the drop-in kit from this checkout of mutual-prompt into the host repository:

    trainers/mutual_prompt.py                     -> trainers/mutual_prompt.py
    configs/trainers/MutualPrompt/<cfg>.yaml      -> configs/trainers/MutualPrompt/ (not the toy ones)
    scripts/<run script>.sh                       -> scripts/mutual_prompt/

and adds two things to the host's ``train.py``: ``import trainers.mutual_prompt`` after its last
trainer import, and a call of our ``extend_cfg`` at the start of its ``extend_cfg(cfg)``. The diff of
``train.py`` is printed; a ``train.py`` without CoOp's structure is refused, and nothing is written then.

``.mutual_prompt_kit.json`` in the host records the SHA-256 of each kit file as installed. Running it
again changes nothing, or updates the kit files that changed in this checkout; a kit file edited in
the host (neither what was installed nor what would be) is refused, naming each, before anything is
written: ``--force`` overwrites it after keeping a copy as ``<file>.orig``.
"""
import argparse
import ast
import difflib
import hashlib
import os
import shutil
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from mutual_prompt.files import atomic_path, read_json, write_json
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
MANIFEST = ".mutual_prompt_kit.json"  # in the host: {"files": {kit target: SHA-256 as installed}}
BACKUP_SUFFIX = ".orig"


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


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(host: str) -> Dict[str, str]:
    """The SHA-256 of each kit file as the last install wrote it (empty before the first install, or
    after one by a version that kept no manifest). Keys are targets with ``/`` separators."""
    path = os.path.join(host, MANIFEST)
    if not os.path.isfile(path):
        return {}
    try:
        files = read_json(path).get("files")
    except (ValueError, AttributeError) as e:
        raise InstallError(f"{path} is not the kit's manifest ({e}); delete it and run again") from e
    if not isinstance(files, dict):
        raise InstallError(f"{path} has no 'files' object; delete it and run again")
    return files


def _key(target: str) -> str:
    return target.replace(os.sep, "/")


def backup_path(target: str) -> str:
    """``<target>.orig``, or ``.orig.2``, ``.orig.3``, ... when earlier copies are there."""
    path, n = target + BACKUP_SUFFIX, 1
    while os.path.exists(path):
        n += 1
        path = f"{target}{BACKUP_SUFFIX}.{n}"
    return path


@dataclass(frozen=True)
class Plan:
    add: List[KitFile]  # missing in the host
    update: List[KitFile]  # as the last install wrote them, changed in this checkout since
    edited: List[KitFile]  # changed in the host since the last install (or not installed by a manifest)
    hashes: Dict[str, str]  # the manifest after the install


def plan_install(host: str, files: Sequence[KitFile]) -> Plan:
    """Sort the kit files by what installing would do to the host's copy of each."""
    installed = read_manifest(host)
    add, update, edited, hashes = [], [], [], {}
    for kit in files:
        target = os.path.join(host, kit.target)
        ours = file_sha256(kit.source)
        hashes[_key(kit.target)] = ours
        if not os.path.isfile(target):  # missing (or not a file: writing it is the error that names it)
            add.append(kit)
            continue
        there = file_sha256(target)
        if there == ours:
            continue
        (update if installed.get(_key(kit.target)) == there else edited).append(kit)
    return Plan(add, update, edited, hashes)


def edited_files_message(host: str, edited: Sequence[KitFile], manifest_found: bool) -> str:
    why = ("changed since the last install" if manifest_found
           else f"differ from the kit, and {MANIFEST} (what the last install wrote) is missing")
    names = "\n".join(f"  {kit.target}" for kit in edited)
    return (f"{host}: these kit files {why}, so they may hold your edits:\n{names}\n"
            f"Nothing was written. --force overwrites them, keeping each as <file>{BACKUP_SUFFIX}; "
            "or move your changes elsewhere (e.g. a config of your own beside the kit's) and run again.")


def install(host: str, checkout: Optional[str] = None, dry_run: bool = False, force: bool = False,
            out=sys.stdout) -> bool:
    """Install the kit into ``host``; returns whether anything changed (or would, with ``dry_run``).

    A kit file edited in the host is an ``InstallError`` naming each, before anything is written;
    ``force`` overwrites it after copying it to ``<file>.orig``."""
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
    plan = plan_install(host, kit_files(checkout))
    if plan.edited and not force:
        raise InstallError(edited_files_message(host, plan.edited, os.path.isfile(os.path.join(host, MANIFEST))))
    verb = "would " if dry_run else ""
    for action, kits in (("add", plan.add), ("update", plan.update), ("overwrite", plan.edited)):
        for kit in kits:
            target = os.path.join(host, kit.target)
            if action == "overwrite":
                backup = backup_path(target)
                kept = "would be kept" if dry_run else "is kept"
                print(f"{verb}overwrite {kit.target} (your version {kept} as {os.path.relpath(backup, host)})",
                      file=out)
                if not dry_run:
                    _copy(target, backup)
            else:
                print(f"{verb}{action} {kit.target}", file=out)
            if not dry_run:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                _copy(kit.source, target)
    changed = bool(plan.add or plan.update or plan.edited)
    if new != old:
        changed = True
        print(f"{verb}change train.py:", file=out)
        out.writelines(difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), "a/train.py", "b/train.py"))
        if not dry_run:
            _write_text(train_py, new)
    manifest = os.path.join(host, MANIFEST)
    if not dry_run and (not os.path.isfile(manifest) or read_manifest(host) != plan.hashes):
        write_json({"files": plan.hashes}, manifest)
    if not changed:
        print(f"{host}: MutualPrompt is already installed and up to date", file=out)
    elif not dry_run:
        print(f"MutualPrompt installed in {host}: run e.g. `bash scripts/mutual_prompt/base2new_train.sh caltech101 1`"
              " there (DATA, CFG, SHOTS, LOADEP, TRAINER, OUTPUT from the environment)", file=out)
    return changed


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mutual_prompt.install_into", description=__doc__.split("\n", 1)[0],
        epilog="Kit files edited in the host are refused, named, unless --force; see docs/DROP_IN.md.")
    parser.add_argument("host", metavar="PATH_TO_REPO", help="root of the CoOp-style repository (holds train.py)")
    parser.add_argument("--dry-run", action="store_true", help="show what would change, write nothing (default: off)")
    parser.add_argument("--force", action="store_true",
                        help=f"overwrite kit files edited in the host, keeping each as <file>{BACKUP_SUFFIX} "
                             "(default: off, refuse and name them)")
    parser.add_argument("--checkout", default=None,
                        help=f"mutual-prompt checkout to copy the kit from (default: {default_checkout()}, "
                             "the one this package is installed from)")
    args = parser.parse_args(argv)
    try:
        install(args.host, args.checkout, args.dry_run, args.force)
    except (InstallError, OSError) as e:  # OSError: a file of the host that cannot be read or written
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
