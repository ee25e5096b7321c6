"""The 15 benchmark datasets against tiny generated trees in CoOp's layouts, and the shared split helpers."""
import hashlib
import json
import math
import os
import random
import shutil
from collections import Counter
from typing import Dict, List

import pytest

import datasets  # noqa: F401  (registers the datasets)
import mutual_prompt.data as dataset_helpers
from mutual_prompt.data import fewshot, split_files
from mutual_prompt.backend import DATASET_REGISTRY, Datum
from mutual_prompt.runtime.config import get_cfg_default

from helpers.dataset_loading import load, make_cfg, records
from helpers.dataset_trees import (
    PETS,
    TREES,
    Tree,
    build_dtd,
    build_fgvc_aircraft,
    build_imagenet,
    build_oxford_pets,
    write_images,
)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TREE_IDS = [t.name for t in TREES]
TRAINABLE = [t for t in TREES if not t.test_only]
WITH_SPLIT_FILE = [t for t in TREES if t.split_file]
WITH_CLASS_FOLDERS = [t for t in TREES if t.class_folders]
TEST_ONLY = [t for t in TREES if t.test_only]


def per_class(items: List[Datum]) -> Dict[int, int]:
    return dict(Counter(item.label for item in items))


def splits_of(ds):
    return {"train": ds.train_x, "val": ds.val, "test": ds.test}


@pytest.fixture
def root(tmp_path):
    return str(tmp_path / "data")


@pytest.fixture(params=TREES, ids=TREE_IDS)
def tree(request, root) -> Tree:
    request.param.build(root)
    return request.param


# ---------------------------------------------------------------- every dataset: classes, labels, counts


def test_registry_and_configs_name_every_dataset():
    for t in TREES:
        cfg = get_cfg_default()
        cfg.merge_from_file(os.path.join(REPO_ROOT, "configs", "datasets", f"{t.config}.yaml"))
        assert cfg.DATASET.NAME == t.name
        assert DATASET_REGISTRY.get(t.name).__name__ == t.name  # Dassl's Registry has get, not `in`
    assert DATASET_REGISTRY.get("DTD").dataset_dir == "dtd"


def test_classnames_labels_and_counts(tree, root):
    ds = load(root, tree.name)
    n = len(tree.classnames)
    assert ds.classnames == tree.classnames
    assert ds.num_classes == n
    for split, items in splits_of(ds).items():
        if tree.test_only and split == "val":
            assert items is None
            continue
        expected = tree.counts["test" if tree.test_only else split]
        assert per_class(items) == {label: expected for label in range(n)}, split
        for item in items:
            assert item.classname == tree.classnames[item.label]
            assert os.path.isfile(item.impath)
            assert not os.path.basename(item.impath).startswith(".")
    if tree.test_only:
        assert records(ds.train_x) == records(ds.test)
    if tree.name == "ImageNet":
        assert ds.val is ds.test


def test_base_and_new_halves(tree, root):
    n = len(tree.classnames)
    m = math.ceil(n / 2)
    full = load(root, tree.name)
    for subsample, names in (("base", tree.classnames[:m]), ("new", tree.classnames[m:])):
        ds = load(root, tree.name, subsample=subsample)
        assert ds.classnames == names
        for split, items in splits_of(ds).items():
            if items is None:
                continue
            expected = tree.counts["test" if tree.test_only else split]
            assert per_class(items) == {label: expected for label in range(len(names))}
            offset = 0 if subsample == "base" else m
            in_half = [r for r in records(splits_of(full)[split]) if (r[1] >= m) == (subsample == "new")]
            assert set(records(items)) == {(path, label - offset, name) for path, label, name in in_half}


def test_missing_dataset_folder_names_it_and_the_readme_section(root):
    os.makedirs(root)
    for t in TREES:
        with pytest.raises(FileNotFoundError) as e:
            load(root, t.name)
        message = str(e.value)
        assert os.path.join(root, t.folder) in message
        assert "Preparing the datasets" in message and "docs/DATASETS.md" in message


def test_empty_data_root_is_an_error():
    with pytest.raises(ValueError, match="DATASET.ROOT"):
        load("", "Caltech101")


