"""Data sources: CIFAR-10 through torchvision on a fixture in CIFAR's own format, Fashion-MNIST on the real files
(Debian's dataset-fashion-mnist), digits, image folders."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from torchvision import transforms

from node_transfer import ExperimentConfig
from node_transfer.core.errors import ConfigError, DataError
from node_transfer.model import data
from node_transfer.model.data import build_datasets, make_transforms
from node_transfer.run.experiment import run_experiment

from fixtures_data import fake_cifar10, image_folder

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
             for name in ("cifar10", "fashion-mnist", "digits", "imagefolder")}
    for name in ("cifar10", "fashion-mnist"):
        assert "RandomCrop" in steps[name] and "RandomHorizontalFlip" in steps[name]
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
    with pytest.raises(ConfigError, match="dataset.*'cifar10', 'digits', 'fashion-mnist', 'imagefolder'"):
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


# ---------------------------------------------------------------- Fashion-MNIST on the real files
FASHION_SYSTEM = data.FASHION_MNIST_SYSTEM_DIR
FASHION_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"]
IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225), "interpolation": "bicubic"}


def need_fashion_files() -> None:
    """Skip without Debian's dataset-fashion-mnist, except in CI, where `make unit` installs it."""
    if not (FASHION_SYSTEM / f"{FASHION_FILES[0]}.gz").is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"Fashion-MNIST is missing from {FASHION_SYSTEM}: CI runs `make fashion-mnist` first")
        pytest.skip(f"Fashion-MNIST is not installed in {FASHION_SYSTEM} (apt-get install dataset-fashion-mnist)")


@pytest.fixture(scope="module")
def fashion_dir(tmp_path_factory):
    """A data_dir that receives the decompressed files once for this module's tests."""
    need_fashion_files()
    return tmp_path_factory.mktemp("fashion")


@pytest.fixture
def no_system_copy(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "no-system-copy")


def test_fashion_mnist_splits_tensors_and_classes(fashion_dir):
    splits = build_datasets("fashion-mnist", str(fashion_dir), False, 32, None, 0, IMAGENET)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (55000, 5000, 10000)
    assert splits.num_classes == 10 and splits.class_names[0] == "T-shirt/top" and splits.class_names[9] == "Ankle boot"
    assert sorted(p.name for p in (fashion_dir / "FashionMNIST" / "raw").iterdir()) == sorted(FASHION_FILES)
    assert splits.train.base.images.shape == (60000, 28, 28) and splits.test.base.images.shape == (10000, 28, 28)
    assert np.bincount(splits.test.base.labels).tolist() == [1000] * 10  # the real test set: 1,000 per class
    for dataset in (splits.train, splits.val, splits.test):
        image, label = dataset[0]
        assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and 0 <= label < 10
    image = splits.test[0][0]  # grayscale repeated, then normalised per channel with the backbone's mean/std
    std, mean = torch.tensor(IMAGENET["std"])[:, None, None], torch.tensor(IMAGENET["mean"])[:, None, None]
    gray = image * std + mean
    torch.testing.assert_close(gray[0], gray[1])
    torch.testing.assert_close(gray[0], gray[2])
    train, val = (set(d.indices) for d in (splits.train, splits.val))
    assert not train & val and len(train | val) == 60000


def test_fashion_mnist_decompressed_files_are_reused_without_the_system_copy(fashion_dir, no_system_copy):
    build_datasets("fashion-mnist", str(fashion_dir), False, 32, 100, 0, IMAGENET)  # decompresses if first
    splits = build_datasets("fashion-mnist", str(fashion_dir), False, 32, 100, 0, IMAGENET)
    assert len(splits.train) == 59900 and len(splits.test) == 10000


def test_missing_fashion_mnist_says_where_it_looked_and_how_to_get_it(tmp_path, no_system_copy):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError) as info:
        build_datasets("fashion-mnist", str(empty), False, 32, None, 0, IMAGENET)
    message = str(info.value)
    assert "not found" in message and str(empty) in message and str(tmp_path / "no-system-copy") in message
    assert "apt-get install dataset-fashion-mnist" in message and "--download" in message
    assert list(empty.iterdir()) == []  # nothing written


