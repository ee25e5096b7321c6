"""The built-in runtime's data side: few-shot sampling, transforms, samplers and the DataManager."""
import os
import random

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch.utils.data import DistributedSampler, RandomSampler, SequentialSampler

from mutual_prompt.run import console
from mutual_prompt.runtime.config import get_cfg_default
from mutual_prompt.runtime.data import data_manager as data_manager_module
from mutual_prompt.runtime.data.data_manager import DataManager, seed_worker
from mutual_prompt.runtime.data.datasets import DATASET_REGISTRY, DatasetBase
from mutual_prompt.runtime.data.samplers import SeededRandomSampler, ShardSampler
from mutual_prompt.runtime.data.transforms import AVAILABLE_TRANSFORMS, build_transform
from mutual_prompt.files import listdir_nohidden
from helpers.image_tree import make_datums, make_images

CLASSES = ["ant", "bee", "cicada"]
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def _split_paths(root, split):
    folder = os.path.join(root, split)
    return [
        os.path.join(folder, c, f)
        for c in listdir_nohidden(folder, sort=True)
        for f in listdir_nohidden(os.path.join(folder, c), sort=True)
    ]


@DATASET_REGISTRY.register()
class EngineDataTinyDataset(DatasetBase):
    """Reads ``ROOT/<split>/<class>/*`` for train, val, test and (when present) unlabeled."""

    def __init__(self, cfg):
        root = cfg.DATASET.ROOT
        train_x = make_datums(_split_paths(root, "train"), CLASSES)
        val = make_datums(_split_paths(root, "val"), CLASSES)
        test = make_datums(_split_paths(root, "test"), CLASSES)
        train_u = make_datums(_split_paths(root, "unlabeled"), CLASSES) if os.path.isdir(
            os.path.join(root, "unlabeled")) else None
        super().__init__(train_x=train_x, train_u=train_u, val=val, test=test)


@pytest.fixture(scope="module")
def image_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("tiny"))
    make_images(os.path.join(root, "train"), {c: 4 for c in CLASSES}, size=(40, 30), ext=".jpg", seed=1)
    make_images(os.path.join(root, "val"), {c: 1 for c in CLASSES}, size=(30, 40), ext=".png", seed=2)
    make_images(os.path.join(root, "test"), {c: 3 for c in CLASSES}, size=(36, 36), ext=".png", seed=3)
    return root


def _cfg(root, **overrides):
    cfg = get_cfg_default()
    cfg.DATASET.NAME = "EngineDataTinyDataset"
    cfg.DATASET.ROOT = root
    cfg.INPUT.SIZE = (24, 40)
    cfg.INPUT.TRANSFORMS = ("random_resized_crop", "random_flip", "normalize")
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 5
    cfg.DATALOADER.TEST.BATCH_SIZE = 4
    cfg.SEED = 1
    cfg.VERBOSE = False
    cfg.USE_CUDA = False
    cfg.merge_from_list([x for kv in overrides.items() for x in (kv[0].replace("__", "."), str(kv[1]))])
    return cfg


def _epoch_indices(loader):
    return [i for batch in loader for i in batch["index"].tolist()]


# ----- few-shot sampling -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def uneven_items(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("uneven"))
    return make_datums(make_images(root, {"ant": 6, "bee": 6, "cicada": 2}, size=(8, 8)), CLASSES)


def _fewshot(items, seed, num_shots, repeat=False):
    random.seed(seed)
    return DatasetBase(train_x=items).generate_fewshot_dataset(items, num_shots=num_shots, repeat=repeat)


def test_fewshot_same_seed_same_items(uneven_items):
    first = [d.impath for d in _fewshot(uneven_items, 1, 3)]
    second = [d.impath for d in _fewshot(uneven_items, 1, 3)]
    assert first == second


def test_fewshot_different_seed_different_items(uneven_items):
    picks = {tuple(d.impath for d in _fewshot(uneven_items, seed, 3)) for seed in (1, 2, 3)}
    assert len(picks) > 1


def test_fewshot_takes_k_per_class_from_larger_classes(uneven_items):
    picked = _fewshot(uneven_items, 0, 3)
    per_label = {label: [d for d in picked if d.label == label] for label in range(3)}
    assert [len(per_label[label]) for label in range(3)] == [3, 3, 2]
    for items in per_label.values():
        assert len({d.impath for d in items}) == len(items)


