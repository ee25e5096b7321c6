"""``DataManager``: the dataset, its transforms and its loaders, with Dassl's interface.

Batches are Dassl's dicts (``img``, ``label``, ``domain``, ``impath``, ``index``). Beyond Dassl:
with ``SEED >= 0`` the training order of each epoch depends only on (SEED, epoch); under
``torch.distributed`` the training loader uses ``DistributedSampler`` and the val/test loaders give
every rank a disjoint share of the items, without padding, so summed counts are exact.
"""
import random
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from tabulate import tabulate
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from ...run.machine import cap_num_workers
from .. import distributed
from ..utils import read_image
from .datasets import build_dataset
from .samplers import build_eval_sampler, build_train_sampler
from .transforms import build_transform

Transform = Callable[[Any], Any]


def distributed_rank_and_world_size() -> Tuple[int, int]:
    """(rank, world size) of the initialised process group, or (0, 1) without one."""
    return distributed.rank(), distributed.world_size()


def seed_worker(rank: int, worker_id: int) -> None:
    """Reseed a loader worker's torch, numpy and ``random`` generators from its torch seed and rank.

    Torch gives worker ``w`` the seed base + w, with the base drawn from the main process's torch
    generator (seeded from SEED and restored on resume), so the seeds repeat run to run; mixing in
    the rank keeps the ranks of a distributed run from drawing the same augmentations.
    """
    state = np.random.SeedSequence([torch.initial_seed(), rank]).generate_state(2, dtype=np.uint32)
    seed = int(state[0]) << 32 | int(state[1])
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(state)


class DatasetWrapper(TorchDataset):
    """Reads a ``Datum``'s image and applies the transform, returning Dassl's item dict."""

    def __init__(self, data_source: Sequence, transform: Transform) -> None:
        self.data_source = data_source
        self.transform = transform

    def __len__(self) -> int:
        return len(self.data_source)

    def __getitem__(self, idx: int) -> Dict[str, Any]:
        item = self.data_source[idx]
        return {"label": item.label, "domain": item.domain, "impath": item.impath, "index": idx,
                "img": self.transform(read_image(item.impath))}


def build_data_loader(cfg, sampler_type: str, data_source: Sequence, batch_size: int, tfm: Transform,
                      is_train: bool) -> DataLoader:
    """A loader over ``data_source``; training loaders drop the last incomplete batch when a full one
    exists, as Dassl."""
    if not data_source:
        raise ValueError("Cannot build a data loader: data_source is empty")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"Batch size must be a positive integer, got {batch_size!r}")
    rank, world_size = distributed_rank_and_world_size()
    if is_train:
        sampler = build_train_sampler(sampler_type, len(data_source), cfg.SEED, rank=rank, world_size=world_size)
    else:
        sampler = build_eval_sampler(sampler_type, len(data_source), rank=rank, world_size=world_size)
    num_workers = cfg.DATALOADER.NUM_WORKERS
    if not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"DATALOADER.NUM_WORKERS must be an integer >= 0, got {num_workers!r}")
    return DataLoader(
        DatasetWrapper(data_source, tfm),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=is_train and len(sampler) >= batch_size,
        pin_memory=torch.cuda.is_available() and cfg.USE_CUDA,
        worker_init_fn=partial(seed_worker, rank) if num_workers > 0 else None,
    )


class DataManager:
    """Builds the dataset named by ``DATASET.NAME`` and its train_x / val / test loaders.

    A dataset's unlabelled split (``train_u``) is label-checked and counted in the summary, but no
    loader reads it: ``TrainerX``, the one training loop of this runtime, trains on train_x only, as
    Dassl's ``TrainerX`` does.
    """

    def __init__(self, cfg) -> None:
        # Imported here: mutual_prompt.data imports the backend, which imports this module.
        from ...data.labels import check_labels

        cap_num_workers(cfg)
        dataset = build_dataset(cfg)
        split_path = getattr(dataset, "split_path", "")
        check_labels(
            {"train_x": dataset.train_x, "train_u": dataset.train_u, "val": dataset.val, "test": dataset.test},
            dataset.num_classes,
            f"dataset {cfg.DATASET.NAME}" + (f" (split file {split_path})" if split_path else ""),
            train_part="train_x",
        )
        tfm_train = build_transform(cfg, is_train=True)
        tfm_test = build_transform(cfg, is_train=False)
        self.train_loader_x = build_data_loader(
            cfg,
            sampler_type=cfg.DATALOADER.TRAIN_X.SAMPLER,
            data_source=dataset.train_x,
            batch_size=cfg.DATALOADER.TRAIN_X.BATCH_SIZE,
            tfm=tfm_train,
            is_train=True,
        )
        self.val_loader: Optional[DataLoader] = None
        if dataset.val:
            self.val_loader = self._eval_loader(cfg, dataset.val, tfm_test, "val")
        self.test_loader = self._eval_loader(cfg, dataset.test, tfm_test, "test")

        self._num_classes = dataset.num_classes
        self._num_source_domains = len(cfg.DATASET.SOURCE_DOMAINS)
        self._lab2cname = dataset.lab2cname
        self.dataset = dataset

        if cfg.VERBOSE:
            self.show_dataset_summary(cfg)

    @staticmethod
    def _eval_loader(cfg, data_source: Sequence, tfm: Transform, split: str) -> DataLoader:
        if not data_source:
            raise ValueError(f"The {split} split of dataset {cfg.DATASET.NAME} is empty")
        return build_data_loader(cfg, sampler_type=cfg.DATALOADER.TEST.SAMPLER, data_source=data_source,
                                 batch_size=cfg.DATALOADER.TEST.BATCH_SIZE, tfm=tfm, is_train=False)

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def num_source_domains(self) -> int:
        return self._num_source_domains

    @property
    def lab2cname(self) -> Dict[int, str]:
        return self._lab2cname

    def show_dataset_summary(self, cfg) -> None:
        """Print Dassl's summary table: dataset, domains and the size of each split."""
        table: List[List[Any]] = [["Dataset", cfg.DATASET.NAME]]
        if cfg.DATASET.SOURCE_DOMAINS:
            table.append(["Source", cfg.DATASET.SOURCE_DOMAINS])
        if cfg.DATASET.TARGET_DOMAINS:
            table.append(["Target", cfg.DATASET.TARGET_DOMAINS])
        table.append(["# classes", f"{self.num_classes:,}"])
        table.append(["# train_x", f"{len(self.dataset.train_x):,}"])
        if self.dataset.train_u:
            table.append(["# train_u", f"{len(self.dataset.train_u):,}"])
        if self.dataset.val:
            table.append(["# val", f"{len(self.dataset.val):,}"])
        table.append(["# test", f"{len(self.dataset.test):,}"])
        print(tabulate(table))
