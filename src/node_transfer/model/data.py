"""Data sets and splits: CIFAR-10 and Fashion-MNIST (torchvision), scikit-learn's digits (offline), a user's
image folder.

Validation images come from the training set by a seeded split and see the evaluation transform. Transforms
use the backbone's own pretrained config (mean, std, interpolation from timm). Two data paths give the splits:
`pil` (torchvision's transforms per image and epoch; augmentation draws from torch's global RNG, which the
training loop re-seeds every epoch) and `tensor` (`tensor_images`: decoded and resized once, batches augmented
and normalised as tensors).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import datasets, transforms
from torchvision.transforms import InterpolationMode

from ..core.config import DATASETS  # the one list of names (config stays light: it does not import this module)
from ..core.errors import ConfigError, DataError
from .tensor_images import BatchTransform, tensor_split

__all__ = ["DATASETS", "DataSplits", "build_datasets", "make_transforms"]

CIFAR_HOWTO = ("pass download=True (--download) on a machine with internet access, or put the "
               "'cifar-10-batches-py' folder of the official archive under data_dir")
# Where Debian's package dataset-fashion-mnist puts the four original *.gz files (tests monkeypatch it).
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_HOWTO = ("install them with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu; `make fashion-mnist` "
                       "does it), pass download=True (--download) on a machine with internet access, or put the four "
                       "*-ubyte.gz files of the official release in data_dir")
# Debian re-gzipped the official files without the stored file name (each is shorter by exactly that name), so
# their md5s differ from the official ones in torchvision's FashionMNIST.resources; both are accepted.
FASHION_MNIST_DEBIAN_MD5 = {"train-images-idx3-ubyte.gz": "cf8536b0aa1a6ac5fa3f23001093305c",
                            "train-labels-idx1-ubyte.gz": "10bea18fdb374794d4bb42e356e600c9",
                            "t10k-images-idx3-ubyte.gz": "f78720b4224f21cce2f2ccf2d7a94c9a",
                            "t10k-labels-idx1-ubyte.gz": "0d30e22e447f3c33dab9ed536400ac01"}


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
    """Images held as a uint8 array, (N, H, W, 3) or grayscale (N, H, W), with integer labels, served as RGB PIL
    images (grayscale repeated to 3 channels, as ImageNet backbones expect).

    `ids` are the images' positions in the source data set, so that splits can be checked for overlap."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, ids: np.ndarray) -> None:
        self.images, self.labels, self.ids = images, labels, ids

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        image = Image.fromarray(self.images[i])
        return (image if image.mode == "RGB" else image.convert("RGB")), int(self.labels[i])


def make_transforms(data_config: dict, image_size: int, train: bool, dataset: str) -> Callable:
    """Resize to image_size, (train-time augmentation), tensor, normalise with the backbone's mean/std."""
    interpolation = InterpolationMode(data_config.get("interpolation") or "bilinear")
    # torchvision's resize returns the image untouched when it already has the requested size
    steps: list = [transforms.Resize((image_size, image_size), interpolation=interpolation, antialias=True)]
    if train:
        if dataset in ("cifar10", "fashion-mnist"):
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


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _idx_size(name: str) -> int:
    """Byte size of an uncompressed Fashion-MNIST IDX file: header plus 60,000 or 10,000 items."""
    count = 60000 if name.startswith("train") else 10000
    return 16 + count * 28 * 28 if "images" in name else 8 + count