def test_fewshot_small_class_without_repeat_keeps_all_of_it_once(uneven_items):
    picked = [d for d in _fewshot(uneven_items, 0, 4) if d.label == 2]
    assert sorted(d.impath for d in picked) == sorted(d.impath for d in uneven_items if d.label == 2)


def test_fewshot_small_class_with_repeat_gives_exactly_k(uneven_items):
    picked = [d for d in _fewshot(uneven_items, 0, 5, repeat=True) if d.label == 2]
    assert len(picked) == 5
    assert {d.impath for d in picked} <= {d.impath for d in uneven_items if d.label == 2}


def test_fewshot_several_sources_and_no_shots(uneven_items):
    base = DatasetBase(train_x=uneven_items)
    random.seed(0)
    train, val = base.generate_fewshot_dataset(uneven_items, uneven_items, num_shots=1)
    assert len(train) == len(val) == 3
    assert base.generate_fewshot_dataset(uneven_items, num_shots=-1) is uneven_items


# ----- transforms --------------------------------------------------------------------------------


def _picture(width=50, height=30):
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8))


@pytest.mark.parametrize("size", [(24, 40), (224, 224)])
@pytest.mark.parametrize(
    "choices",
    [
        ("random_resized_crop", "random_flip", "normalize"),
        ("random_flip",),
        ("center_crop", "normalize"),
    ],
)
def test_train_transform_output_shape(size, choices):
    cfg = get_cfg_default()
    cfg.INPUT.SIZE = size
    tfm = build_transform(cfg, is_train=True, choices=choices)
    out = tfm(_picture(250, 240))
    assert out.shape == (3, *size) and out.dtype == torch.float32


@pytest.mark.parametrize("size", [(24, 40), (224, 224)])
def test_test_transform_resizes_shorter_side_then_center_crops(size):
    cfg = get_cfg_default()
    cfg.INPUT.SIZE = size
    cfg.INPUT.INTERPOLATION = "bicubic"
    cfg.INPUT.TRANSFORMS = ("random_resized_crop", "random_flip")
    img = _picture(70, 45)
    out = build_transform(cfg, is_train=False)(img)
    resized = TF.resize(img, max(size), interpolation=TF.InterpolationMode.BICUBIC)
    expected = TF.to_tensor(TF.center_crop(resized, list(size)))
    assert out.shape == (3, *size)
    assert torch.equal(out, expected)


def test_test_transform_is_deterministic_and_train_transform_follows_torch_seed():
    cfg = get_cfg_default()
    cfg.INPUT.SIZE = (24, 40)
    cfg.INPUT.TRANSFORMS = ("random_resized_crop", "random_flip")
    train = build_transform(cfg, is_train=True)
    img = _picture()
    torch.manual_seed(5)
    first = [train(img) for _ in range(3)]
    torch.manual_seed(5)
    second = [train(img) for _ in range(3)]
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert not torch.equal(first[0], first[1])
    test = build_transform(cfg, is_train=False)
    assert torch.equal(test(img), test(img))


def test_normalize_values():
    cfg = get_cfg_default()
    cfg.INPUT.SIZE = (16, 16)
    cfg.INPUT.PIXEL_MEAN = CLIP_MEAN
    cfg.INPUT.PIXEL_STD = CLIP_STD
    cfg.INPUT.TRANSFORMS = ("normalize",)
    colour = (255, 0, 128)
    out = build_transform(cfg, is_train=False)(Image.new("RGB", (20, 30), colour))
    expected = [(c / 255.0 - m) / s for c, m, s in zip(colour, CLIP_MEAN, CLIP_STD)]
    for channel in range(3):
        assert torch.allclose(out[channel], torch.full((16, 16), expected[channel]), atol=1e-6)
    unnormalised = build_transform(cfg, is_train=False, choices=())(Image.new("RGB", (20, 30), colour))
    assert torch.allclose(unnormalised[:, 0, 0], torch.tensor([1.0, 0.0, 128 / 255]))


