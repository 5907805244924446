"""Where this process runs: its device, and its rank in a torchrun process group (one process without one)."""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as torch_dist

from .errors import RunDirError

T = TypeVar("T")
#: How long the other ranks wait to hear whether rank 0 claimed the run directory (mkdir and a lock: seconds at
#: most, even on a shared file system); past it they stop with a message instead of waiting for ever.
CLAIM_TIMEOUT_S = 120.0


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


def main_rank_decides(dist: DistInfo, action: Callable[[], T], what: str,
                      timeout_s: float = CLAIM_TIMEOUT_S) -> T | None:
    """Rank 0 runs `action` (the other ranks get None); every rank learns within `timeout_s` whether it worked.

    When it fails, rank 0 raises its own error and every other rank a RunDirError that carries it; when rank 0
    says nothing in time (it died or hangs), the others raise a RunDirError saying so. The answer travels on a
    gloo group of its own with that timeout, so the run's long collectives keep the process group's."""
    if not dist.active:
        return action()
    group = torch_dist.new_group(backend="gloo", timeout=timedelta(seconds=timeout_s))
    try:
        result, error = None, None
        if dist.is_main:
            try:
                result = action()
            except Exception as exc:  # every rank must hear of it, whatever it is
                error = exc
        outcome = [None if error is None else f"{error.__class__.__name__}: {error}"]
        try:
            torch_dist.broadcast_object_list(outcome, src=0, group=group)
            torch_dist.barrier(group=group)  # every rank has the answer before any tears the group down
        except RuntimeError as exc:  # gloo's timeout, or rank 0 gone
            if dist.is_main:
                if error is not None:
                    raise error from None
                raise RunDirError(f"rank 0: the other ranks did not hear within {timeout_s:g} s that it could {what} "
                                  f"({exc.__class__.__name__}: {str(exc)[:200]})") from None
            raise RunDirError(f"rank {dist.rank}: rank 0 did not say within {timeout_s:g} s whether it could "
                              f"{what} ({exc.__class__.__name__}: {str(exc)[:200]}); see rank 0's output") from None
        if error is not None:
            raise error
        if outcome[0] is not None:
            raise RunDirError(f"rank {dist.rank}: rank 0 could not {what}: {outcome[0]}")
        return result
    finally:
        with contextlib.suppress(Exception):
            torch_dist.destroy_process_group(group)