# ---------------------------------------------------------------- few-shot and its cache


@pytest.mark.parametrize("tree", TRAINABLE, ids=[t.name for t in TRAINABLE], indirect=True)
def test_fewshot_counts_cache_and_reuse(tree, root, monkeypatch):
    n = len(tree.classnames)
    first = load(root, tree.name, shots=2, seed=3)
    assert per_class(first.train_x) == {label: min(2, tree.counts["train"]) for label in range(n)}
    if tree.name == "ImageNet":
        assert per_class(first.val) == {label: tree.counts["test"] for label in range(n)}
    else:
        assert per_class(first.val) == {label: min(2, tree.counts["val"]) for label in range(n)}
    assert per_class(first.test) == {label: tree.counts["test"] for label in range(n)}

    cache = os.path.join(tree.dataset_dir(root), "split_fewshot", "shot_2-seed_3.json")
    with open(cache, encoding="utf-8") as f:
        cached = json.load(f)
    parts = ["train"] if tree.name == "ImageNet" else ["train", "val"]
    if tree.split_file:  # the cache records which split file it was sampled from
        with open(os.path.join(tree.dataset_dir(root), tree.split_file), "rb") as f:
            assert cached.pop("split_sha256") == first.split_sha256 == hashlib.sha256(f.read()).hexdigest()
    else:
        assert first.split_sha256 == ""
    assert sorted(cached) == parts
    assert all(not os.path.isabs(path) for path, _, _ in cached["train"])
    assert not os.path.exists(cache[: -len(".json")] + ".pkl")

    def no_sampling(*args, **kwargs):
        raise AssertionError("the few-shot cache was not reused")

    monkeypatch.setattr(type(first), "generate_fewshot_dataset", no_sampling)
    random.seed(12345)
    again = DATASET_REGISTRY.get(tree.name)(make_cfg(root, tree.name, shots=2, seed=3))
    assert records(again.train_x) == records(first.train_x)
    assert records(again.val) == records(first.val)

    base = DATASET_REGISTRY.get(tree.name)(make_cfg(root, tree.name, shots=2, seed=3, subsample="base"))
    m = math.ceil(n / 2)
    assert set(records(base.train_x)) == {r for r in records(first.train_x) if r[1] < m}


@pytest.mark.parametrize("tree", TRAINABLE[:3], ids=[t.name for t in TRAINABLE[:3]], indirect=True)
def test_fewshot_picks_depend_on_the_seed(tree, root):
    picks = {seed: set(records(load(root, tree.name, shots=1, seed=seed).train_x)) for seed in range(1, 6)}
    assert len({frozenset(p) for p in picks.values()}) > 1
    assert os.path.isfile(os.path.join(tree.dataset_dir(root), "split_fewshot", "shot_1-seed_5.json"))


@pytest.mark.parametrize("tree", TEST_ONLY, ids=[t.name for t in TEST_ONLY], indirect=True)
def test_test_only_datasets_ignore_num_shots(tree, root):
    ds = load(root, tree.name, shots=1)
    assert per_class(ds.test) == {label: tree.counts["test"] for label in range(len(tree.classnames))}
    assert not os.path.exists(os.path.join(tree.dataset_dir(root), "split_fewshot"))


# ---------------------------------------------------------------- split files


@pytest.mark.parametrize("tree", WITH_SPLIT_FILE, ids=[t.name for t in WITH_SPLIT_FILE], indirect=True)
def test_split_file_is_written_then_read(tree, root):
    split_path = os.path.join(tree.dataset_dir(root), tree.split_file)
    assert not os.path.exists(split_path)
    first = load(root, tree.name, seed=1)
    with open(split_path, encoding="utf-8") as f:
        written = json.load(f)
    prefix = os.path.join(tree.dataset_dir(root), tree.split_prefix)
    for split, items in splits_of(first).items():
        assert [[os.path.join(prefix, p), y, c] for p, y, c in written[split]] == [list(r) for r in records(items)]

    again = load(root, tree.name, seed=2)
    for split in ("train", "val", "test"):
        assert records(splits_of(again)[split]) == records(splits_of(first)[split])

    # A split file prepared elsewhere (CoOp's) is taken as it is: its labels and class names rule.
    written["train"] = list({record[1]: record for record in written["train"]}.values())  # one image per class
    for part in written.values():
        for record in part:
            record[2] = f"named in the split file {record[1]}"
    with open(split_path, "w", encoding="utf-8") as f:
        json.dump(written, f)
    custom = load(root, tree.name)
    assert [r[0] for r in records(custom.train_x)] == [os.path.join(prefix, p) for p, _, _ in written["train"]]
    assert custom.classnames == [f"named in the split file {y}" for y in sorted({y for _, y, _ in written["train"]})]


