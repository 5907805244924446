"""Where this process runs: its device, and its rank in a torchrun process group (one process without one)."""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist


@dataclass
class DistInfo:
    """Where this process stands in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, dist: DistInfo) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        index = int(os.environ.get("LOCAL_RANK", 0)) if dist.active else 0
        torch.cuda.set_device(index)
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        return torch.device("cuda", index)
    keep_freed_memory()
    return torch.device("cpu")


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def keep_freed_memory() -> bool:
    """Let glibc's malloc reuse freed memory for tensors instead of unmapping it (True if it applied).

    By default a block over 128 KiB (up to an adaptive threshold) is mmap-ed fresh and unmapped on free, so
    activations fault their pages in again at every step. Tensors up to 32 MiB now come from the heap, which
    keeps up to 1 GiB of free memory. bench/allocator.py measures what it changes: elementwise work on a
    256 x 1280 batch, a Lite0 fine-tuning step, a NODE head-only step; results are bit for bit the same.
    A no-op off glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return all(libc.mallopt(option, value) == 1 for option, value in (
        (_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, 1 << 30), (_M_TOP_PAD, 64 << 20)))


def init_distributed(device_name: str) -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1): gloo on the CPU, nccl on CUDA."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    if not torch_dist.is_initialized():
        use_cuda = device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available())
        torch_dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(torch_dist.get_rank(), torch_dist.get_world_size())


@contextlib.contextmanager
def main_rank_first(dist: DistInfo) -> Iterator[None]:
    """Rank 0 runs the block first (downloads data and weights), then the other ranks (reading what it fetched)."""
    if dist.active and not dist.is_main:
        torch_dist.barrier()
    yield
    if dist.active and dist.is_main:
        torch_dist.barrier()