def test_interpolation_is_honoured():
    checker = Image.fromarray(((np.indices((6, 6)).sum(0) % 2) * 255).astype(np.uint8)).convert("RGB")
    values = {}
    for mode in ("nearest", "bilinear"):
        cfg = get_cfg_default()
        cfg.INPUT.SIZE = (16, 16)
        cfg.INPUT.INTERPOLATION = mode
        values[mode] = set(build_transform(cfg, is_train=True, choices=())(checker).unique().tolist())
    assert values["nearest"] == {0.0, 1.0}
    assert len(values["bilinear"]) > 2


def test_rrcrop_scale_reaches_the_transform():
    cfg = get_cfg_default()
    cfg.INPUT.RRCROP_SCALE = (0.5, 1.0)
    steps = build_transform(cfg, is_train=True, choices=("random_resized_crop",)).transforms
    assert tuple(steps[0].scale) == (0.5, 1.0)


def test_unknown_transform_name_lists_known_ones():
    cfg = get_cfg_default()
    with pytest.raises(ValueError) as err:
        build_transform(cfg, choices=("random_flip", "random_rotate"))
    message = str(err.value)
    assert "random_rotate" in message
    assert all(name in message for name in AVAILABLE_TRANSFORMS)
    with pytest.raises(ValueError, match="randaugment.*Dassl"):
        build_transform(cfg, choices=("randaugment",))
    with pytest.raises(ValueError, match="'cutout' is a Dassl transform that the built-in runtime does not implement"):
        build_transform(cfg, choices=("random_flip", "cutout"))


def test_bad_size_and_interpolation_are_named():
    cfg = get_cfg_default()
    cfg.INPUT.SIZE = (224,)
    with pytest.raises(ValueError, match="INPUT.SIZE"):
        build_transform(cfg)
    cfg = get_cfg_default()
    cfg.INPUT.INTERPOLATION = "lanczos"
    with pytest.raises(ValueError, match="INPUT.INTERPOLATION 'lanczos'.*bicubic"):
        build_transform(cfg)


# ----- samplers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
@pytest.mark.parametrize("n", [0, 1, 2, 5, 10, 11])
def test_shard_sampler_partitions_exactly(n, world_size):
    shards = [list(ShardSampler(n, rank, world_size)) for rank in range(world_size)]
    assert sorted(i for shard in shards for i in shard) == list(range(n))
    assert [len(ShardSampler(n, rank, world_size)) for rank in range(world_size)] == [len(s) for s in shards]


def test_shard_sampler_rejects_bad_rank():
    with pytest.raises(ValueError, match="rank"):
        ShardSampler(10, 2, 2)
    with pytest.raises(ValueError, match="world_size"):
        ShardSampler(10, 0, 0)


def test_seeded_random_sampler_order_depends_on_seed_and_epoch_only():
    sampler = SeededRandomSampler(20, seed=3)
    epochs = [list(sampler) for _ in range(3)]  # each iteration moves to the next epoch
    assert all(sorted(order) == list(range(20)) for order in epochs)
    assert epochs[0] != epochs[1] != epochs[2]
    torch.manual_seed(123)  # the global generator plays no part
    fresh = SeededRandomSampler(20, seed=3)
    fresh.set_epoch(2)
    assert list(fresh) == epochs[2]
    fresh.set_epoch(0)
    assert list(fresh) == epochs[0]
    assert list(SeededRandomSampler(20, seed=4)) != epochs[0]


def test_seeded_random_sampler_orders_are_pinned():
    """The orders of the first two epochs under seed 1, as runs (and their resumes) have drawn them."""
    sampler = SeededRandomSampler(12, seed=1)
    assert sampler.permutation(0) == [10, 2, 6, 4, 0, 1, 7, 11, 8, 9, 5, 3]
    assert sampler.permutation(1) == [8, 3, 7, 0, 11, 5, 9, 6, 1, 4, 10, 2]


# ----- DataManager -------------------------------------------------------------------------------


def test_data_manager_loaders_and_attributes(image_root):
    dm = DataManager(_cfg(image_root))
    assert dm.num_classes == 3
    assert dm.lab2cname == {0: "ant", 1: "bee", 2: "cicada"}
    assert dm.num_source_domains == 0
    assert len(dm.dataset.train_x) == 12 and dm.dataset.train_u is None
    assert len(dm.train_loader_x) == 2  # 12 items, batch 5, the incomplete batch dropped
    assert len(dm.val_loader) == 1  # 3 items, batch 4
    assert len(dm.test_loader) == 3  # 9 items, batch 4, nothing dropped
    assert isinstance(dm.train_loader_x.sampler, SeededRandomSampler)
    assert isinstance(dm.test_loader.sampler, SequentialSampler)
    assert _epoch_indices(dm.test_loader) == list(range(9))