@pytest.mark.parametrize("tree", WITH_SPLIT_FILE, ids=[t.name for t in WITH_SPLIT_FILE], indirect=True)
def test_split_file_naming_a_missing_image_names_both(tree, root):
    load(root, tree.name)
    split_path = os.path.join(tree.dataset_dir(root), tree.split_file)
    with open(split_path, encoding="utf-8") as f:
        missing_rel = json.load(f)["test"][-1][0]
    missing = os.path.join(tree.dataset_dir(root), tree.split_prefix, missing_rel)
    os.remove(missing)
    with pytest.raises(FileNotFoundError) as e:
        load(root, tree.name)
    assert split_path in str(e.value) and missing in str(e.value)


def test_malformed_split_file_names_the_file_and_entry(root):
    build_dtd(root)
    split_path = os.path.join(root, "dtd", "split_zhou_DescribableTextures.json")
    with open(split_path, "w", encoding="utf-8") as f:
        json.dump({"train": [["banded/banded_0000.jpg", 0]], "val": [], "test": []}, f)
    with pytest.raises(ValueError, match=r"split_zhou_DescribableTextures.json: 'train'\[0\]"):
        load(root, "DescribableTextures")
    with open(split_path, "w", encoding="utf-8") as f:
        f.write("{not json")
    with pytest.raises(ValueError, match="split_zhou_DescribableTextures.json is not valid JSON"):
        load(root, "DescribableTextures")


# ---------------------------------------------------------------- folder listings


@pytest.mark.parametrize("tree", WITH_CLASS_FOLDERS, ids=[t.name for t in WITH_CLASS_FOLDERS], indirect=True)
def test_empty_class_folder_is_reported(tree, root):
    class_root = os.path.join(tree.dataset_dir(root), tree.class_folders)
    victim = os.path.join(class_root, dataset_helpers.list_class_folders(class_root)[-1])
    shutil.rmtree(victim)
    os.makedirs(victim)
    with open(os.path.join(victim, ".DS_Store"), "w") as f:
        f.write("hidden")
    with pytest.raises(ValueError, match="holds no images") as e:
        load(root, tree.name)
    assert victim in str(e.value)


def test_generated_split_follows_coops_draws_on_sorted_listings(root):
    """CoOp's read_and_split_data (drawn from SPLIT_SEED) + Dassl's few-shot sampler (drawn from the
    run's seed), restated on the sorted listing."""
    build_dtd(root)
    ds = load(root, "DescribableTextures", shots=2, seed=7)

    random.seed(split_files.SPLIT_SEED)
    image_dir = os.path.join(root, "dtd", "images")
    train, val = [], []
    for label, category in enumerate(sorted(os.listdir(image_dir))[1:]):  # [1:] skips .DS_Store
        images = sorted(f for f in os.listdir(os.path.join(image_dir, category)) if not f.startswith("."))
        random.shuffle(images)
        train += [(os.path.join(image_dir, category, im), label, category) for im in images[:2]]
        val += [(os.path.join(image_dir, category, im), label, category) for im in images[2:3]]

    def fewshot(items, k):
        by_label = {}
        for item in items:
            by_label.setdefault(item[1], []).append(item)
        return [x for group in by_label.values() for x in (random.sample(group, k) if len(group) >= k else group)]

    random.seed(7)
    assert records(ds.train_x) == fewshot(train, 2)
    assert records(ds.val) == fewshot(val, 2)


