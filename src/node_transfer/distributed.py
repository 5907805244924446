"""Where this process runs: its device, and its rank in a torchrun process group (one process without one)."""

from __future__ import annotations

import contextlib
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
    return torch.device("cpu")


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