def test_data_manager_batch_keys_and_shapes(image_root):
    dm = DataManager(_cfg(image_root))
    batch = next(iter(dm.train_loader_x))
    assert set(batch) == {"img", "label", "domain", "impath", "index"}
    assert batch["img"].shape == (5, 3, 24, 40) and batch["img"].dtype == torch.float32
    assert batch["label"].dtype == torch.int64 and batch["label"].shape == (5,)
    assert batch["domain"].tolist() == [0] * 5
    items = dm.dataset.train_x
    for i, path, label in zip(batch["index"].tolist(), batch["impath"], batch["label"].tolist()):
        assert items[i].impath == path and items[i].label == label
    test_batch = next(iter(dm.test_loader))
    assert test_batch["img"].shape == (4, 3, 24, 40)


def test_train_order_is_the_same_for_the_same_seed(image_root):
    orders = []
    for _ in range(2):
        torch.seed()  # whatever else used the global generator
        loader = DataManager(_cfg(image_root)).train_loader_x
        orders.append([_epoch_indices(loader) for _ in range(2)])
    assert orders[0] == orders[1]
    assert orders[0][0] != orders[0][1]  # a new order each epoch
    other = DataManager(_cfg(image_root, SEED=2)).train_loader_x
    assert _epoch_indices(other) != orders[0][0]


def test_set_epoch_replays_an_epoch(image_root):
    loader = DataManager(_cfg(image_root)).train_loader_x
    first, second = _epoch_indices(loader), _epoch_indices(loader)
    resumed = DataManager(_cfg(image_root)).train_loader_x
    resumed.sampler.set_epoch(1)
    assert _epoch_indices(resumed) == second
    resumed.sampler.set_epoch(0)
    assert _epoch_indices(resumed) == first


def test_negative_seed_shuffles_with_torch_random_sampler(image_root):
    dm = DataManager(_cfg(image_root, SEED=-1, DATALOADER__TRAIN_X__SAMPLER="SequentialSampler"))
    assert _epoch_indices(dm.train_loader_x) == list(range(10))
    dm = DataManager(_cfg(image_root, SEED=-1))
    assert isinstance(dm.train_loader_x.sampler, RandomSampler)


def test_augmentations_repeat_with_workers(image_root):
    cfg = _cfg(image_root, DATALOADER__NUM_WORKERS=1)
    images = []
    for _ in range(2):
        torch.manual_seed(7)
        images.append(torch.cat([b["img"] for b in DataManager(cfg).train_loader_x]))
    assert torch.equal(images[0], images[1])


def test_seed_worker_is_deterministic_and_differs_between_ranks():
    def draws(rank):
        torch.manual_seed(11)  # stands for the seed torch gives the worker
        seed_worker(rank, 0)
        return torch.rand(3).tolist(), random.random(), np.random.rand()

    assert draws(0) == draws(0)
    first, second = draws(0), draws(1)
    assert all(a != b for a, b in zip(first, second))


def test_unreadable_image_error_names_the_path(image_root, tmp_path):
    root = str(tmp_path)
    for split in ("train", "val", "test"):
        make_images(os.path.join(root, split), {c: 1 for c in CLASSES}, size=(8, 8))
    broken = _split_paths(root, "test")[1]
    with open(broken, "wb") as f:
        f.write(b"this is not a JPEG")
    dm = DataManager(_cfg(root))
    with pytest.raises(IOError, match=broken):
        for _ in dm.test_loader:
            pass


def test_unknown_sampler_is_named(image_root):
    with pytest.raises(ValueError, match="DATALOADER.TRAIN_X.SAMPLER 'RandomDomainSampler'.*Dassl"):
        DataManager(_cfg(image_root, DATALOADER__TRAIN_X__SAMPLER="RandomDomainSampler"))
    with pytest.raises(ValueError, match="DATALOADER.TEST.SAMPLER 'Sequential'.*SequentialSampler"):
        DataManager(_cfg(image_root, DATALOADER__TEST__SAMPLER="Sequential"))


