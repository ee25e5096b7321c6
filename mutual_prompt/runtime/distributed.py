"""PyTorch DDP under ``torchrun``: process group set-up and the rank helpers the trainer uses."""
import atexit
import os

import torch
import torch.distributed as dist


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1


def init_distributed(use_cuda: bool) -> torch.device:
    """Join the process group (nccl on CUDA, gloo on the CPU) and return this process's device."""
    cuda = use_cuda and torch.cuda.is_available()
    if cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if launched_by_torchrun() and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
        # Leave the group before the interpreter exits: gloo's threads abort a process that exits
        # while they are still running ("terminate called without an active exception").
        atexit.register(destroy_distributed)
    return device


def destroy_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()
