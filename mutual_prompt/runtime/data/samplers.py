"""Index samplers for the loaders: a seeded per-epoch shuffle, and rank shards for evaluation."""
from typing import Iterator, List

import numpy as np
import torch
from torch.utils.data import DistributedSampler, RandomSampler, Sampler, SequentialSampler

SUPPORTED_SAMPLERS = ("RandomSampler", "SequentialSampler")

# Dassl's samplers that this runtime does not implement.
DASSL_ONLY_SAMPLERS = ("RandomDomainSampler", "SeqDomainSampler", "RandomClassSampler")

# Part of the entropy of every seeded training order: another value gives every seeded run another order.
ORDER_TAG = 0


class SeededRandomSampler(Sampler[int]):
    """A random permutation of ``range(data_len)`` that depends only on (seed, epoch).

    The order of epoch ``e`` is the same in every run and after a resume, whatever else has used the
    global random generators. ``set_epoch(e)`` selects the epoch (as ``DistributedSampler``); without
    it, each new iteration moves on to the next epoch.
    """

    def __init__(self, data_len: int, seed: int) -> None:
        if data_len < 1:
            raise ValueError(f"Cannot sample from an empty data source (length {data_len})")
        if seed < 0:
            raise ValueError(f"SeededRandomSampler needs a seed >= 0, got {seed}")
        self.data_len = data_len
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def permutation(self, epoch: int) -> List[int]:
        entropy = np.random.SeedSequence([self.seed, ORDER_TAG, epoch]).generate_state(2, dtype=np.uint32)
        generator = torch.Generator()
        generator.manual_seed(int(entropy[0]) << 32 | int(entropy[1]))
        return torch.randperm(self.data_len, generator=generator).tolist()

    def __iter__(self) -> Iterator[int]:
        order = self.permutation(self.epoch)
        self.epoch += 1
        return iter(order)

    def __len__(self) -> int:
        return self.data_len


class ShardSampler(Sampler[int]):
    """Rank ``rank``'s share of ``range(dataset_len)``: indices rank, rank + world_size, ...

    The shards of all ranks are disjoint and together cover every index exactly once (no padding,
    unlike ``DistributedSampler``), so counts summed over ranks are exact.
    """

    def __init__(self, dataset_len: int, rank: int, world_size: int) -> None:
        if world_size < 1:
            raise ValueError(f"world_size must be >= 1, got {world_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        if dataset_len < 0:
            raise ValueError(f"dataset_len must be >= 0, got {dataset_len}")
        self.dataset_len = dataset_len
        self.rank = rank
        self.world_size = world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.dataset_len, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.dataset_len, self.world_size))


def check_sampler_name(sampler_type: str, key: str) -> None:
    """``ValueError`` naming ``key`` and ``sampler_type`` unless this runtime implements the sampler."""
    if sampler_type in SUPPORTED_SAMPLERS:
        return
    hint = " (Dassl's; install Dassl.pytorch to use it)" if sampler_type in DASSL_ONLY_SAMPLERS else ""
    raise ValueError(
        f"{key} '{sampler_type}' is not implemented by the built-in runtime{hint}; "
        f"expected one of: {', '.join(SUPPORTED_SAMPLERS)}"
    )


def build_train_sampler(sampler_type: str, data_len: int, seed: int, rank: int = 0, world_size: int = 1) -> Sampler:
    """The sampler of a training loader.

    Single process: ``SeededRandomSampler`` when ``seed >= 0``, else torch's ``RandomSampler``; or
    ``SequentialSampler``. Several processes: ``DistributedSampler`` (shuffled for RandomSampler,
    seeded with ``max(seed, 0)``), so each rank takes its own part of every epoch.
    """
    check_sampler_name(sampler_type, "DATALOADER.TRAIN_X.SAMPLER")
    shuffle = sampler_type == "RandomSampler"
    if world_size > 1:
        return DistributedSampler(range(data_len), num_replicas=world_size, rank=rank, shuffle=shuffle,
                                  seed=max(seed, 0))
    if not shuffle:
        return SequentialSampler(range(data_len))
    if seed >= 0:
        return SeededRandomSampler(data_len, seed)
    return RandomSampler(range(data_len))


def build_eval_sampler(sampler_type: str, data_len: int, rank: int = 0, world_size: int = 1) -> Sampler:
    """The sampler of a val/test loader: the dataset in order, or this rank's ``ShardSampler`` share."""
    check_sampler_name(sampler_type, "DATALOADER.TEST.SAMPLER")
    if world_size > 1:
        return ShardSampler(data_len, rank, world_size)
    if sampler_type == "RandomSampler":
        return RandomSampler(range(data_len))
    return SequentialSampler(range(data_len))
