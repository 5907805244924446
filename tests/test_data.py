"""Data sources: CIFAR-10 through torchvision on a fixture in CIFAR's own format, digits, image folders."""

import hashlib
import pickle

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from node_transfer.data import build_datasets
from node_transfer.errors import ConfigError, DataError

CONFIG = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "interpolation": "bilinear"}
PER_BATCH, TEST_IMAGES = 20, 30


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def cifar_dir(tmp_path, monkeypatch):
    """A CIFAR-10 folder in the real format (pickled batches), with torchvision's md5 lists pointed at it."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    train_list, test_list = [], []
    for name, count, listing in [(f"data_batch_{i}", PER_BATCH, train_list) for i in range(1, 6)] + [
            ("test_batch", TEST_IMAGES, test_list)]:
        batch = {"batch_label": name, "data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
                 "labels": [int(x) for x in rng.integers(0, 10, count)]}
        (folder / name).write_bytes(pickle.dumps(batch))
        listing.append([name, _md5(folder / name)])
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}))
    # torchvision checks every file against hard-coded md5s: keep the check, with this fixture's md5s
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "train_list", train_list)
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "test_list", test_list)
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names",
                                                               "md5": _md5(folder / "batches.meta")})
    return tmp_path


@pytest.mark.parametrize("image_size", [32, 64])
def test_cifar10_splits_and_tensors(cifar_dir, image_size):
    splits = build_datasets("cifar10", str(cifar_dir), False, image_size, 10, 0, CONFIG)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (5 * PER_BATCH - 10, 10, TEST_IMAGES)
    assert splits.num_classes == 10 and splits.class_names[3] == "cat"
    image, label = splits.test[0]
    assert image.shape == (3, image_size, image_size) and 0 <= label < 10
    assert image.min() >= -1.0 and image.max() <= 1.0  # (x - 0.5) / 0.5 of values in [0, 1]


def test_cifar10_default_split_is_the_papers(cifar_dir):
    with pytest.raises(ConfigError, match="val_size"):  # 5,000 validation images need the real 50,000
        build_datasets("cifar10", str(cifar_dir), False, 32, None, 0, CONFIG)


def test_corrupt_cifar_file_is_a_data_error(cifar_dir):
    batch = cifar_dir / "cifar-10-batches-py" / "data_batch_3"
    data = bytearray(batch.read_bytes())
    data[-1] ^= 0xFF
    batch.write_bytes(bytes(data))
    with pytest.raises(DataError, match="not found or corrupted.*download"):
        build_datasets("cifar10", str(cifar_dir), False, 32, 10, 0, CONFIG)


def test_missing_cifar_says_how_to_get_it(tmp_path):
    with pytest.raises(DataError) as info:
        build_datasets("cifar10", str(tmp_path), False, 32, 10, 0, CONFIG)
    assert "download=True" in str(info.value) and "cifar-10-batches-py" in str(info.value)


def test_digits_split_is_stratified_fixed_for_test_and_seeded_for_val():
    a = build_datasets("digits", "", False, 32, None, 0, CONFIG)
    b = build_datasets("digits", "", False, 32, None, 0, CONFIG)
    c = build_datasets("digits", "", False, 32, None, 1, CONFIG)
    assert (len(a.train), len(a.val), len(a.test)) == (1293, 144, 360)
    assert a.val.indices == b.val.indices and a.val.indices != c.val.indices  # seeded, reproducible
    assert torch.equal(a.test[5][0], c.test[5][0])  # one test set for every seed
    assert not set(a.val.indices) & set(a.train.indices)
    test_labels = [a.test[i][1] for i in range(len(a.test))]
    assert np.bincount(test_labels).min() >= 35  # stratified: every class ~36 times


def test_train_augmentation_varies_and_eval_does_not():
    splits = build_datasets("digits", "", False, 32, None, 0, CONFIG, augment=True)
    torch.manual_seed(0)
    first, second = splits.train[0][0], splits.train[0][0]
    assert not torch.equal(first, second)
    assert torch.equal(splits.val[0][0], splits.val[0][0])


def test_train_subset_and_bad_sizes():
    assert len(build_datasets("digits", "", False, 32, None, 0, CONFIG, train_subset=100).train) == 100
    with pytest.raises(ConfigError, match="train_subset"):
        build_datasets("digits", "", False, 32, None, 0, CONFIG, train_subset=5000)
    with pytest.raises(ConfigError, match="val_size"):
        build_datasets("digits", "", False, 32, 2000, 0, CONFIG)
    with pytest.raises(ConfigError, match="dataset"):
        build_datasets("mnist", "", False, 32, None, 0, CONFIG)


def _write_folder(root, parts=("train", "test"), classes=("cats", "dogs"), count=6):
    rng = np.random.default_rng(0)
    for part in parts:
        for name in classes:
            (root / part / name).mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(root / part / name / f"{i}.png")


def test_imagefolder_loads_a_users_images(tmp_path):
    _write_folder(tmp_path)
    splits = build_datasets("imagefolder", str(tmp_path), False, 48, None, 0, CONFIG)
    assert splits.class_names == ["cats", "dogs"] and len(splits.test) == 12
    assert (len(splits.train), len(splits.val)) == (11, 1)
    assert splits.train[0][0].shape == (3, 48, 48)


def test_imagefolder_without_test_folder_names_the_layout(tmp_path):
    _write_folder(tmp_path, parts=("train",))
    with pytest.raises(DataError, match=r"data_dir/train/<class>/\* and data_dir/test/<class>/\*"):
        build_datasets("imagefolder", str(tmp_path), False, 48, None, 0, CONFIG)
