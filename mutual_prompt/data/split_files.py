"""Split files in CoOp's format and the train/val/test splitting that creates them.

The algorithms and their sequence of ``random`` calls follow CoOp (``datasets/oxford_pets.py`` and
``datasets/dtd.py`` there); every folder listing is sorted first (``listing``), so the same data give
the same splits on every machine. A missing split file is created once, from ``random`` seeded with
``SPLIT_SEED`` whatever the run's seed (the caller's ``random`` state is restored afterwards), under
a lock beside it, and never overwritten: runs started together all read the one file.

Split files (and few-shot caches) are JSON: ``{"train": [[path, label, classname], ...], "val": ...}``
with paths relative to a prefix folder, the format of CoOp's ``split_zhou_*.json``. Labels are JSON
integers.
"""
import json
import os
import random
from collections import defaultdict
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from mutual_prompt.backend import Datum
from mutual_prompt.files import exclusive_lock, read_json_and_sha256, write_json

from .listing import list_class_folders, list_images
from .paths import DatasetFileNotFound

Items = List[Datum]
Split = Tuple[Items, Items, Items]
SPLIT_PARTS = ("train", "val", "test")
SPLIT_SEED = 1  # seeds ``random`` while a missing split file is created, whatever the run's seed


def make_datum(impath: str, label: int, classname: str, source: str) -> Datum:
    """A ``Datum``; a missing image raises an error that names it and ``source`` (what listed it)."""
    try:
        return Datum(impath=impath, label=label, classname=classname)
    except (FileNotFoundError, AssertionError) as e:  # Dassl's Datum asserts the file exists
        raise DatasetFileNotFound(f"{source} names the image {impath}, which does not exist") from e


def to_records(items: Sequence[Datum], path_prefix: str) -> List[List[Any]]:
    """``[path relative to path_prefix, label, classname]`` per item, as split files store them."""
    records = []
    for item in items:
        rel = os.path.relpath(item.impath, path_prefix)
        if rel.startswith(os.pardir):
            raise ValueError(f"Image {item.impath} is not inside {path_prefix}; cannot store it relative to it")
        records.append([rel.replace(os.sep, "/"), item.label, item.classname])
    return records


Record = Tuple[str, int, str]  # (path relative to the prefix folder, label, class name)


def records_of(data: Dict[str, Any], part: str, source: str) -> List[Record]:
    """The checked ``[path, label, classname]`` records of ``data[part]`` (read by
    ``read_record_file``), images not looked at; errors name ``source``, the part and the index."""
    records = data[part]
    if not isinstance(records, list):
        raise ValueError(f"{source}: '{part}' must be a list of [path, label, classname], got {type(records).__name__}")
    checked = []
    for i, record in enumerate(records):
        if not (
            isinstance(record, (list, tuple))
            and len(record) == 3
            and isinstance(record[0], str)
            and isinstance(record[2], str)
        ):
            raise ValueError(f"{source}: '{part}'[{i}] must be [path, label, classname], got {record!r}")
        label = record[1]
        if isinstance(label, bool) or not isinstance(label, int):
            raise ValueError(
                f"{source}: '{part}'[{i}] has the label {json.dumps(label)}, which is not a JSON integer "
                "(labels are written as 0, 1, 2, ..., not as text, decimals or true/false)"
            )
        checked.append((record[0], label, record[2]))
    return checked


def read_record_file(filepath: str, parts: Sequence[str], kind: str) -> Tuple[Dict[str, Any], str]:
    """The JSON object in ``filepath`` (a ``kind``: split file or few-shot cache), which must hold the
    keys ``parts``, and the sha256 of the file's bytes."""
    data, sha256 = read_json_and_sha256(filepath)
    source = f"{kind} {filepath}"
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a JSON object with keys {list(parts)}")
    missing = [p for p in parts if p not in data]
    if missing:
        raise ValueError(f"{source}: missing key(s) {missing}; expected {list(parts)}")
    return data, sha256


def items_of(data: Dict[str, Any], part: str, path_prefix: str, source: str) -> Items:
    """The items of ``data[part]`` (read by ``read_record_file``); errors name ``source`` and the part."""
    return [make_datum(os.path.join(path_prefix, path), label, classname, source)
            for path, label, classname in records_of(data, part, source)]