def test_truncated_uncompressed_fashion_mnist_file_is_a_data_error(tmp_path, no_system_copy):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / FASHION_FILES[0]).write_bytes(b"\x00\x00\x08\x03" + bytes(100))  # an IDX header, then too little
    with pytest.raises(DataError, match=r"corrupt \(104 bytes, expected 47040016\).*delete it.*dataset-fashion-mnist"):
        build_datasets("fashion-mnist", str(tmp_path), False, 32, None, 0, IMAGENET)


def test_corrupt_fashion_mnist_file_is_a_data_error_and_no_run_starts(tmp_path):
    need_fashion_files()
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    copy = data_dir / "train-labels-idx1-ubyte.gz"  # found before the system copy
    shutil.copy(FASHION_SYSTEM / copy.name, copy)
    raw = bytearray(copy.read_bytes())
    raw[100] ^= 0xFF  # one flipped byte: the md5 check catches it
    copy.write_bytes(bytes(raw))
    out = tmp_path / "run"
    config = ExperimentConfig(dataset="fashion-mnist", data_dir=str(data_dir), image_size=32, head="fc",
                              freeze_backbone=True, cache_features=True, out=str(out))
    with pytest.raises(DataError) as info:
        run_experiment(config, progress=False)
    message = str(info.value)
    assert "corrupt" in message and str(copy) in message and "dataset-fashion-mnist" in message
    assert "--download" in message
    assert not out.exists() and sorted(p.name for p in data_dir.iterdir()) == [copy.name]  # nothing written


def test_cli_without_fashion_mnist_exits_1_with_the_message_and_no_run_directory(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    code = ("import sys; from pathlib import Path; import node_transfer.model.data as d; "
            f"d.FASHION_MNIST_SYSTEM_DIR = Path({str(tmp_path / 'none')!r}); "
            "from node_transfer.app.cli import main; sys.exit(main(sys.argv[1:]))")
    result = subprocess.run([sys.executable, "-c", code, "run", "--dataset", "fashion-mnist", "--data-dir", str(empty),
                             "--freeze-backbone", "--cache-features", "--head", "fc", "--image-size", "32", "--quiet"],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path,
                            env={**os.environ, "TQDM_DISABLE": "1"})
    assert result.returncode == 1, result.stderr
    assert "node-transfer: error: Fashion-MNIST not found" in result.stderr
    assert "apt-get install dataset-fashion-mnist" in result.stderr and "--download" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists() and list(empty.iterdir()) == []


@pytest.fixture(scope="module")
def fashion_feature_cache(tmp_path_factory):
    """One feature cache for the heads below: the 10,000 test images go through the backbone once."""
    return tmp_path_factory.mktemp("fashion-features")


HEAD_OPTIONS = {"fc": {"head": "fc"}, "mlp": {"head": "mlp"},
                "euler": {"head": "node", "solver": "euler", "step_size": 1.0},
                "node": {"head": "node", "rtol": 1e-3, "atol": 1e-3},
                "node-adjoint": {"head": "node", "rtol": 1e-3, "atol": 1e-3, "adjoint": True}}


@pytest.mark.parametrize("head", list(HEAD_OPTIONS))
def test_tiny_fashion_mnist_run_of_each_head_end_to_end(head, fashion_dir, fashion_feature_cache, tmp_path):
    config = ExperimentConfig(dataset="fashion-mnist", data_dir=str(fashion_dir), image_size=32,
                              freeze_backbone=True, cache_features=True, train_subset=200, val_size=100, epochs=4,
                              lr=3e-3, out=str(tmp_path / "run"), feature_cache=str(fashion_feature_cache),
                              **HEAD_OPTIONS[head])
    run_dir = run_experiment(config, progress=False)
    resolved = json.loads((run_dir / "config.json").read_text())
    assert resolved["sizes"] == {"train": 200, "val": 100, "test": 10000}
    assert resolved["class_names"][0] == "T-shirt/top" and resolved["num_classes"] == 10
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test_acc"] > 0.25  # 200 images, four epochs; ten balanced classes: chance is 0.1
    assert 0.0 <= metrics["test_ece"] <= 1.0 and metrics["test_nll"] == metrics["test_loss"]
    expected_nfe = {"fc": 0, "mlp": 0, "euler": 1}
    if head in expected_nfe:
        assert metrics["nfe_forward"] == expected_nfe[head]
    else:
        assert metrics["nfe_forward"] >= 2  # adaptive dopri5: at least the first step's evaluations
    assert (metrics["nfe_backward"] > 0) == (head == "node-adjoint")
