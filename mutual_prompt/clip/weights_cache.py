"""Facts about a weights file (its SHA-256, its architecture), computed once per version of the file.

A version is (absolute path, size, modification time in ns). Facts are kept in memory and in
``CACHE_FILE`` (JSON, written atomically), so that neither a second call nor a later process reads
the file again. A cache file that cannot be read or holds something else is ignored and rewritten;
one that cannot be written costs only the recomputation. Records of files that are gone or have
changed are dropped whenever the cache file is written.
"""
import hashlib
import json
import os
from typing import Any, Callable, Dict, Optional, TypeVar

from ..files import write_json

CACHE_FILE = os.path.join(os.path.expanduser("~"), ".cache", "mutual_prompt", "weights_files.json")
CHUNK_BYTES = 1 << 20

Fact = TypeVar("Fact")
Record = Dict[str, Any]
_memory: Dict[str, Record] = {}


def file_version(path: str) -> Record:
    status = os.stat(path)
    return {"size": status.st_size, "mtime_ns": status.st_mtime_ns}


def _is_version(record: Any, version: Record) -> bool:
    return isinstance(record, dict) and all(record.get(key) == value for key, value in version.items())


def _read_cache_file() -> Dict[str, Record]:
    try:
        with open(CACHE_FILE, "r", encoding="utf-8") as f:
            files = json.load(f).get("files")
    except (OSError, ValueError, AttributeError):
        return {}
    return files if isinstance(files, dict) else {}


def _is_current(path: str, record: Any) -> bool:
    try:
        return _is_version(record, file_version(path))
    except OSError:
        return False


def _store(path: str, record: Record) -> None:
    files = {name: kept for name, kept in _read_cache_file().items() if name != path and _is_current(name, kept)}
    files[path] = record
    try:
        write_json({"files": files}, CACHE_FILE)
    except OSError:
        pass


def _decoded(record: Optional[Record], fact: str, decode: Callable[[Any], Fact]) -> Optional[Fact]:
    if record is None or fact not in record:
        return None
    try:
        return decode(record[fact])
    except (TypeError, ValueError):
        return None


def cached_fact(path: str, fact: str, compute: Callable[[], Any], decode: Callable[[Any], Fact]) -> Fact:
    """``decode`` of the fact ``fact`` about ``path``'s current version: from memory, else from the
    cache file, else ``decode(compute())``, which is then stored in both. ``compute`` returns JSON
    data; a stored value that ``decode`` rejects (TypeError / ValueError) is computed again."""
    path = os.path.abspath(path)
    version = file_version(path)
    record = _memory.get(path) if _is_version(_memory.get(path), version) else None
    value = _decoded(record, fact, decode)
    if value is not None:
        return value
    stored = _read_cache_file().get(path)
    record = {**(stored if _is_version(stored, version) else {}), **(record or {}), **version}
    value = _decoded(record, fact, decode)
    if value is None:
        record[fact] = compute()
        value = decode(record[fact])
        _store(path, record)
    _memory[path] = record
    return value


def sha256_of_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sha256_hex(value: Any) -> str:
    if not (isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)):
        raise ValueError(f"not a SHA-256: {value!r}")
    return value


def file_sha256(path: str) -> str:
    """The SHA-256 of ``path`` (hex), read once per version of the file."""
    return cached_fact(path, "sha256", lambda: sha256_of_file(path), _sha256_hex)