def test_an_unlabelled_split_is_counted_but_not_loaded(image_root, tmp_path, capsys):
    root = str(tmp_path)
    for split, n in (("train", 2), ("val", 1), ("test", 1), ("unlabeled", 3)):
        make_images(os.path.join(root, split), {c: n for c in CLASSES}, size=(8, 8))
    dm = DataManager(_cfg(root, DATALOADER__TRAIN_X__BATCH_SIZE=2, VERBOSE=True))
    assert len(dm.dataset.train_u) == 9 and len(dm.train_loader_x) == 3
    assert not hasattr(dm, "train_loader_u")
    assert ["#", "train_u", "9"] in [line.split() for line in capsys.readouterr().out.splitlines()]


def test_summary_table(image_root, capsys):
    cfg = _cfg(image_root, VERBOSE=True)
    console.set_verbose(True)
    try:
        DataManager(cfg)
    finally:
        console.set_verbose(False)
    out = capsys.readouterr().out
    assert "Building transform_train" in out and "Building transform_test" in out
    lines = [line.split() for line in out.splitlines()]
    assert ["Dataset", "EngineDataTinyDataset"] in lines
    assert ["#", "classes", "3"] in lines
    assert ["#", "train_x", "12"] in lines
    assert ["#", "val", "3"] in lines
    assert ["#", "test", "9"] in lines


def test_distributed_loaders(image_root, monkeypatch):
    """Under a (simulated) 2-process group: train_x is a seeded DistributedSampler with the per-GPU
    batch size, and val/test shards cover every item exactly once."""
    per_rank = []
    for rank in range(2):
        monkeypatch.setattr(data_manager_module, "distributed_rank_and_world_size", lambda r=rank: (r, 2))
        per_rank.append(DataManager(_cfg(image_root, DATALOADER__TRAIN_X__BATCH_SIZE=3, SEED=4)))
    train_samplers = [dm.train_loader_x.sampler for dm in per_rank]
    assert all(isinstance(s, DistributedSampler) and s.shuffle and s.seed == 4 for s in train_samplers)
    assert all(len(dm.train_loader_x) == 2 for dm in per_rank)  # 6 items per rank, batch 3
    train_items = [_epoch_indices(dm.train_loader_x) for dm in per_rank]
    assert sorted(train_items[0] + train_items[1]) == list(range(12))
    for dm in per_rank:
        dm.train_loader_x.sampler.set_epoch(1)
    assert [_epoch_indices(dm.train_loader_x) for dm in per_rank] != train_items
    for split in ("test_loader", "val_loader"):
        paths = [p for dm in per_rank for batch in getattr(dm, split) for p in batch["impath"]]
        expected = [d.impath for d in getattr(per_rank[0].dataset, split.split("_")[0])]
        assert sorted(paths) == sorted(expected)
    assert all(isinstance(dm.test_loader.sampler, ShardSampler) for dm in per_rank)


def test_dataset_base_domain_helpers(tmp_path):
    """Dassl's domain interface for user datasets: input-domain checks and grouping by domain."""
    paths = make_images(str(tmp_path), {"cat": 2, "dog": 1})
    items = make_datums(paths[:2], domain=0) + make_datums(paths[2:], classnames=["cat", "dog"], domain=1)

    class TwoDomains(DatasetBase):
        domains = ["photo", "sketch"]

    dataset = TwoDomains(train_x=items)
    dataset.check_input_domains(["photo"], ["sketch"])
    with pytest.raises(ValueError, match=r"must belong to \['photo', 'sketch'\], but got \[art\]"):
        dataset.check_input_domains(["photo"], ["art"])
    with pytest.raises(ValueError, match="DATASET.SOURCE_DOMAINS is empty"):
        dataset.check_input_domains([], ["sketch"])
    with pytest.raises(ValueError, match="DATASET.TARGET_DOMAINS is empty"):
        dataset.check_input_domains(["photo"], [])
    by_domain = dataset.split_dataset_by_domain(items)
    assert {d: [item.impath for item in group] for d, group in by_domain.items()} == {0: paths[:2], 1: paths[2:]}
