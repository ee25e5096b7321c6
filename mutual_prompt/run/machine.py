"""What a run runs on: the head of log.txt (backend, versions, device) and the data-loader worker count,
capped by the cores this process may use. Used under both hosts: the built-in runtime calls both when
it builds a trainer and its loaders, our trainers call them under real Dassl. Imports nothing of the
package, so that the runtime can import it while ``mutual_prompt.backend`` is being imported.
"""
import os
import sys
from importlib import metadata
from typing import Optional

import torch

HEADER_TITLE = "** Run environment **"
CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the code that runs
BACKEND_VARIABLE = "MUTUAL_PROMPT_BACKEND"


def package_version(distribution: str, module: str = "") -> str:
    """The installed version of ``distribution`` (else ``module.__version__`` if it is imported), or
    ``"not installed"``."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        version = getattr(sys.modules.get(module or distribution), "__version__", None)
        return str(version) if version else "not installed"


def backend_line(backend: str) -> str:
    """Which host runs (``mutual_prompt.backend.BACKEND``), and why the built-in runtime when it is the one."""
    if backend == "dassl":
        return f"Backend: Dassl {package_version('dassl')}"
    if os.environ.get(BACKEND_VARIABLE, "").strip().lower() == "builtin":
        return f"Backend: built-in runtime ({BACKEND_VARIABLE}=builtin)"
    return "Backend: built-in runtime (Dassl does not import)"


def device_line(device: torch.device) -> str:
    """The device a run computes on: the GPU's name and memory, or the CPU's threads."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        return (f"Device: cuda:{index} {props.name} ({props.total_memory / 2 ** 30:.0f} GiB), "
                f"CUDA {torch.version.cuda}, {torch.cuda.device_count()} visible")
    return f"Device: {device.type}, {torch.get_num_threads()} threads ({usable_cores()} usable cores)"


def run_header(backend: str, device: torch.device) -> str:
    """The block at the head of a run's log: the backend (``"dassl"`` or ``"builtin"``), the versions of
    what computes, the device."""
    versions = ", ".join([
        f"mutual-prompt {package_version('mutual-prompt', 'mutual_prompt')} ({CHECKOUT})",
        f"torch {torch.__version__}",
        f"torchvision {package_version('torchvision')}",
        f"clip-anytorch {package_version('clip-anytorch')}",
        f"Python {sys.version.split()[0]}",
    ])
    return "\n".join([HEADER_TITLE, backend_line(backend), f"Versions: {versions}", device_line(device)])


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. under taskset or a cgroup cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no sched_getaffinity (macOS, Windows)
        return os.cpu_count() or 1


def capped_num_workers(requested: int) -> Optional[int]:
    """The worker count to use instead of ``requested`` when it exceeds the usable cores, else None.

    More loader processes than cores only compete with each other and with the main process (PyTorch
    warns about it); 0 (load in the main process) is kept."""
    cores = usable_cores()
    return cores if requested > cores else None


def cap_num_workers(cfg) -> None:
    """Lower ``cfg.DATALOADER.NUM_WORKERS`` to the usable cores, with one printed line saying so.

    Call before the data loaders are built; a frozen config stays frozen."""
    requested = cfg.DATALOADER.NUM_WORKERS
    if not isinstance(requested, int):
        return  # the loader's own check names the bad value
    capped = capped_num_workers(requested)
    if capped is None:
        return
    frozen = cfg.is_frozen()
    cfg.defrost()
    cfg.DATALOADER.NUM_WORKERS = capped
    if frozen:
        cfg.freeze()
    print(f"DATALOADER.NUM_WORKERS {requested} -> {capped}: this process may use {capped} CPU cores")


def start_under_dassl(backend: str, device: torch.device, cfg) -> None:
    """Under real Dassl, what the built-in runtime does itself for every trainer before the loaders are
    built: print the run's header and cap the worker count. Our trainers call it in ``build_data_loader``."""
    if backend == "dassl":
        print(run_header(backend, device))
        cap_num_workers(cfg)