def test_trainval_split_follows_coops_draws(root):
    build_oxford_pets(root)
    ds = load(root, "OxfordPets", seed=5)
    random.seed(split_files.SPLIT_SEED)
    expected_train, expected_val = [], []
    for class_id, (breed, _) in enumerate(PETS):
        idxs = list(range(5))
        random.shuffle(idxs)
        paths = [os.path.join(root, "oxford_pets", "images", f"{breed}_{i + 1}.jpg") for i in idxs]
        expected_val += [(paths[0], class_id, breed.lower())]
        expected_train += [(p, class_id, breed.lower()) for p in paths[1:]]
    assert records(ds.train_x) == expected_train
    assert records(ds.val) == expected_val


def test_too_few_images_to_split_names_the_folder(root):
    build_dtd(root)
    folder = os.path.join(root, "dtd", "images", "bumpy")
    for name in sorted(os.listdir(folder))[-3:]:
        os.remove(os.path.join(folder, name))
    with pytest.raises(ValueError, match="too few") as e:
        load(root, "DescribableTextures")
    assert folder in str(e.value)


def test_imagenet_errors_name_the_file_or_folders(root):
    build_imagenet(root)
    base = os.path.join(root, "imagenet")
    write_images(os.path.join(base, "images", "train", "n09999999"), ["x.JPEG"])
    write_images(os.path.join(base, "images", "val", "n09999999"), ["y.JPEG"])
    with pytest.raises(KeyError, match="classnames.txt has no class name") as e:
        load(root, "ImageNet")
    assert "n09999999" in str(e.value)
    shutil.rmtree(os.path.join(base, "images", "val", "n09999999"))
    with pytest.raises(ValueError, match=r"only in train: \['n09999999'\]"):
        load(root, "ImageNet")


def test_annotation_naming_an_unknown_class_is_reported(root):
    build_fgvc_aircraft(root)
    path = os.path.join(root, "fgvc_aircraft", "images_variant_val.txt")
    with open(path, "a", encoding="utf-8") as f:
        f.write("1000001 Concorde\n")
    with pytest.raises(ValueError, match="'Concorde'") as e:
        load(root, "FGVCAircraft")
    assert path in str(e.value)


# ---------------------------------------------------------------- helpers in mutual_prompt.data


def _items(tmp_path, n_classes: int, per_class: int) -> List[Datum]:
    folder = tmp_path / "imgs"
    names = [f"{c}_{i}.jpg" for c in range(n_classes) for i in range(per_class)]
    write_images(str(folder), names)
    return [Datum(impath=str(folder / n), label=int(n[0]), classname=f"class_{n[0]}") for n in names]


def test_subsample_takes_the_first_half_rounded_up_and_relabels(tmp_path):
    items = _items(tmp_path, 5, 1)
    base, other = dataset_helpers.subsample_classes(items, items[::-1], subsample="base")
    assert [(d.label, d.classname) for d in base] == [(0, "class_0"), (1, "class_1"), (2, "class_2")]
    assert sorted(d.label for d in other) == [0, 1, 2]
    (new,) = dataset_helpers.subsample_classes(items, subsample="new")
    assert [(d.label, d.classname) for d in new] == [(0, "class_3"), (1, "class_4")]
    assert dataset_helpers.subsample_classes(items, subsample="all")[0] is items
    with pytest.raises(ValueError, match="SUBSAMPLE_CLASSES"):
        dataset_helpers.subsample_classes(items, subsample="half")


def test_val_fewshot_is_capped_at_four(tmp_path):
    from mutual_prompt.backend import DatasetBase

    train = _items(tmp_path, 2, 10)
    val = train[:]  # the same images serve as a 10-per-class val split
    random.seed(0)
    fewshot_dir = str(tmp_path / "fs")
    dataset = DatasetBase(train_x=train)
    out_train, out_val = fewshot.load_or_create_fewshot(dataset, train, val, num_shots=8, seed=0,
                                                        fewshot_dir=fewshot_dir, path_prefix=str(tmp_path))
    assert per_class(out_train) == {0: 8, 1: 8}
    assert per_class(out_val) == {0: 4, 1: 4}


def test_list_images_keeps_upper_case_extensions_and_skips_hidden_and_other_files(tmp_path):
    write_images(str(tmp_path), ["b.JPEG", "a.jpg", "c.Png"])
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "sub").mkdir()
    assert dataset_helpers.list_images(str(tmp_path)) == ["a.jpg", "b.JPEG", "c.Png"]