def read_split(filepath: str, path_prefix: str) -> Tuple[Split, str]:
    """Read a CoOp split file (``split_zhou_*.json``); its paths are relative to ``path_prefix``.

    Returns the split and the sha256 of the file's bytes as read.
    """
    print(f"Reading split from {filepath}")
    data, sha256 = read_record_file(filepath, SPLIT_PARTS, "split file")
    train, val, test = (items_of(data, part, path_prefix, f"split file {filepath}") for part in SPLIT_PARTS)
    return (train, val, test), sha256


def save_split(train: Items, val: Items, test: Items, filepath: str, path_prefix: str) -> None:
    """Write a split file in CoOp's format, atomically; an existing file is never replaced
    (``FileExistsError``)."""
    split = {p: to_records(items, path_prefix) for p, items in zip(SPLIT_PARTS, (train, val, test))}
    write_json(split, filepath, overwrite=False)
    print(f"Saved split to {filepath}")


@contextmanager
def seeded_random(seed: int) -> Iterator[None]:
    """Seed the global ``random`` for the block, then restore the state it had before."""
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


def load_or_create_split(filepath: str, path_prefix: str, create: Callable[[], Split]) -> Tuple[Split, str]:
    """Read the split file, creating it first if it is missing; returns the split and the file's sha256.

    ``create()`` runs with ``random`` seeded by ``SPLIT_SEED`` (the caller's state is restored, so
    what it draws next does not depend on whether the file existed), at most once among processes
    started together: they wait on ``<filepath>.lock`` and then read the file the first one wrote.
    """
    if not os.path.exists(filepath):
        with exclusive_lock(filepath + ".lock"):
            if not os.path.exists(filepath):
                with seeded_random(SPLIT_SEED):
                    train, val, test = create()
                save_split(train, val, test, filepath, path_prefix)
    return read_split(filepath, path_prefix)


def split_trainval(trainval: Items, p_val: float = 0.2) -> Tuple[Items, Items]:
    """Move ``round(n * p_val)`` random items of each class from train to val (CoOp's draws)."""
    print(f"Splitting trainval into {1 - p_val:.0%} train and {p_val:.0%} val")
    tracker: Dict[int, List[int]] = defaultdict(list)
    for idx, item in enumerate(trainval):
        tracker[item.label].append(idx)
    train, val = [], []
    for label, idxs in tracker.items():
        n_val = round(len(idxs) * p_val)
        if n_val < 1:
            raise ValueError(
                f"Class {label} ({trainval[idxs[0]].classname!r}) has {len(idxs)} train+val image(s): too few to "
                f"hold out {p_val:.0%} for validation (at least one image)"
            )
        random.shuffle(idxs)
        for n, idx in enumerate(idxs):
            (val if n < n_val else train).append(trainval[idx])
    return train, val


def split_class_images(
    images: List[str], p_trn: float, p_val: float, where: str
) -> Tuple[List[str], List[str], List[str]]:
    """Shuffle one class's images in place and cut them into train / val / test (CoOp's proportions)."""
    random.shuffle(images)
    n_total = len(images)
    n_train = round(n_total * p_trn)
    n_val = round(n_total * p_val)
    if n_train < 1 or n_val < 1 or n_total - n_train - n_val < 1:
        raise ValueError(
            f"{where}: {n_total} image(s) are too few to split {p_trn:.0%} train / {p_val:.0%} val / rest test "
            "with at least one image in each"
        )
    return images[:n_train], images[n_train : n_train + n_val], images[n_train + n_val :]


def read_and_split_data(
    image_dir: str,
    p_trn: float = 0.5,
    p_val: float = 0.2,
    ignored: Iterable[str] = (),
    new_cnames: Optional[Dict[str, str]] = None,
) -> Split:
    """Split a ``<image_dir>/<class>/<image>`` tree per class; labels follow the sorted folder names."""
    print(f"Splitting into {p_trn:.0%} train, {p_val:.0%} val, and {1 - p_trn - p_val:.0%} test")
    categories = list_class_folders(image_dir, ignored)
    if not categories:
        raise ValueError(f"{image_dir} holds no class folders")
    train, val, test = [], [], []
    for label, category in enumerate(categories):
        category_dir = os.path.join(image_dir, category)
        images = [os.path.join(category_dir, name) for name in list_images(category_dir)]
        parts = split_class_images(images, p_trn, p_val, category_dir)
        classname = (new_cnames or {}).get(category, category)
        for out, paths in zip((train, val, test), parts):
            out.extend(make_datum(p, label, classname, category_dir) for p in paths)
    return train, val, test
