"""The catalog of real datasets agrees with the dataset configs and the dataset classes' folders."""
import os

import yaml

import datasets  # noqa: F401  (registers every dataset)
from mutual_prompt.backend import DATASET_REGISTRY
from mutual_prompt.tools.dataset_catalog import CATALOG

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RENDERED = {"toy_shapes"}


def test_every_real_dataset_config_is_in_the_catalog_with_its_registry_name():
    folder = os.path.join(REPO_ROOT, "configs", "datasets")
    names = {n[: -len(".yaml")] for n in os.listdir(folder) if n.endswith(".yaml")} - RENDERED
    assert names == set(CATALOG)
    for name in names:
        with open(os.path.join(folder, f"{name}.yaml")) as f:
            assert yaml.safe_load(f)["DATASET"]["NAME"] == CATALOG[name].registry_name, name


def test_each_entry_names_the_folder_its_dataset_class_reads():
    for entry in CATALOG.values():
        assert DATASET_REGISTRY.get(entry.registry_name).dataset_dir == entry.folder, entry.config_name
