"""Read the tensors of a TorchScript archive (OpenAI's CLIP files) without running TorchScript.

``torch.jit.load`` compiles and can run the code stored in the archive. OpenAI's CLIP weights only
need the archive's tensors under their state-dict names, and those are plain data:

- ``<root>/data.pkl`` pickles the module tree: each module an object of a ``__torch__.*`` class whose
  state is a dict of attributes (tensors, sub-modules, flags), each tensor rebuilt by
  ``torch._utils._rebuild_tensor_v2`` from a storage that a persistent id names and that lies in
  ``<root>/data/<key>``;
- ``<root>/code/__torch__/**.py`` declares, per class, which attributes are parameters and buffers
  (``__parameters__ = [...]``, ``__buffers__ = [...]``): the entries of ``state_dict()``.

The pickle is read by an unpickler that builds only those classes (as inert records), tensors from
the archive's storages and a few containers, and refuses any other global; the code files are read as
text, never executed.
"""
import ast
import io
import pickle
import re
import zipfile
from collections import OrderedDict
from typing import Any, Dict, Tuple

import torch

StateDict = Dict[str, torch.Tensor]

STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}
# Helpers the TorchScript pickler may reference for lists and typed containers: identities on data.
_JIT_PICKLE_HELPERS = {
    "build_intlist": lambda x: x,
    "build_doublelist": lambda x: x,
    "build_boollist": lambda x: x,
    "build_tensorlist": lambda x: x,
    "restore_type_tag": lambda value, type_str: value,
}
_CLASS_HEADER = re.compile(r"^class (\w+)\(Module\):\s*$")
_MEMBER_LIST = re.compile(r"^\s+(__parameters__|__buffers__) = (\[.*\])\s*$")


class ScriptObject:
    """An inert record of one pickled TorchScript object: its class name and attribute dict."""

    qualname = ""

    def __setstate__(self, state: Any) -> None:
        self.state = state if isinstance(state, dict) else {}


class _StorageType:
    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


class _ArchiveUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, root: str) -> None:
        super().__init__(io.BytesIO(data))
        self.archive = archive
        self.root = root
        self.storages: Dict[str, torch.storage.TypedStorage] = {}
        self.classes: Dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "__torch__" or module.startswith("__torch__."):
            qualname = f"{module}.{name}"
            if qualname not in self.classes:
                self.classes[qualname] = type(name, (ScriptObject,), {"qualname": qualname})
            return self.classes[qualname]
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return torch._utils._rebuild_tensor_v2
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(STORAGE_DTYPES[name])
        if module == "torch.jit._pickle" and name in _JIT_PICKLE_HELPERS:
            return _JIT_PICKLE_HELPERS[name]
        raise pickle.UnpicklingError(f"the archive's data.pkl references {module}.{name}, which a weights file "
                                     "does not need; refusing to load it")

    def persistent_load(self, pid: Any) -> torch.storage.TypedStorage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise pickle.UnpicklingError(f"unexpected persistent id in data.pkl: {pid!r}")
        _, storage_type, key, _location, numel = pid
        if key not in self.storages:
            raw = self.archive.read(f"{self.root}/data/{key}")
            expected = numel * torch.empty((), dtype=storage_type.dtype).element_size()
            if len(raw) < expected:
                raise pickle.UnpicklingError(f"storage data/{key} holds {len(raw)} bytes, expected {expected}")
            untyped = torch.UntypedStorage.from_buffer(raw[:expected], dtype=torch.uint8) if expected else torch.UntypedStorage(0)
            self.storages[key] = torch.storage.TypedStorage(wrap_storage=untyped, dtype=storage_type.dtype, _internal=True)
        return self.storages[key]


def _archive_root(archive: zipfile.ZipFile) -> str:
    roots = [name[: -len("/data.pkl")] for name in archive.namelist() if name.endswith("/data.pkl") and name.count("/") == 1]
    if len(roots) != 1:
        raise ValueError(f"expected one <root>/data.pkl in the archive, found {len(roots)}")
    return roots[0]


def _declared_members(archive: zipfile.ZipFile, root: str) -> Dict[str, Tuple[set, set]]:
    """``{qualified class name: (parameter names, buffer names)}`` from the archive's code files."""
    members: Dict[str, Tuple[set, set]] = {}
    prefix = f"{root}/code/"
    for name in archive.namelist():
        if not (name.startswith(prefix) and name.endswith(".py")):
            continue
        module = name[len(prefix):-len(".py")].replace("/", ".")
        current = None
        for line in archive.read(name).decode("utf-8").splitlines():
            header = _CLASS_HEADER.match(line)
            if header:
                current = members.setdefault(f"{module}.{header.group(1)}", (set(), set()))
                continue
            member = _MEMBER_LIST.match(line)
            if member and current is not None:
                names = ast.literal_eval(member.group(2))
                current[0 if member.group(1) == "__parameters__" else 1].update(names)
    return members


def _collect(obj: ScriptObject, prefix: str, members: Dict[str, Tuple[set, set]], out: StateDict) -> None:
    if obj.qualname not in members:
        raise ValueError(f"no class declaration for {obj.qualname} in the archive's code files")
    params, buffers = members[obj.qualname]
    for attr, value in obj.state.items():
        if isinstance(value, ScriptObject):
            _collect(value, f"{prefix}{attr}.", members, out)
        elif isinstance(value, torch.Tensor) and (attr in params or attr in buffers):
            out[f"{prefix}{attr}"] = value


def read_jit_state_dict(path: str) -> StateDict:
    """The parameters and buffers of the TorchScript archive ``path``, as ``state_dict()`` names them."""
    with zipfile.ZipFile(path) as archive:
        root = _archive_root(archive)
        members = _declared_members(archive, root)
        tree = _ArchiveUnpickler(archive.read(f"{root}/data.pkl"), archive, root).load()
    if not isinstance(tree, ScriptObject):
        raise ValueError(f"data.pkl holds a {type(tree).__name__}, not a TorchScript module")
    state_dict: StateDict = OrderedDict()
    _collect(tree, "", members, state_dict)
    return state_dict
