"""Split files and few-shot caches never give a silently wrong split: runs started together share one
split file and one few-shot cache, the split does not depend on which seed created it, and edited or
malformed files are refused naming what is wrong."""
import contextlib
import hashlib
import io
import json
import multiprocessing
import os
import shutil
import time
import traceback

import pytest

import datasets  # noqa: F401  (registers the datasets)
from mutual_prompt.backend import DATASET_REGISTRY
from mutual_prompt.data import fewshot, split_files

from helpers.dataset_loading import load, records
from helpers.dataset_trees import TREES, build_dtd

DTD = "DescribableTextures"
SPLIT_FILE = "split_zhou_DescribableTextures.json"
WORKERS = 4
SLOW_S = 0.5  # how long each worker's split creation or few-shot sampling is made to take


def split_path(root: str) -> str:
    return os.path.join(root, "dtd", SPLIT_FILE)


def cache_path(root: str, shots: int, seed: int) -> str:
    return fewshot.fewshot_cache_path(os.path.join(root, "dtd", "split_fewshot"), shots, seed)


def sha256_of(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def read_json(path: str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_json(data, path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f)


# ---------------------------------------------------------------- runs started together


def _slowed(method):
    """``method`` taking SLOW_S longer, as on a real dataset, so that runs started together overlap in it."""

    def slow(*args, **kwargs):
        time.sleep(SLOW_S)
        return method(*args, **kwargs)

    return slow


def _worker(index: int, rounds, barrier, results) -> None:
    """Load DTD once per round, starting together with the other workers (a spawned process)."""
    dataset_class = DATASET_REGISTRY.get(DTD)
    dataset_class.create_split = _slowed(dataset_class.create_split)
    dataset_class.generate_fewshot_dataset = _slowed(dataset_class.generate_fewshot_dataset)
    for number, (root, seeds, shots) in enumerate(rounds):
        barrier.wait(timeout=120)
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                ds = load(root, DTD, shots=shots, seed=seeds[index])
            report = {
                "sha256": ds.split_sha256,
                "split_inode": os.stat(split_path(root)).st_ino,
                "cache_inode": os.stat(cache_path(root, shots, seeds[index])).st_ino if shots > 0 else None,
                "records": {part: records(getattr(ds, part)) for part in ("train_x", "val", "test")},
                "output": out.getvalue(),
            }
        except Exception:  # reported to the test, which fails naming it
            report = {"error": traceback.format_exc(), "output": out.getvalue()}
        results.put((number, index, report))


def run_together(rounds):
    """Per round, ``WORKERS`` spawned processes load DTD at once; their reports, by round and worker."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WORKERS)
    results = context.Queue()
    procs = [context.Process(target=_worker, args=(i, rounds, barrier, results)) for i in range(WORKERS)]
    for proc in procs:
        proc.start()
    try:
        reports = {}
        for _ in range(len(rounds) * WORKERS):
            number, index, report = results.get(timeout=180)
            assert "error" not in report, f"worker {index}, round {number}:\n{report['error']}"
            reports[number, index] = report
        for proc in procs:
            proc.join(timeout=60)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
    return [[reports[number, index] for index in range(WORKERS)] for number in range(len(rounds))]


@pytest.fixture(scope="module")
def together(tmp_path_factory):
    """Three rounds of runs with seeds 1-4 on a dataset without a split file, then two rounds of runs
    with one seed and shots on a dataset whose split file exists but has no few-shot cache yet."""
    base = tmp_path_factory.mktemp("together")
    split_rounds = []
    for number in range(3):
        root = str(base / f"split{number}")
        build_dtd(root)
        split_rounds.append((root, [1, 2, 3, 4], -1))
    fewshot_rounds = []
    for number in range(2):
        root = str(base / f"fewshot{number}")
        build_dtd(root)
        load(root, DTD)  # writes the split file
        fewshot_rounds.append((root, [5] * WORKERS, 2))
    reports = run_together(split_rounds + fewshot_rounds)
    return list(zip(split_rounds, reports[:3])), list(zip(fewshot_rounds, reports[3:]))


def test_runs_started_together_with_different_seeds_read_one_split_file(together):
    split_reports, _ = together
    waited = False
    for (root, _, _), reports in split_reports:
        path = split_path(root)
        (train, val, test), sha256 = split_files.read_split(path, os.path.join(root, "dtd", "images"))
        on_disk = {"train_x": records(train), "val": records(val), "test": records(test)}
        assert sha256 == sha256_of(path)
        for report in reports:
            assert report["records"] == on_disk
            assert report["sha256"] == sha256
            assert report["split_inode"] == os.stat(path).st_ino  # never replaced after anyone read it
        outputs = "".join(report["output"] for report in reports)
        assert outputs.count("Saved split to") == 1
        waited = waited or f"Waiting for {path}.lock, held by another process" in outputs
    assert waited, "no run waited for the one creating the split: the rounds did not overlap"


def test_runs_started_together_with_one_seed_share_one_fewshot_cache(together):
    _, fewshot_reports = together
    for (root, seeds, shots), reports in fewshot_reports:
        path = cache_path(root, shots, seeds[0])
        cached = read_json(path)
        for report in reports:
            assert report["records"] == reports[0]["records"]
            assert [list(r[1:]) for r in report["records"]["train_x"]] == [r[1:] for r in cached["train"]]
            assert report["cache_inode"] == os.stat(path).st_ino
        assert "".join(report["output"] for report in reports).count("Saving preprocessed few-shot data") == 1


# ---------------------------------------------------------------- the split's draws and the run's seed


def test_the_split_does_not_depend_on_the_seed_and_leaves_the_runs_draws_alone(tmp_path):
    first_root, other_root = str(tmp_path / "a"), str(tmp_path / "b")
    build_dtd(first_root)
    build_dtd(other_root)
    created = load(first_root, DTD, shots=2, seed=9)  # creates the split, then samples
    load(other_root, DTD, seed=1)
    with open(split_path(first_root), "rb") as a, open(split_path(other_root), "rb") as b:
        assert a.read() == b.read()

    shutil.rmtree(os.path.join(first_root, "dtd", "split_fewshot"))
    read = load(first_root, DTD, shots=2, seed=9)  # reads the split, then samples
    assert records(read.train_x) == records(created.train_x)
    assert records(read.val) == records(created.val)


def test_an_existing_split_file_is_never_overwritten(tmp_path):
    root = str(tmp_path)
    build_dtd(root)
    ds = load(root, DTD)
    path = split_path(root)
    before, inode = sha256_of(path), os.stat(path).st_ino
    with pytest.raises(FileExistsError):
        split_files.save_split(ds.train_x, ds.val, ds.test, path, os.path.join(root, "dtd", "images"))
    assert (sha256_of(path), os.stat(path).st_ino) == (before, inode)
    assert not [name for name in os.listdir(os.path.join(root, "dtd")) if name.endswith(".tmp")]


# ---------------------------------------------------------------- the split file's sha256


@pytest.mark.parametrize("tree", TREES, ids=[t.name for t in TREES])
def test_every_dataset_records_its_split_files_sha256(tree, tmp_path):
    root = str(tmp_path)
    tree.build(root)
    ds = load(root, tree.name)
    expected = sha256_of(os.path.join(tree.dataset_dir(root), tree.split_file)) if tree.split_file else ""
    assert ds.split_sha256 == expected


def test_toy_shapes_records_its_split_files_sha256(tmp_path, monkeypatch):
    import datasets.toy_shapes as toy_shapes

    monkeypatch.setattr(toy_shapes, "IMAGES_PER_CLASS", {"train": 1, "val": 1, "test": 1})
    toy_shapes.render_toy_shapes(str(tmp_path / "toy_shapes"))
    ds = load(str(tmp_path), "ToyShapes")
    assert ds.split_sha256 == sha256_of(str(tmp_path / "toy_shapes" / toy_shapes.SPLIT_FILE))


def test_a_fewshot_cache_made_from_another_split_file_is_refused(tmp_path):
    root = str(tmp_path)
    build_dtd(root)
    first = load(root, DTD, shots=1)
    path, cache = split_path(root), cache_path(root, 1, 1)
    assert read_json(cache)["split_sha256"] == first.split_sha256
    write_json(read_json(path), path)  # the same split, written without indentation: other bytes
    with pytest.raises(ValueError) as e:
        load(root, DTD, shots=1)
    message = str(e.value)
    assert f"few-shot cache {cache} was sampled from a split file with sha256 {first.split_sha256}" in message
    assert f"but split file {path} has sha256 {sha256_of(path)}" in message and "delete the cache" in message


def test_a_fewshot_cache_without_the_split_hash_is_checked_item_by_item_and_used(tmp_path):
    root = str(tmp_path)
    build_dtd(root)
    first = load(root, DTD, shots=1)
    cache = cache_path(root, 1, 1)
    older = read_json(cache)
    del older["split_sha256"]
    write_json(older, cache)
    write_json(read_json(split_path(root)), split_path(root))  # another hash, the same items
    assert records(load(root, DTD, shots=1).train_x) == records(first.train_x)


# ---------------------------------------------------------------- edits to the split file


def _edit_split(root: str, edit) -> str:
    path = split_path(root)
    split = read_json(path)
    edit(split)
    write_json(split, path)
    return path


def test_class_names_edited_in_the_split_are_not_taken_from_an_older_fewshot_cache(tmp_path):
    root = str(tmp_path)
    build_dtd(root)
    load(root, DTD, shots=1)
    cache = cache_path(root, 1, 1)
    older = read_json(cache)
    del older["split_sha256"]  # a cache written before the hash was recorded
    write_json(older, cache)
    cached_path, label, _ = older["train"][0]

    def rename(split):
        for part in split.values():
            for record in part:
                if record[1] == label:
                    record[2] = "renamed"

    _edit_split(root, rename)
    with pytest.raises(ValueError) as e:
        load(root, DTD, shots=1)
    item = os.path.join(root, "dtd", "images", cached_path)
    assert str(e.value).startswith(
        f"few-shot cache {cache}: its train item {item} (label {label}) has the class name 'banded', but the split "
        "names it 'renamed'"
    )


@pytest.mark.parametrize("label", [2.9, "0", True, None], ids=["float", "string", "bool", "null"])
def test_a_label_that_is_not_a_json_integer_is_refused(tmp_path, label):
    root = str(tmp_path)
    build_dtd(root)
    load(root, DTD)
    path = _edit_split(root, lambda split: split["val"][3].__setitem__(1, label))
    with pytest.raises(ValueError) as e:
        load(root, DTD)
    assert str(e.value).startswith(
        f"split file {path}: 'val'[3] has the label {json.dumps(label)}, which is not a JSON integer"
    )


def test_two_class_names_for_one_label_are_refused(tmp_path):
    root = str(tmp_path)
    build_dtd(root)
    load(root, DTD)
    path = _edit_split(root, lambda split: split["test"][1].__setitem__(2, "striped"))
    test_item = read_json(path)["test"][1]
    with pytest.raises(ValueError) as e:
        load(root, DTD)
    message = str(e.value)
    assert message.startswith(f"split file {path}: label {test_item[1]} has two class names: 'banded' (train item ")
    assert f"and 'striped' (test item {os.path.join(root, 'dtd', 'images', test_item[0])})" in message


def test_the_last_class_missing_from_train_is_named_as_missing(tmp_path):
    root = str(tmp_path)
    build_dtd(root)
    load(root, DTD)
    path = _edit_split(root, lambda split: split.__setitem__("train", [r for r in split["train"] if r[1] != 4]))
    with pytest.raises(ValueError) as e:
        load(root, DTD)
    message = str(e.value)
    assert message.startswith(f"split file {path}: 1 of the 5 classes have no train items (label(s) 4); ")
    assert "highest label of any split: 4, in the val split" in message and "outside" not in message
