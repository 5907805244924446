"""What backpropagation keeps alive: the bytes of the tensors autograd saves for the backward pass.

Direct backpropagation through a solver saves the intermediate states of every step, so this grows with NFE;
the adjoint saves none of them. Device-independent and exact, unlike a process's peak memory.
"""

from __future__ import annotations

import resource
from types import TracebackType

import torch


class SavedTensors:
    """Context manager recording each distinct storage autograd saves while it is active.

    >>> with SavedTensors() as saved:
    ...     loss = model(x).sum()
    >>> saved.megabytes  # MB of 2**20 bytes
    """

    def __init__(self) -> None:
        self.storages: dict[int, int] = {}
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda tensor: tensor)

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        try:
            storage = tensor.untyped_storage()
            self.storages[storage.data_ptr()] = storage.nbytes()
        except (RuntimeError, NotImplementedError):  # tensors without a plain storage (e.g. some subclasses)
            self.storages[id(tensor)] = tensor.numel() * tensor.element_size()
        return tensor

    def __enter__(self) -> SavedTensors:
        self._hooks.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._hooks.__exit__(kind, error, traceback)

    @property
    def megabytes(self) -> float:
        return sum(self.storages.values()) / 2**20


def peak_memory_mb(device: torch.device) -> float:
    """Peak CUDA memory allocated, or the process's peak resident set size on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
