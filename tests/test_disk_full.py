"""A full disk on every write path ends in a message naming the file and "No space left on device" and exit code
1, never a traceback; what was written before stays whole and no temporary file is left.

No disk is filled: writes are refused with ENOSPC where the disk would refuse them, while the file is being
written. For checkpoints the refusal reaches torch.save through the file it writes to, so torch answers as it does
on a real full disk (its zip writer raises a RuntimeError while handling the OSError)."""

import errno
import io
import os
from pathlib import Path

import pandas as pd
import pytest
import torch

from node_transfer.app.cli import main
from node_transfer.core import atomic
from node_transfer.core.errors import FileWriteError

RUN = ["--dataset", "digits", "--image-size", "32", "--freeze-backbone", "--cache-features", "--no-augment",
       "--batch-size", "32", "--lr", "0.003", "--head", "fc", "--quiet"]


class FillingDisk(io.RawIOBase):
    """A file on a disk with `room` bytes left: writes beyond them fail with ENOSPC, as the kernel's do."""

    def __init__(self, inner, room: int) -> None:
        self.inner, self.room = inner, room

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if len(data) > self.room:
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.inner.write(data)


def no_temp_files(folder: Path) -> bool:
    return not list(folder.rglob(f".*{atomic.TEMP_SUFFIX}"))


class FillingFile(FillingDisk):
    """An open file on such a disk (closing it closes the real one)."""

    def fileno(self) -> int:
        return self.inner.fileno()

    def close(self) -> None:
        self.inner.close()
        super().close()


def refuse_writes_to(monkeypatch, wanted) -> list[str]:
    """Every atomic write whose target `wanted(path)` accepts fails with ENOSPC after a few bytes of its temporary
    file (`.NAME.XXXXXXXX.tmp`, opened with os.fdopen); returns the names refused."""
    original = os.fdopen
    refused = []

    def fdopen(fd, mode="r", *args, **kwargs):
        handle = original(fd, mode, *args, **kwargs)
        temp = Path(os.readlink(f"/proc/self/fd/{fd}"))
        if not (temp.name.startswith(".") and temp.name.endswith(atomic.TEMP_SUFFIX)):
            return handle
        target = temp.with_name(temp.name[1:].rsplit(".", 2)[0])
        if not wanted(target):
            return handle
        refused.append(target.name)
        return FillingFile(handle, 16)

    monkeypatch.setattr(os, "fdopen", fdopen)
    return refused


def ends_cleanly(capsys, argv: list[str], path_part: str) -> str:
    """Run the CLI; assert exit code 1 and a message naming the file and the full disk; returns the message."""
    capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("node-transfer: error: cannot write ") and path_part in err, err
    assert "No space left on device" in err and "Traceback" not in err, err
    return err


def test_torch_save_on_a_full_disk_raises_the_runtime_error_chain_we_translate(tmp_path):
    """The premise: torch 2.x answers a write refused mid-file with its zip writer's RuntimeError, the OSError
    only in its context; the atomic writer finds it there, removes its temporary file and keeps the old file."""
    with pytest.raises(RuntimeError) as raised:
        torch.save({"w": torch.zeros(1000)}, FillingDisk(io.BytesIO(), 1000))
    assert isinstance(raised.value.__context__, OSError) and raised.value.__context__.errno == errno.ENOSPC
    path = tmp_path / "last.pt"
    torch.save({"epoch": 1}, path)
    with pytest.raises(FileWriteError, match=f"cannot write {path}: No space left on device .the previous last.pt"):
        atomic.atomic_write(path, lambda handle: torch.save({"w": torch.zeros(1000)}, FillingDisk(handle, 1000)))
    assert torch.load(path, weights_only=True) == {"epoch": 1} and no_temp_files(tmp_path)


def test_a_full_disk_while_a_checkpoint_is_written_exits_1_and_keeps_the_last_one(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    original = torch.save
    raised = []

    def save_on_a_disk_that_fills_at_epoch_2(obj, handle, *args, **kwargs):
        if not (isinstance(obj, dict) and obj.get("epoch") == 2):
            return original(obj, handle, *args, **kwargs)
        try:
            return original(obj, FillingDisk(handle, 4096), *args, **kwargs)
        except BaseException as exc:
            raised.append(type(exc))
            raise

    monkeypatch.setattr(torch, "save", save_on_a_disk_that_fills_at_epoch_2)
    err = ends_cleanly(capsys, ["run", "--out", str(out), "--epochs", "3", "--feature-cache", str(tmp_path / "f"),
                                *RUN], str(out / "last.pt"))
    assert raised == [RuntimeError]  # what torch really raises; caught all the same
    assert "--resume" in err  # and how to continue
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 1 and no_temp_files(out)
    assert len(pd.read_csv(out / "history.csv")) == 1 and "No space left" in (out / "error.txt").read_text()
    monkeypatch.setattr(torch, "save", original)
    assert main(["run", "--out", str(out), "--resume", "--quiet"]) == 0  # with room again, it goes on
    assert len(pd.read_csv(out / "history.csv")) == 3


@pytest.mark.parametrize("name", ["config.json", "history.csv", "metrics.json", "feature cache"])
def test_a_full_disk_on_every_run_file_exits_1(name, tmp_path, capsys, monkeypatch):
    out, cache = tmp_path / "run", tmp_path / "features"
    if name == "feature cache":
        refuse_writes_to(monkeypatch, lambda path: path.parent == cache)
        part = str(cache)
    else:
        refuse_writes_to(monkeypatch, lambda path: path.name == name)
        part = str(out / name)
    ends_cleanly(capsys, ["run", "--out", str(out), "--epochs", "2", "--feature-cache", str(cache), *RUN], part)
    assert no_temp_files(tmp_path)
    if name == "metrics.json":  # every epoch was written: resuming finishes the run
        assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 2
        monkeypatch.undo()
        assert main(["run", "--out", str(out), "--resume", "--quiet"]) == 0 and (out / name).is_file()


def test_a_full_disk_while_a_report_or_suite_file_is_written_exits_1(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert main(["run", "--out", str(out), "--epochs", "1", "--feature-cache", str(tmp_path / "f"), *RUN]) == 0
    with monkeypatch.context() as patch:
        refuse_writes_to(patch, lambda path: path.name == "tables.md")
        ends_cleanly(capsys, ["report", str(out)], str(out / "report" / "tables.md"))
    suite = tmp_path / "suite"
    with monkeypatch.context() as patch:
        refused = refuse_writes_to(patch, lambda path: path.name == "suite.json")
        ends_cleanly(capsys, ["suite", "smoke", "--in-process", "--out", str(suite)], str(suite / "suite.json"))
        assert refused == ["suite.json"] and not suite.exists()  # nothing left: the same command can start again