# ---------------------------------------------------------------- labels, few-shot counts, halves


DTD_SPLIT = "split_zhou_DescribableTextures.json"


def _edit_dtd_split(root, edit):
    build_dtd(root)
    load(root, "DescribableTextures")  # writes the split file
    split_path = os.path.join(root, "dtd", DTD_SPLIT)
    with open(split_path, encoding="utf-8") as f:
        split = json.load(f)
    edit(split)
    with open(split_path, "w", encoding="utf-8") as f:
        json.dump(split, f)
    return split_path


@pytest.mark.parametrize("subsample", ["all", "base", "new"])
def test_a_label_beyond_the_train_labels_names_the_split_file_and_the_item(root, subsample):
    split_path = _edit_dtd_split(root, lambda split: split["test"][0].__setitem__(1, 57))
    with pytest.raises(ValueError, match=rf"{split_path}: 53 of the 58 classes have no train items \(label\(s\) 5, 6, "
                                         r".*highest label of any split: 57, in the test split: .*banded"):
        load(root, "DescribableTextures", subsample=subsample)


def test_a_negative_label_is_outside_the_classes(root):
    split_path = _edit_dtd_split(root, lambda split: split["val"][0].__setitem__(1, -1))
    with pytest.raises(ValueError, match=rf"{split_path}: the val split holds label -1 .*outside the 5 classes"):
        load(root, "DescribableTextures")


def test_a_class_missing_from_train_names_the_split_file(root):
    def drop_class_1(split):
        split["train"] = [r for r in split["train"] if r[1] != 1]

    split_path = _edit_dtd_split(root, drop_class_1)
    with pytest.raises(ValueError, match=rf"{split_path}: 1 of the \d+ classes have no train items \(label\(s\) 1\)"):
        load(root, "DescribableTextures")


def test_a_stale_fewshot_cache_is_named(root):
    build_dtd(root)
    load(root, "DescribableTextures", shots=1)
    cache = fewshot.fewshot_cache_path(os.path.join(root, "dtd", "split_fewshot"), 1, 1)
    with open(cache, encoding="utf-8") as f:
        data = json.load(f)
    data["train"][0][1] = 57
    with open(cache, "w", encoding="utf-8") as f:
        json.dump(data, f)
    with pytest.raises(ValueError, match=rf"few-shot cache {cache}: .*label 57.* not in the split's train part.*delete"):
        load(root, "DescribableTextures", shots=1)


def test_fewshot_larger_than_a_class_warns_naming_the_class_and_the_count(tmp_path, capsys):
    from mutual_prompt.backend import DatasetBase

    train = _items(tmp_path, 2, 3)[:5]  # class 0: 3 images, class 1: 2
    random.seed(0)
    dataset = DatasetBase(train_x=train)
    out_train, _ = fewshot.load_or_create_fewshot(dataset, train, None, num_shots=3, seed=0,
                                                  fewshot_dir=str(tmp_path / "fs"), path_prefix=str(tmp_path))
    assert per_class(out_train) == {0: 3, 1: 2}  # CoOp's behaviour: all of a smaller class
    out = capsys.readouterr().out
    assert "Warning: class 'class_1' (label 1) has 2 train image(s), fewer than DATASET.NUM_SHOTS 3: using 2" in out
    assert "class_0" not in out.split("Warning")[-1]
    # from the cache
    fewshot.load_or_create_fewshot(dataset, train, None, num_shots=3, seed=0, fewshot_dir=str(tmp_path / "fs"),
                                   path_prefix=str(tmp_path))
    assert "class 'class_1' (label 1) has 2 train image(s)" in capsys.readouterr().out


def test_new_half_of_a_single_class_dataset_is_a_clear_error(tmp_path):
    items = _items(tmp_path, 1, 2)
    with pytest.raises(ValueError, match=r"SUBSAMPLE_CLASSES new: the training split has 1 class"):
        dataset_helpers.subsample_classes(items, subsample="new")
    (base,) = dataset_helpers.subsample_classes(items, subsample="base")
    assert len(base) == 2
