"""``DataManager``: the dataset, its transforms and its four loaders, with Dassl's interface.

Batches are Dassl's dicts (``img``, ``label``, ``domain``, ``impath``, ``index``). Beyond Dassl:
with ``SEED >= 0`` the training order of each epoch depends only on (SEED, epoch); under
``torch.distributed`` the training loaders use ``DistributedSampler`` and the val/test loaders give
every rank a disjoint share of the items, without padding, so summed counts are exact.
"""
import random
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from tabulate import tabulate
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from .. import distributed
from ..utils import read_image
from .datasets import build_dataset
from .samplers import build_eval_sampler, build_train_sampler
from .transforms import build_transform, no_augmentation_transform

TRAIN_X_STREAM = 0
TRAIN_U_STREAM = 1

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
    """Reads a ``Datum``'s image and applies the transform(s), returning Dassl's item dict.

    ``transform`` may be a list of transforms (keys ``img``, ``img2``, ...); during training
    ``DATALOADER.K_TRANSFORMS`` > 1 gives a list of K augmented views per key; ``RETURN_IMG0`` adds
    ``img0``, the image resized to ``INPUT.SIZE`` without augmentation. Without a transform
    (``INPUT.NO_TRANSFORM``) ``img`` is that same unaugmented tensor, so batches still collate.
    """

    def __init__(self, cfg, data_source: Sequence, transform: Union[None, Transform, Sequence[Transform]] = None,
                 is_train: bool = False) -> None:
        self.cfg = cfg
        self.data_source = data_source
        self.transform = transform
        self.is_train = is_train
        # Augmenting an image K > 1 times is only allowed during training, as in Dassl.
        self.k_tfm = cfg.DATALOADER.K_TRANSFORMS if is_train else 1
        self.return_img0 = cfg.DATALOADER.RETURN_IMG0
        if not isinstance(self.k_tfm, int) or self.k_tfm < 1:
            raise ValueError(f"DATALOADER.K_TRANSFORMS must be an integer >= 1, got {self.k_tfm!r}")
        if self.k_tfm > 1 and transform is None:
            raise ValueError(
                f"DATALOADER.K_TRANSFORMS is {self.k_tfm}, but there is no transform to apply "
                "(INPUT.NO_TRANSFORM is set)"
            )
        self.to_tensor = no_augmentation_transform(cfg)

    def __len__(self) -> int:
        return len(self.data_source)

    def __getitem__(self, idx: int) -> Dict[str, Any]:
        item = self.data_source[idx]
        output: Dict[str, Any] = {"label": item.label, "domain": item.domain, "impath": item.impath, "index": idx}
        img0 = read_image(item.impath)
        if self.transform is None:
            output["img"] = self.to_tensor(img0)
        elif isinstance(self.transform, (list, tuple)):
            for i, tfm in enumerate(self.transform):
                output["img" if i == 0 else f"img{i + 1}"] = self._transform_image(tfm, img0)
        else:
            output["img"] = self._transform_image(self.transform, img0)
        if self.return_img0:
            output["img0"] = self.to_tensor(img0)
        return output

    def _transform_image(self, tfm: Transform, img0: Any) -> Any:
        views = [tfm(img0) for _ in range(self.k_tfm)]
        return views[0] if len(views) == 1 else views


def build_data_loader(
    cfg,
    sampler_type: str = "SequentialSampler",
    data_source: Optional[Sequence] = None,
    batch_size: int = 64,
    n_domain: int = 0,
    n_ins: int = 2,
    tfm: Union[None, Transform, Sequence[Transform]] = None,
    is_train: bool = True,
    dataset_wrapper: Optional[type] = None,
    stream: int = TRAIN_X_STREAM,
    sampler_key: str = "DATALOADER.TEST.SAMPLER",
) -> DataLoader:
    """A loader over ``data_source`` (Dassl's signature; ``n_domain``/``n_ins`` only matter for
    Dassl's domain and class samplers, which this runtime does not provide).

    ``stream`` separates the shuffles of loaders with the same seed; ``sampler_key`` names the config
    key in errors. Training loaders drop the last incomplete batch when a full one exists, as Dassl.
    """
    if not data_source:
        raise ValueError("Cannot build a data loader: data_source is empty")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"Batch size must be a positive integer, got {batch_size!r}")
    rank, world_size = distributed_rank_and_world_size()
    if is_train:
        sampler = build_train_sampler(sampler_type, len(data_source), cfg.SEED, stream=stream, rank=rank,
                                      world_size=world_size, key=sampler_key)
    else:
        sampler = build_eval_sampler(sampler_type, len(data_source), rank=rank, world_size=world_size,
                                     key=sampler_key)
    wrapper = DatasetWrapper if dataset_wrapper is None else dataset_wrapper
    num_workers = cfg.DATALOADER.NUM_WORKERS
    if not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"DATALOADER.NUM_WORKERS must be an integer >= 0, got {num_workers!r}")
    return DataLoader(
        wrapper(cfg, data_source, transform=tfm, is_train=is_train),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=is_train and len(sampler) >= batch_size,
        pin_memory=torch.cuda.is_available() and cfg.USE_CUDA,
        worker_init_fn=partial(seed_worker, rank) if num_workers > 0 else None,
    )


