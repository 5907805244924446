"""The run directory: its file names, their reading and writing (atomic, through `atomic`), its lock, and the
checkpoint pair's consistency.

`last.pt` is written before `best.pt`, and a `best.pt` always holds the epoch that `last.pt` names as best once
both are written. A kill between the two writes leaves `last.pt` naming as best its own epoch, whose weights
it holds: resume then rewrites `best.pt` from it. Temporary files are hidden (`.NAME.*.tmp`) and removed
whenever a run starts or resumes in the directory.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import pandas as pd

from .atomic import TEMP_SUFFIX, atomic_write_text
from .checkpoints import atomic_save, load_checkpoint
from .errors import ConfigError, DataError, DivergedError, FileWriteError
from .speed import with_legacy

CONFIG = "config.json"
HISTORY = "history.csv"
METRICS = "metrics.json"
LAST = "last.pt"
BEST = "best.pt"
ERROR = "error.txt"
LOCK = ".lock"
FINE_CURVES = "fine.csv"
#: Marks a run that diverged (`errors.DivergedError`): a result that `suite --resume` keeps, never trains again.
DIVERGED = DivergedError.marker
RUN_FILES = (CONFIG, HISTORY, METRICS, LAST, BEST, ERROR, LOCK, FINE_CURVES, DIVERGED)
TEMP_PATTERN = f".*{TEMP_SUFFIX}"
HISTORY_COLUMNS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "nfe_forward",
                   "nfe_backward", "nfe_eval", "reg_kinetic", "reg_jacobian", "images_per_s", "solver"]
#: `fine.csv`: one row per training batch; the validation subset's numbers on the rows after which it was evaluated.
FINE_COLUMNS = ["epoch", "batch", "step", "train_loss", "val_loss", "val_acc"]


def finite_json(value: Any) -> Any:
    """`value` with every non-finite float replaced by None (JSON has no Infinity or NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value


def write_json(data: dict[str, Any], path: Path) -> None:
    """Strict JSON (non-finite numbers become null), written atomically."""
    atomic_write_text(json.dumps(finite_json(data), indent=2, default=str, allow_nan=False) + "\n", path)


def read_json(path: Path, what: str = "file") -> dict[str, Any]:
    """A JSON object from `path`; DataError naming the file when it is missing or not a JSON object."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DataError(f"{what} {str(path)!r} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{what} {str(path)!r} is unreadable or not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DataError(f"{what} {str(path)!r} does not hold a JSON object")
    return data


def write_error(run_dir: Path, message: str, marker: str | None = None) -> None:
    """Best effort: the message in `error.txt`, and in `marker` too when the error marks the run (`DIVERGED`); a
    full disk may refuse even that."""
    try:
        for name in (ERROR, marker) if marker else (ERROR,):
            atomic_write_text(f"{message}\n", run_dir / name)
    except (OSError, FileWriteError):
        pass


def remove_temp_files(run_dir: Path) -> list[Path]:
    """Remove the temporary files a killed run left behind; returns them."""
    stale = sorted(run_dir.glob(TEMP_PATTERN)) if run_dir.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def is_restartable(run_dir: Path) -> bool:
    """A directory of a run that failed or was killed before its first checkpoint: nothing in it is worth keeping."""
    if not run_dir.is_dir():
        return False
    names = {p.name for p in run_dir.iterdir()}
    if LAST in names or METRICS in names:
        return False
    return all(name in RUN_FILES or (name.startswith(".") and name.endswith(TEMP_SUFFIX)) for name in names)


def clear_for_restart(run_dir: Path) -> None:
    """Empty a restartable run directory (its lock file stays)."""
    for path in run_dir.iterdir():
        if path.name != LOCK:
            path.unlink()


def lock(run_dir: Path, what: str = "run") -> IO:
    """Hold an exclusive lock on a run (or suite) directory for this process; ConfigError if another holds it."""
    handle = open(run_dir / LOCK, "a")  # noqa: SIM115 (kept open while the run lasts)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise ConfigError("out", str(run_dir), f"a {what} directory no other process is using (another {what} "
                          "holds its lock right now)") from None
    return handle


def unlock(handle: IO, run_dir: Path) -> None:
    """Release the run directory's lock and remove its lock file."""
    (run_dir / LOCK).unlink(missing_ok=True)
    handle.close()


def save_checkpoints(checkpoint: dict[str, Any], run_dir: Path, improved: bool) -> None:
    """`last.pt`, then `best.pt` when this epoch is the best so far (see the module docstring)."""
    atomic_save(checkpoint, run_dir / LAST)
    if improved:
        atomic_save(checkpoint, run_dir / BEST)


def load_last(run_dir: Path, repair: bool = True) -> dict[str, Any]:
    """`last.pt` with `best.pt` checked against it (and, with `repair`, rewritten from it after a kill between
    the two writes)."""
    last = load_checkpoint(run_dir / LAST, parameter="resume")
    best_epoch = last.get("best_epoch", 0)
    if best_epoch == 0:
        return last
    best_path = run_dir / BEST
    best = load_checkpoint(best_path, parameter="resume") if best_path.is_file() else {}
    if best.get("epoch") == best_epoch:
        return last
    if last.get("epoch") == best_epoch:  # killed after writing last.pt, before best.pt
        if repair:
            atomic_save(last, best_path)
        return last
    raise DataError(f"{str(best_path)!r} holds epoch {best.get('epoch')} but {str(run_dir / LAST)!r} names epoch "
                    f"{best_epoch} as best: the checkpoints do not belong together (copied or edited by hand?); "
                    "start the run again in a new directory")


def load_init_from(source: Path) -> dict[str, Any]:
    """The checkpoint `init_from` names: a file, or a run directory's best epoch (from `last.pt` when a kill left
    `best.pt` one improvement behind)."""
    if source.is_dir() and not (source / LAST).is_file():
        if not (source / BEST).is_file():
            raise ConfigError("init_from", str(source), f"a run directory holding {BEST} or {LAST}")
        return load_checkpoint(source / BEST, parameter="init_from")
    if not source.is_dir():
        return load_checkpoint(source, parameter="init_from")
    last = load_checkpoint(source / LAST, parameter="init_from")
    best = load_checkpoint(source / BEST, parameter="init_from") if (source / BEST).is_file() else {}
    if best and best.get("epoch") == last.get("best_epoch", best.get("epoch")):
        return best
    if last.get("epoch") == last.get("best_epoch"):
        return last
    raise ConfigError("init_from", str(source), f"a run directory whose best.pt (epoch {best.get('epoch')}) is the "
                      f"best epoch its last.pt names ({last.get('best_epoch')})")


def load_best(run_dir: Path, best_epoch: int) -> dict[str, Any]:
    """`best.pt`, checked to hold `best_epoch`."""
    best = load_checkpoint(run_dir / BEST, parameter="out")
    if best.get("epoch") != best_epoch:
        raise DataError(f"{str(run_dir / BEST)!r} holds epoch {best.get('epoch')}, not the best epoch {best_epoch}")
    return best


def saved_config(run_dir: Path) -> dict[str, Any]:
    """The configuration a run was started with: from `last.pt` (authoritative), else `config.json`; one saved
    before a setting was recorded gets what runs used then (`speed.with_legacy`)."""
    if (run_dir / LAST).is_file():
        config = load_checkpoint(run_dir / LAST, parameter="resume").get("config")
        if isinstance(config, dict):
            return with_legacy(config)
    if (run_dir / CONFIG).is_file():
        try:
            return with_legacy(read_json(run_dir / CONFIG, "run configuration"))
        except DataError as exc:
            raise ConfigError("resume", True, f"False: {exc} and there is no last.pt to read it from") from None
    raise ConfigError("resume", True, f"False: {str(run_dir)!r} holds neither last.pt nor config.json")


def read_history(run_dir: Path) -> pd.DataFrame:
    """A run's `history.csv` (pandas 3 parses each float back exactly as written: comparisons are exact)."""
    try:
        return pd.read_csv(run_dir / HISTORY)
    except (OSError, ValueError) as exc:
        raise DataError(f"{str(run_dir / HISTORY)!r} is missing or unreadable ({exc})") from None


def read_fine_curves(run_dir: Path) -> pd.DataFrame:
    """A run's `fine.csv` (an empty frame for a run made without fine curves)."""
    path = run_dir / FINE_CURVES
    return pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=FINE_COLUMNS)


