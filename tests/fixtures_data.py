"""Test data written in the real on-disk formats, shared by test files (import it: `from fixtures_data import ...`)."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import torchvision

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def fake_cifar10(root: Path, monkeypatch, per_batch: int = 20, test_images: int = 30) -> Path:
    """Write `root/cifar-10-batches-py` in CIFAR's pickled format and point torchvision's md5 lists at it.

    torchvision checks every file against hard-coded md5s on each construction: the check stays active, with
    this fixture's md5s (as torchvision's own tests do). Returns the batch folder."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    train_list, test_list = [], []
    batches = [(f"data_batch_{i}", per_batch, train_list) for i in range(1, 6)] + [("test_batch", test_images,
                                                                                   test_list)]
    for name, count, listing in batches:
        batch = {"batch_label": name, "data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
                 "labels": [int(x) for x in rng.integers(0, 10, count)]}
        (folder / name).write_bytes(pickle.dumps(batch))
        listing.append([name, _md5(folder / name)])
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": CIFAR_CLASSES}))
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "train_list", train_list)
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "test_list", test_list)
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names",
                                                               "md5": _md5(folder / "batches.meta")})
    return folder


def image_folder(root: Path, parts=("train", "test"), classes=("cats", "dogs"), count: int = 6) -> Path:
    """Write `root/<part>/<class>/<i>.png`, random 20x24 RGB images; returns root."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for part in parts:
        for name in classes:
            (root / part / name).mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(root / part / name / f"{i}.png")
    return root