class DataManager:
    """Builds the dataset named by ``DATASET.NAME`` and its train_x / train_u / val / test loaders."""

    def __init__(self, cfg, custom_tfm_train: Optional[Transform] = None, custom_tfm_test: Optional[Transform] = None,
                 dataset_wrapper: Optional[type] = None) -> None:
        # Imported here: mutual_prompt.data imports the backend, which imports this module.
        from ...data.labels import check_labels

        dataset = build_dataset(cfg)
        split_path = getattr(dataset, "split_path", "")
        check_labels(
            {"train_x": dataset.train_x, "train_u": dataset.train_u, "val": dataset.val, "test": dataset.test},
            dataset.num_classes,
            f"dataset {cfg.DATASET.NAME}" + (f" (split file {split_path})" if split_path else ""),
            train_part="train_x",
        )

        if custom_tfm_train is None:
            tfm_train = build_transform(cfg, is_train=True)
        else:
            print("* Using custom transform for training")
            tfm_train = custom_tfm_train
        if custom_tfm_test is None:
            tfm_test = build_transform(cfg, is_train=False)
        else:
            print("* Using custom transform for testing")
            tfm_test = custom_tfm_test

        loader_cfg = cfg.DATALOADER
        self.train_loader_x = build_data_loader(
            cfg,
            sampler_type=loader_cfg.TRAIN_X.SAMPLER,
            data_source=dataset.train_x,
            batch_size=loader_cfg.TRAIN_X.BATCH_SIZE,
            n_domain=loader_cfg.TRAIN_X.N_DOMAIN,
            n_ins=loader_cfg.TRAIN_X.N_INS,
            tfm=tfm_train,
            is_train=True,
            dataset_wrapper=dataset_wrapper,
            stream=TRAIN_X_STREAM,
            sampler_key="DATALOADER.TRAIN_X.SAMPLER",
        )

        self.train_loader_u: Optional[DataLoader] = None
        if dataset.train_u:
            u_cfg = loader_cfg.TRAIN_X if loader_cfg.TRAIN_U.SAME_AS_X else loader_cfg.TRAIN_U
            u_key = "DATALOADER.TRAIN_X.SAMPLER" if loader_cfg.TRAIN_U.SAME_AS_X else "DATALOADER.TRAIN_U.SAMPLER"
            self.train_loader_u = build_data_loader(
                cfg,
                sampler_type=u_cfg.SAMPLER,
                data_source=dataset.train_u,
                batch_size=u_cfg.BATCH_SIZE,
                n_domain=u_cfg.N_DOMAIN,
                n_ins=u_cfg.N_INS,
                tfm=tfm_train,
                is_train=True,
                dataset_wrapper=dataset_wrapper,
                stream=TRAIN_U_STREAM,
                sampler_key=u_key,
            )

        self.val_loader: Optional[DataLoader] = None
        if dataset.val:
            self.val_loader = self._eval_loader(cfg, dataset.val, tfm_test, dataset_wrapper, "val")
        self.test_loader = self._eval_loader(cfg, dataset.test, tfm_test, dataset_wrapper, "test")

        self._num_classes = dataset.num_classes
        self._num_source_domains = len(cfg.DATASET.SOURCE_DOMAINS)
        self._lab2cname = dataset.lab2cname
        self.dataset = dataset

        if cfg.VERBOSE:
            self.show_dataset_summary(cfg)

    @staticmethod
    def _eval_loader(cfg, data_source: Sequence, tfm: Optional[Transform], dataset_wrapper: Optional[type],
                     split: str) -> DataLoader:
        if not data_source:
            raise ValueError(f"The {split} split of dataset {cfg.DATASET.NAME} is empty")
        return build_data_loader(
            cfg,
            sampler_type=cfg.DATALOADER.TEST.SAMPLER,
            data_source=data_source,
            batch_size=cfg.DATALOADER.TEST.BATCH_SIZE,
            tfm=tfm,
            is_train=False,
            dataset_wrapper=dataset_wrapper,
            sampler_key="DATALOADER.TEST.SAMPLER",
        )

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