def _fashion_mnist_raw(data_dir: str) -> Path | None:
    """Make sure `data_dir/FashionMNIST/raw` holds the four uncompressed IDX files (torchvision's layout).

    Each file comes from, in order: that folder (uncompressed, or a .gz there), a .gz in data_dir, a .gz in
    FASHION_MNIST_SYSTEM_DIR. A .gz must have the official or Debian's md5 and is decompressed atomically (the
    gzip CRC checks the content). Returns None when some file is found nowhere; raises DataError when corrupt."""
    import torchvision

    raw = Path(data_dir) / "FashionMNIST" / "raw"
    sources = []
    for gz_name, official_md5 in torchvision.datasets.FashionMNIST.resources:
        name = gz_name.removesuffix(".gz")
        target = raw / name
        if target.is_file():
            if target.stat().st_size != _idx_size(name):
                raise DataError(f"Fashion-MNIST file {str(target.resolve())!r} is corrupt ({target.stat().st_size} "
                                f"bytes, expected {_idx_size(name)}): delete it; {FASHION_MNIST_HOWTO}")
            continue
        found = next((folder / gz_name for folder in (raw, Path(data_dir), FASHION_MNIST_SYSTEM_DIR)
                      if (folder / gz_name).is_file()), None)
        if found is None:
            return None
        if _md5(found) not in (official_md5, FASHION_MNIST_DEBIAN_MD5[gz_name]):
            raise DataError(f"Fashion-MNIST file {str(found.resolve())!r} is corrupt (md5 differs from the official "
                            f"release's and from Debian's): replace it; {FASHION_MNIST_HOWTO}")
        sources.append((found, target))
    for found, target in sources:  # only once every file is there and sound: nothing is written otherwise
        try:
            raw.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=raw, prefix=f".{target.name}.", delete=False) as tmp:
                try:
                    with gzip.open(found, "rb") as source:
                        while block := source.read(1 << 22):
                            tmp.write(block)
                except BaseException:
                    os.unlink(tmp.name)
                    raise
            if os.path.getsize(tmp.name) != _idx_size(target.name):
                os.unlink(tmp.name)
                raise DataError(f"Fashion-MNIST file {str(found.resolve())!r} decompresses to the wrong size: "
                                f"replace it; {FASHION_MNIST_HOWTO}")
            os.chmod(tmp.name, 0o644)  # tempfile's 0600 would hide the data from other users
            os.replace(tmp.name, target)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:  # unwritable data_dir, truncated or bad archive
            raise DataError(f"cannot decompress Fashion-MNIST {str(found)!r} into {str(raw.resolve())!r} "
                            f"({exc.__class__.__name__}: {exc}); pass a writable data_dir or fix the file") from None
    return raw


def _fashion_mnist(data_dir: str, download: bool):
    raw = _fashion_mnist_raw(data_dir)
    if raw is None and not download:
        places = [str((Path(data_dir) / "FashionMNIST" / "raw").resolve()), str(Path(data_dir).resolve()),
                  str(FASHION_MNIST_SYSTEM_DIR)]
        raise DataError(f"Fashion-MNIST not found: looked for the four *-ubyte(.gz) files in {places}; "
                        f"{FASHION_MNIST_HOWTO}")
    try:  # with download=True and no local copy, torchvision fetches the files and checks their md5s
        sets = [datasets.FashionMNIST(root=data_dir, train=train, download=download) for train in (True, False)]
    except (RuntimeError, OSError, ValueError, AssertionError) as exc:  # no network, md5 mismatch, bad IDX header
        raise DataError(f"Fashion-MNIST could not be fetched into or read from "
                        f"{str((Path(data_dir) / 'FashionMNIST' / 'raw').resolve())!r} ({exc.__class__.__name__}: "
                        f"{exc}); {FASHION_MNIST_HOWTO}") from None
    train, test = (ArrayImages(s.data.numpy(), s.targets.numpy(), np.arange(len(s)) + offset)
                   for s, offset in zip(sets, (0, len(sets[0]))))
    return train, test, list(sets[0].classes)


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
                   seed: int, data_config: dict, augment: bool = True, train_subset: int = 0,
                   data_path: str = "pil") -> DataSplits:
    """Train/val/test splits of a data set; the val split is seeded and taken from the training images.

    `data_path` is a settled config value: "pil" (the default here: every run before the setting) or "tensor"."""
    if dataset == "cifar10":
        train_base, test_base, classes = _cifar10(data_dir, download)
        default_val = 5000
    elif dataset == "fashion-mnist":
        train_base, test_base, classes = _fashion_mnist(data_dir, download)
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
    if data_path == "tensor":  # decoded once with the evaluation transform's resize; the rest on the batch
        resize, train_t, eval_t = (eval_tf.transforms[0], BatchTransform.for_dataset(data_config, dataset, augment),
                                   BatchTransform.for_dataset(data_config, dataset, False))
        return DataSplits(train=tensor_split(train_base, train_idx, resize, train_t),
                          val=tensor_split(train_base, val_idx, resize, eval_t),
                          test=tensor_split(test_base, range(len(test_base)), resize, eval_t),
                          num_classes=len(classes), class_names=classes)
    if data_path != "pil":
        raise ConfigError("data_path", data_path, "'tensor' or 'pil' ('auto' is settled before the data is built)")
    return DataSplits(train=TransformedSubset(train_base, train_idx, train_tf),
                      val=TransformedSubset(train_base, val_idx, eval_tf),
                      test=TransformedSubset(test_base, range(len(test_base)), eval_tf),
                      num_classes=len(classes), class_names=classes)
