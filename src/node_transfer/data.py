"""Data sets and splits: CIFAR-10 (torchvision), scikit-learn's digits (offline), a user's image folder.

Validation images come from the training set by a seeded split and see the evaluation transform. Transforms
use the backbone's own pretrained config (mean, std, interpolation from timm). Augmentation draws from torch's
global RNG, which the training loop re-seeds every epoch (reproducible resume).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import datasets, transforms
from torchvision.transforms import InterpolationMode

from .errors import ConfigError, DataError

DATASETS = ("cifar10", "digits", "imagefolder")
CIFAR_HOWTO = ("pass download=True (--download) on a machine with internet access, or put the "
               "'cifar-10-batches-py' folder of the official archive under data_dir")


@dataclass
class DataSplits:
    """Train/val/test data sets yielding (image tensor, label) and the class names."""

    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    class_names: list[str]


class TransformedSubset(Dataset):
    """`base[indices[i]]` with `transform` applied to the image: one base set, several views."""

    def __init__(self, base: Dataset, indices: Sequence[int], transform: Callable) -> None:
        self.base, self.indices, self.transform = base, list(indices), transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        try:
            image, label = self.base[self.indices[i]]
            return self.transform(image), int(label)
        except OSError as exc:  # PIL: not an image, truncated, zero bytes
            raise DataError(f"cannot read image {self.indices[i]} of the data set ({exc}); remove or replace the "
                            "file and run again") from None


class ArrayImages(Dataset):
    """Images held as a uint8 array (N, H, W, 3) with integer labels, served as PIL images.

    `ids` are the images' positions in the source data set, so that splits can be checked for overlap."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, ids: np.ndarray) -> None:
        self.images, self.labels, self.ids = images, labels, ids

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return Image.fromarray(self.images[i]), int(self.labels[i])


def make_transforms(data_config: dict, image_size: int, train: bool, dataset: str) -> Callable:
    """Resize to image_size, (train-time augmentation), tensor, normalise with the backbone's mean/std."""
    interpolation = InterpolationMode(data_config.get("interpolation") or "bilinear")
    # torchvision's resize returns the image untouched when it already has the requested size
    steps: list = [transforms.Resize((image_size, image_size), interpolation=interpolation, antialias=True)]
    if train:
        if dataset == "cifar10":
            steps += [transforms.RandomCrop(image_size, padding=image_size // 8), transforms.RandomHorizontalFlip()]
        elif dataset == "digits":  # digits are not mirror-symmetric: small shifts and rotations only
            steps += [transforms.RandomAffine(degrees=10, translate=(0.1, 0.1))]
        else:
            steps = [transforms.RandomResizedCrop(image_size, scale=(0.6, 1.0), interpolation=interpolation,
                                                  antialias=True), transforms.RandomHorizontalFlip()]
    steps += [transforms.ToTensor(), transforms.Normalize(data_config["mean"], data_config["std"])]
    return transforms.Compose(steps)


def _cifar10(data_dir: str, download: bool):
    where = str(Path(data_dir).resolve() / "cifar-10-batches-py")
    try:
        train = datasets.CIFAR10(root=data_dir, train=True, download=download)
        test = datasets.CIFAR10(root=data_dir, train=False, download=download)
    except RuntimeError as exc:  # torchvision's md5 check: "Dataset not found or corrupted"
        raise DataError(f"CIFAR-10 not found or corrupted: looked for {where!r} (torchvision: {exc}); "
                        f"{CIFAR_HOWTO}") from None
    except OSError as exc:  # download=True without a network, or an unreadable folder
        raise DataError(f"CIFAR-10 could not be fetched into or read from {where!r} ({exc.__class__.__name__}: "
                        f"{exc}); {CIFAR_HOWTO}") from None
    return train, test, list(train.classes)


def _digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.repeat((digits.images * (255.0 / 16.0)).round().astype(np.uint8)[..., None], 3, axis=3)
    labels = digits.target.astype(np.int64)
    # A fixed test split (seed 0) shared by every run seed; stratified so every class is there.
    train_idx, test_idx = train_test_split(np.arange(len(labels)), test_size=0.2, random_state=0, stratify=labels)
    train = ArrayImages(images[train_idx], labels[train_idx], train_idx)
    test = ArrayImages(images[test_idx], labels[test_idx], test_idx)
    return train, test, [str(d) for d in range(10)]


def _imagefolder(data_dir: str):
    root = Path(data_dir)
    layout = "data_dir/train/<class>/* and data_dir/test/<class>/*"
    for part in ("train", "test"):
        if not (root / part).is_dir():
            raise DataError(f"image folder {str(root / part)!r} not found: expected the layout {layout}")
    try:
        train, test = datasets.ImageFolder(str(root / "train")), datasets.ImageFolder(str(root / "test"))
    except (FileNotFoundError, RuntimeError) as exc:
        raise DataError(f"cannot read images under {str(root)!r} ({exc}); expected the layout {layout}") from None
    if train.classes != test.classes:
        raise DataError(f"train and test classes differ under {str(root)!r}: {train.classes} vs {test.classes}")
    return train, test, list(train.classes)


def build_datasets(dataset: str, data_dir: str, download: bool, image_size: int, val_size: int | None,
                   seed: int, data_config: dict, augment: bool = True, train_subset: int = 0) -> DataSplits:
    """Train/val/test splits of a data set; the val split is seeded and taken from the training images."""
    if dataset == "cifar10":
        train_base, test_base, classes = _cifar10(data_dir, download)
        default_val = 5000
    elif dataset == "digits":
        train_base, test_base, classes = _digits()
        default_val = None
    elif dataset == "imagefolder":
        train_base, test_base, classes = _imagefolder(data_dir)
        default_val = None
    else:
        raise ConfigError("dataset", dataset, f"one of {list(DATASETS)}")
    if len(classes) < 2:
        raise DataError(f"{dataset} under {data_dir!r} has {len(classes)} class(es) {classes}: a classifier needs "
                        "at least 2")
    pool = len(train_base)
    val_size = val_size if val_size is not None else (default_val or max(1, round(0.1 * pool)))
    if not 0 < val_size < pool:
        raise ConfigError("val_size", val_size, f"an integer in [1, {pool - 1}] for {dataset} ({pool} training images)")
    order = torch.randperm(pool, generator=torch.Generator().manual_seed(seed)).tolist()
    val_idx, train_idx = order[:val_size], order[val_size:]
    if train_subset:
        if not 0 < train_subset <= len(train_idx):
            raise ConfigError("train_subset", train_subset, f"0 (all) or at most {len(train_idx)} for {dataset}")
        train_idx = train_idx[:train_subset]
    train_tf = make_transforms(data_config, image_size, train=augment, dataset=dataset)
    eval_tf = make_transforms(data_config, image_size, train=False, dataset=dataset)
    return DataSplits(train=TransformedSubset(train_base, train_idx, train_tf),
                      val=TransformedSubset(train_base, val_idx, eval_tf),
                      test=TransformedSubset(test_base, range(len(test_base)), eval_tf),
                      num_classes=len(classes), class_names=classes)
