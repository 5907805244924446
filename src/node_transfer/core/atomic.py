"""Files written atomically: a temporary file beside the target, fsynced, renamed over it, its folder fsynced.

The one writer of every file the package leaves behind (checkpoints, run and suite metadata, histories, the
feature cache, reports): a kill or a full disk at any moment leaves the old file or the new one, never a torn one
and no temporary file. A write that fails raises `FileWriteError` naming the file and the cause ("No space left on
device" for a full disk), which the command line reports with exit code 1.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from .errors import FileWriteError
from .signals import signals_deferred

#: Temporary files are hidden and end so: `.NAME.XXXXXXXX.tmp` (removed when a run starts or resumes).
TEMP_SUFFIX = ".tmp"


def os_error_in(exc: BaseException) -> OSError | None:
    """The OSError that caused `exc` (itself, or one in its cause/context chain), else None: torch's zip writer
    answers a failed write with a RuntimeError raised while the OSError is being handled."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def write_failure(path: Path, cause: OSError, existed: bool) -> FileWriteError:
    """The error for a file that could not be written: its path, the cause in words, what is kept."""
    # the system's words: "No space left on device" for a full disk (ENOSPC)
    reason = cause.strerror or (os.strerror(cause.errno) if cause.errno else str(cause))
    kept = f"the previous {path.name} is kept" if existed else "nothing was written"
    return FileWriteError(f"cannot write {path}: {reason} ({kept})")


def fsync_folder(folder: Path) -> None:
    """Make a rename inside `folder` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Call `write(handle)` on a temporary binary file beside `path`, then put it in `path`'s place atomically;
    FileWriteError (the old file kept, the temporary one removed) when the disk refuses."""
    path = Path(path)
    with signals_deferred():
        existed = path.exists()
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(fd, 0o666 & ~umask)  # as open() would make it (mkstemp's files are private)
            with os.fdopen(fd, "wb") as handle:
                write(handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
            fsync_folder(path.parent)
        except BaseException as exc:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            cause = os_error_in(exc) if isinstance(exc, Exception) else None  # not for a KeyboardInterrupt
            if cause is not None and not isinstance(exc, FileWriteError):
                raise write_failure(path, cause, existed) from None
            raise


def atomic_write_text(text: str, path: str | Path) -> None:
    """Write a text file (UTF-8) atomically (see `atomic_write`)."""
    atomic_write(path, lambda handle: handle.write(text.encode()))