def write_history(history: list[dict[str, Any]], path: Path, columns: list[str] = HISTORY_COLUMNS) -> None:
    """history.csv, one row per epoch (or `fine.csv`, with `FINE_COLUMNS`), replaced atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (repr(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()})
    atomic_write_text(buffer.getvalue(), path)


def claim_run_dir(run_dir: Path, resuming: bool) -> tuple[Any, bool]:
    """Create (or reuse, when restartable) and lock the run directory; returns the lock and whether it was made."""
    created = False
    try:
        if not run_dir.exists():
            run_dir.mkdir(parents=True)
            created = True
    except FileExistsError:
        pass  # another run made it first: the lock decides
    except OSError as exc:
        raise ConfigError("out", str(run_dir), f"a directory that can be created ({exc.strerror})") from None
    handle = lock(run_dir)
    remove_temp_files(run_dir)
    if not resuming:
        if not is_restartable(run_dir):
            unlock(handle, run_dir)
            raise ConfigError("out", str(run_dir), "a directory that does not exist yet (another run has just "
                              "written to it)")
        clear_for_restart(run_dir)
    return handle, created


def epoch_line(record: dict[str, Any], epochs: int) -> str:
    """One line of progress per epoch, for notebooks and logs (where a live bar would be many outputs)."""
    nfe = f", NFE {record['nfe_forward']:.1f}" if record["solver"] != "none" else ""
    return (f"epoch {record['epoch']}/{epochs}: train loss {record['train_loss']:.4f} acc {record['train_acc']:.3f}, "
            f"val loss {record['val_loss']:.4f} acc {record['val_acc']:.3f}{nfe}, {record['seconds']:.1f} s")


def recorded_start(run_dir: Path) -> str | None:
    """When a run was first started, as its `config.json` records it (UTC, ISO 8601); None when it records no
    start (made before starts were recorded) or cannot be read."""
    try:
        recorded = read_json(run_dir / CONFIG, "run configuration") if (run_dir / CONFIG).is_file() else {}
    except DataError:
        return None
    return recorded.get("started_at")


def started_at(run_dir: Path) -> str | None:
    """The start to write into `config.json`: the recorded one for a resumed run (None where it cannot show it:
    started before starts were recorded, or its `config.json` lost), now for a new run. A confirmation's check
    compares it with the commit that declared its tests."""
    recorded = recorded_start(run_dir)
    if recorded is not None or (run_dir / LAST).is_file():
        return recorded
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def machine_of(run_dir: Path) -> str | None:
    """The CPU model and torch's CPU capability a run was made on ("MODEL (CAPABILITY)"), None when unrecorded."""
    if not (run_dir / CONFIG).is_file():
        return None
    versions = read_json(run_dir / CONFIG, "run configuration").get("versions", {})
    return f"{versions['cpu']} ({versions.get('cpu_capability', '?')})" if versions.get("cpu") else None
