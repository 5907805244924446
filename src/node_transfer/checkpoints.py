"""Checkpoints written atomically (temp file, fsync, rename) and loaded with `weights_only=True`."""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from .errors import ConfigError


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGTERM and SIGINT while a file is written, then hand the first one received to its own handler
    (torch's zip writer turns an exception raised inside it into an unrelated RuntimeError)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[tuple[int, Any]] = []
    previous = {signum: signal.signal(signum, lambda *args: received.append(args))
                for signum in (signal.SIGTERM, signal.SIGINT) if signal.getsignal(signum) is not None}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum, frame in received[:1]:
            handler = previous[signum]
            if callable(handler):
                handler(signum, frame)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)


def atomic_save(obj: Any, path: str | Path) -> None:
    """Save so that a kill at any moment leaves either the old file or the new one, never a torn one."""
    path = Path(path)
    with signals_deferred():
        _atomic_save(obj, path)


def _atomic_save(obj: Any, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path, parameter: str = "init_from") -> dict[str, Any]:
    """Load one of our checkpoints (tensors and plain data only: no pickled code is executed)."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise ConfigError(parameter, str(path), "a run directory holding best.pt or last.pt")
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
