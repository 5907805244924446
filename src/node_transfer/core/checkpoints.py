"""Checkpoints written atomically (`atomic`: temp file, fsync, rename) and loaded with `weights_only=True`."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from .atomic import atomic_write
from .errors import ConfigError


def atomic_save(obj: Any, path: str | Path) -> None:
    """Save so that a kill or a full disk at any moment leaves either the old file or the new one, never a torn
    one (`atomic.atomic_write`; FileWriteError when the disk refuses)."""
    import torch  # here, not at the top: rundir (and the analysis reading run files through it) stays torch-free

    atomic_write(path, lambda handle: torch.save(obj, handle))


def load_checkpoint(path: str | Path, parameter: str = "init_from") -> dict[str, Any]:
    """Load one of our checkpoint files (tensors and plain data only: no pickled code is executed); a run
    directory's checkpoints are read through `rundir`."""
    import torch

    path = Path(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower() or "weights_only" in str(exc):
            raise ConfigError(parameter, str(path), "a plain weights file: this file is refused because it holds "
                              "pickled Python objects beyond tensors and plain data, which could run code when "
                              "loaded (node-transfer never loads such files)") from None
        raise ConfigError(parameter, str(path), f"a readable node-transfer checkpoint (it is corrupt or not a "
                          f"torch file: {str(exc)[:200]})") from None
    except Exception as exc:  # unpickling errors come in many types
        raise ConfigError(parameter, str(path), f"a readable node-transfer checkpoint (it is corrupt or not a "
                          f"torch file: {exc.__class__.__name__}: {str(exc)[:200]})") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
        raise ConfigError(parameter, str(path), "a node-transfer checkpoint (a dict with a 'model' state dict)")
    bad = next((k for k, v in checkpoint["model"].items() if not isinstance(k, str) or not torch.is_tensor(v)),
               None)
    if bad is not None:
        raise ConfigError(parameter, str(path), f"a checkpoint whose 'model' holds only tensors (entry {bad!r} "
                          "is not a tensor)")
    return checkpoint
