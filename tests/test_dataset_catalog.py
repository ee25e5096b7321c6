"""The catalog of real datasets agrees with the dataset configs and the dataset classes' folders."""
import os
import re

import yaml

import datasets  # noqa: F401  (registers every dataset)
from mutual_prompt.backend import DATASET_REGISTRY
from helpers.dataset_trees import TREES
from mutual_prompt.tools.dataset_catalog import ALIASES, CATALOG, RENDERED_DATASETS

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_real_dataset_config_is_in_the_catalog_with_its_registry_name():
    folder = os.path.join(REPO_ROOT, "configs", "datasets")
    names = {n[: -len(".yaml")] for n in os.listdir(folder) if n.endswith(".yaml")} - set(RENDERED_DATASETS)
    assert names == set(CATALOG)
    for name in names:
        with open(os.path.join(folder, f"{name}.yaml")) as f:
            assert yaml.safe_load(f)["DATASET"]["NAME"] == CATALOG[name].registry_name, name
    for name, registry_name in RENDERED_DATASETS.items():
        with open(os.path.join(folder, f"{name}.yaml")) as f:
            assert yaml.safe_load(f)["DATASET"]["NAME"] == registry_name, name


def test_each_entry_names_the_folder_its_dataset_class_reads():
    for entry in CATALOG.values():
        assert DATASET_REGISTRY.get(entry.registry_name).dataset_dir == entry.folder, entry.config_name


def test_each_split_file_and_image_folder_is_the_one_its_dataset_class_reads():
    for entry in CATALOG.values():
        cls = DATASET_REGISTRY.get(entry.registry_name)
        if entry.split_file:
            assert entry.split_file == f"split_zhou_{cls.split_name}.json", entry.config_name
            assert entry.image_folder == cls.image_folder, entry.config_name
        if entry.class_folders and entry.train is None:  # an ImageNet variant: its test set is one folder of classes
            assert entry.class_folders == (("test", cls.image_folder),), entry.config_name
    assert CATALOG["imagenet"].class_folders == (("train", "images/train"), ("test", "images/val"))
    assert ALIASES == {"DTD": "dtd"}
    assert DATASET_REGISTRY.get("DTD").dataset_dir == CATALOG["dtd"].folder


def test_the_generated_trees_use_the_catalogs_split_files_and_image_folders():
    for tree in TREES:
        entry = CATALOG[tree.config]
        assert tree.name == entry.registry_name
        if tree.split_file:
            assert (tree.split_file, tree.split_prefix) == (entry.split_file, entry.image_folder), tree.config


def datasets_md_sections():
    """``## heading`` -> its text, of docs/DATASETS.md."""
    with open(os.path.join(REPO_ROOT, "docs", "DATASETS.md"), encoding="utf-8") as f:
        parts = re.split(r"^## (.+)$", f.read(), flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def test_datasets_md_gives_each_dataset_the_catalogs_download_sources():
    sections = datasets_md_sections()
    for entry in CATALOG.values():
        addresses = set(re.findall(r"<(https?://[^>]+)>", sections[entry.registry_name]))
        assert addresses == set(entry.sources) | ({entry.split_source} if entry.split_file else set()), \
            entry.registry_name
        if entry.split_file:
            assert f"`{entry.split_file}`" in sections[entry.registry_name]
