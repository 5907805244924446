"""Data sources: CIFAR-10 through torchvision on a fixture in CIFAR's own format, digits, image folders."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import transforms

sys.path.insert(0, str(Path(__file__).parent))  # tests/fixtures_data.py, whatever pytest's import mode
from fixtures_data import fake_cifar10, image_folder  # noqa: E402

from node_transfer.data import build_datasets, make_transforms  # noqa: E402
from node_transfer.errors import ConfigError, DataError  # noqa: E402

CONFIG = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "interpolation": "bicubic"}
PER_BATCH, TEST_IMAGES = 20, 30


@pytest.fixture
def cifar_dir(tmp_path, monkeypatch):
    fake_cifar10(tmp_path, monkeypatch, PER_BATCH, TEST_IMAGES)
    return tmp_path


@pytest.mark.parametrize("image_size", [32, 64])
def test_cifar10_splits_and_tensors(cifar_dir, image_size):
    splits = build_datasets("cifar10", str(cifar_dir), False, image_size, 10, 0, CONFIG)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (5 * PER_BATCH - 10, 10, TEST_IMAGES)
    assert splits.num_classes == 10 and splits.class_names[3] == "cat"
    for dataset in (splits.train, splits.val, splits.test):
        image, label = dataset[0]
        assert image.shape == (3, image_size, image_size) and image.dtype == torch.float32 and 0 <= label < 10
        assert image.min() >= -1.0 and image.max() <= 1.0  # (x - 0.5) / 0.5 of values in [0, 1]
    raw, _ = splits.test.base[0]
    if image_size == 32:  # native size: no resampling, exactly (x/255 - 0.5) / 0.5
        expected = torch.from_numpy(np.array(raw)).permute(2, 0, 1).float() / 255 * 2 - 1
        torch.testing.assert_close(splits.test[0][0], expected)


def test_cifar10_default_split_is_the_papers(cifar_dir):
    with pytest.raises(ConfigError, match="val_size"):  # 5,000 validation images need the real 50,000
        build_datasets("cifar10", str(cifar_dir), False, 32, None, 0, CONFIG)


def test_corrupt_cifar_file_is_a_data_error(cifar_dir):
    batch = cifar_dir / "cifar-10-batches-py" / "data_batch_3"
    data = bytearray(batch.read_bytes())
    data[-1] ^= 0xFF  # one flipped byte: the md5 check catches it
    batch.write_bytes(bytes(data))
    with pytest.raises(DataError, match="not found or corrupted.*cifar-10-batches-py.*download"):
        build_datasets("cifar10", str(cifar_dir), False, 32, 10, 0, CONFIG)


def test_missing_cifar_says_where_it_looked_and_how_to_get_it(tmp_path):
    with pytest.raises(DataError) as info:
        build_datasets("cifar10", str(tmp_path / "nowhere"), False, 32, 10, 0, CONFIG)
    message = str(info.value)
    assert "download=True" in message and "--download" in message and "cifar-10-batches-py" in message
    assert str(tmp_path / "nowhere") in message


def test_digits_split_is_stratified_fixed_for_test_and_seeded_for_val():
    a = build_datasets("digits", "", False, 32, None, 0, CONFIG)
    b = build_datasets("digits", "", False, 32, None, 0, CONFIG)
    c = build_datasets("digits", "", False, 32, None, 1, CONFIG)
    assert (len(a.train), len(a.val), len(a.test)) == (1293, 144, 360)  # 1797 = 1437 + 360; val 10% of 1437
    assert a.num_classes == 10 and a.class_names == [str(d) for d in range(10)]
    assert a.val.indices == b.val.indices and a.val.indices != c.val.indices  # seeded, reproducible
    assert np.array_equal(a.test.base.ids, c.test.base.ids)  # one test set for every run seed
    assert torch.equal(a.test[5][0], c.test[5][0])
    for splits in (a, c):
        train, val = (set(splits.train.base.ids[d.indices].tolist()) for d in (splits.train, splits.val))
        test = set(splits.test.base.ids.tolist())
        assert not (train & val or train & test or val & test) and len(train | val | test) == 1797
    assert np.bincount(a.test.base.labels).min() >= 35  # stratified: every class ~36 times


def test_digits_images_are_scaled_rgb():
    splits = build_datasets("digits", "", False, 8, None, 0, {"mean": (0, 0, 0), "std": (1, 1, 1)}, augment=False)
    image, _ = splits.test[0]
    assert image.shape == (3, 8, 8) and torch.equal(image[0], image[2]) and image.max() == 1.0  # 16 -> 255


def test_train_augmentation_draws_from_torchs_global_rng():
    splits = build_datasets("digits", "", False, 32, None, 0, CONFIG, augment=True)
    torch.manual_seed(0)
    first, second = splits.train[0][0], splits.train[0][0]
    assert not torch.equal(first, second)
    torch.manual_seed(0)
    assert torch.equal(splits.train[0][0], first)  # reseeding reproduces it: resume stays reproducible
    assert torch.equal(splits.val[0][0], splits.val[0][0])  # val sees the eval transform
    plain = build_datasets("digits", "", False, 32, None, 0, CONFIG, augment=False)
    assert torch.equal(plain.train[0][0], plain.train[0][0])


def test_transforms_follow_the_dataset_and_config():
    steps = {name: [type(t).__name__ for t in make_transforms(CONFIG, 64, True, name).transforms]
             for name in ("cifar10", "digits", "imagefolder")}
    assert "RandomCrop" in steps["cifar10"] and "RandomHorizontalFlip" in steps["cifar10"]
    assert "RandomAffine" in steps["digits"] and "RandomHorizontalFlip" not in steps["digits"]
    assert steps["imagefolder"][0] == "RandomResizedCrop"
    resize = make_transforms(CONFIG, 64, False, "cifar10").transforms[0]
    assert isinstance(resize, transforms.Resize) and resize.interpolation.value == "bicubic"


def test_train_subset_and_bad_sizes():
    assert len(build_datasets("digits", "", False, 32, None, 0, CONFIG, train_subset=100).train) == 100
    with pytest.raises(ConfigError, match="train_subset"):
        build_datasets("digits", "", False, 32, None, 0, CONFIG, train_subset=5000)
    with pytest.raises(ConfigError, match="val_size"):
        build_datasets("digits", "", False, 32, 1437, 0, CONFIG)
    with pytest.raises(ConfigError, match="dataset.*'cifar10', 'digits', 'imagefolder'"):
        build_datasets("mnist", "", False, 32, None, 0, CONFIG)


def test_imagefolder_loads_a_users_images(tmp_path):
    image_folder(tmp_path)
    splits = build_datasets("imagefolder", str(tmp_path), False, 48, None, 0, CONFIG)
    assert splits.class_names == ["cats", "dogs"] and splits.num_classes == 2 and len(splits.test) == 12
    assert (len(splits.train), len(splits.val)) == (11, 1)
    assert splits.train[0][0].shape == (3, 48, 48) and splits.test[0][0].shape == (3, 48, 48)
    assert {splits.test[i][1] for i in range(12)} == {0, 1}


def test_imagefolder_without_test_folder_names_the_layout(tmp_path):
    image_folder(tmp_path, parts=("train",))
    with pytest.raises(DataError, match=r"test.*not found.*data_dir/train/<class>/\* and data_dir/test/<class>/\*"):
        build_datasets("imagefolder", str(tmp_path), False, 48, None, 0, CONFIG)


def test_imagefolder_class_mismatch_is_a_data_error(tmp_path):
    image_folder(tmp_path, parts=("train",), classes=("cats", "dogs"))
    image_folder(tmp_path, parts=("test",), classes=("cats", "birds"))
    with pytest.raises(DataError, match="classes differ"):
        build_datasets("imagefolder", str(tmp_path), False, 48, None, 0, CONFIG)
