"""The speed settings (`memory_format`, `data_path`): runs saved before them are read as they were made, new runs
use and record the fast ones, the tensor data path shows the PIL path's evaluation images and resumes exactly,
and bad values are named with their choices."""

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from node_transfer import ExperimentConfig
from node_transfer.app.cli import main
from node_transfer.core.checkpoints import atomic_save
from node_transfer.core.errors import ConfigError
from node_transfer.core.speed import FAST, LEGACY, LEGACY_LOOP, settle
from node_transfer.model.data import build_datasets
from node_transfer.model.tensor_images import ImageTensors, crop_flip, make_loader
from node_transfer.model.transfer import TransferModel, apply_memory_format, head_from_config
from node_transfer.run.experiment import prepare, run_experiment
from node_transfer.suites.notebooks import config_from_page
from node_transfer.suites.options import SuiteOptions

from fixtures_data import fake_cifar10, image_folder

#: Runs in this process, without progress lines (the quick way through a suite in a test).
IN_PROCESS = SuiteOptions(use_papermill=False, progress=False)
REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "results" / "heads-cpu" / "euler-s4"  # a committed run, made before the settings existed
CACHED = dict(dataset="digits", image_size=32, freeze_backbone=True, cache_features=True, augment=False,
              batch_size=64, epochs=1, lr=3e-3, head="fc")
MEAN_STD = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225), "interpolation": "bicubic"}


def settings(run_dir: Path) -> tuple[str, str]:
    config = json.loads((run_dir / "config.json").read_text())
    return config["memory_format"], config["data_path"]


def comparable(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "history.csv").drop(columns=["seconds", "images_per_s"])


# ---------------------------------------------------------------- old configurations, new runs
def test_a_config_saved_before_the_settings_is_read_as_made_and_a_new_one_round_trips():
    saved = json.loads((COMMITTED / "config.json").read_text())
    assert "memory_format" not in saved and "data_path" not in saved
    old = ExperimentConfig.from_json(COMMITTED / "config.json")
    assert (old.memory_format, old.data_path) == ("channels_last_on_cuda", "pil") == tuple(LEGACY[k] for k in FAST)
    assert ExperimentConfig.from_saved({}).ode_backend == "torchdiffeq"  # saved before the lean default
    assert old.head == saved["head"] and old.epochs == saved["epochs"]  # the rest as saved
    # an executed page whose parameters predate the settings (make reproduce re-executes such notebooks)
    page = {name: saved[name] for name in ExperimentConfig.field_names() if name in saved}
    assert config_from_page(page) == old
    new = settle(ExperimentConfig(), None)  # a new run: auto means fast
    assert (new.memory_format, new.data_path) == ("channels_last", "tensor") == tuple(FAST.values())
    assert ExperimentConfig.from_saved(json.loads(json.dumps(new.to_dict()))) == new
    # continued from a run saved without them
    assert settle(ExperimentConfig(), {}) == ExperimentConfig(**{k: LEGACY[k] for k in FAST})
    assert settle(ExperimentConfig(), new.to_dict()) == new
    explicit = ExperimentConfig(memory_format="contiguous", data_path="pil")
    assert settle(explicit, new.to_dict()) == settle(explicit, None) == explicit  # a value given is kept


def _as_made_before_the_settings(run_dir: Path) -> None:
    """Drop the settings from a run's config.json and checkpoints, as a run made before them has none."""
    config = json.loads((run_dir / "config.json").read_text())
    for name in FAST:
        del config[name]
    (run_dir / "config.json").write_text(json.dumps(config))
    for name in ("last.pt", "best.pt"):
        checkpoint = torch.load(run_dir / name, weights_only=True)
        for setting in FAST:
            del checkpoint["config"][setting]
        atomic_save(checkpoint, run_dir / name)


def test_old_runs_resume_and_are_continued_as_made_new_runs_record_the_fast_settings(tmp_path, capsys):
    new = run_experiment(ExperimentConfig(out=str(tmp_path / "new"), **CACHED), progress=False)
    assert settings(new) == ("channels_last", "tensor")
    old_config = ExperimentConfig(out=str(tmp_path / "old"), **CACHED, **LEGACY)
    old = run_experiment(old_config, progress=False)
    _as_made_before_the_settings(old)
    assert main(["run", "--out", str(old), "--resume", "--epochs", "2", "--quiet"]) == 0
    assert settings(old) == ("channels_last_on_cuda", "pil")  # resumed as it was made, and now recorded
    _as_made_before_the_settings(old)
    assert main(["run", "--out", str(old), "--resume", "--epochs", "3", "--memory-format", "channels_last",
                 "--quiet"]) == 2
    assert "memory_format='channels_last'" in capsys.readouterr().err  # a resumed run keeps its layout
    continued = run_experiment(ExperimentConfig(out=str(tmp_path / "continued"), init_from=str(old), **CACHED),
                               progress=False)
    assert settings(continued) == ("channels_last_on_cuda", "pil")  # as the run it continues
    explicit = run_experiment(ExperimentConfig(out=str(tmp_path / "explicit"), init_from=str(old), **CACHED,
                                               **FAST), progress=False)
    assert settings(explicit) == ("channels_last", "tensor")


def test_an_old_config_builds_the_old_model_and_data_a_new_one_the_fast_ones():
    old = prepare(ExperimentConfig.from_saved({**CACHED, "augment": True, "cache_features": False}))
    new = prepare(ExperimentConfig(**{**CACHED, "augment": True, "cache_features": False}))
    assert not isinstance(old.splits.train, ImageTensors) and isinstance(new.splits.train, ImageTensors)
    conv = next(m for m in old.model.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    assert not old.model.channels_last and conv.weight.is_contiguous()
    conv = next(m for m in new.model.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    assert new.model.channels_last and conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert (old.resolved["memory_format"], new.resolved["memory_format"]) == ("channels_last_on_cuda", "channels_last")


def test_channels_last_reaches_the_backbone_only_and_the_head_sees_nchw_float32():
    config = ExperimentConfig(head="node", node_state="map", ode_width=8, dataset="digits")
    torch.manual_seed(0)
    backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.ReLU())
    backbone.forward_features = backbone.forward
    model = TransferModel(backbone, head_from_config(config, 6, 4)).eval()
    images = torch.randn(5, 3, 8, 8)
    with torch.no_grad():
        before, features_before = model(images), model.features(images)
    apply_memory_format(model, "channels_last", torch.device("cpu"))
    assert backbone[0].weight.is_contiguous(memory_format=torch.channels_last)
    head_maps = [p for p in model.head.parameters() if p.dim() == 4]
    assert head_maps and all(p.is_contiguous() for p in head_maps)  # the ODE head keeps its own layout
    with torch.no_grad():
        features, after = model.features(images), model(images)
    assert features.is_contiguous() and features.dtype == after.dtype == torch.float32
    torch.testing.assert_close(features, features_before)
    torch.testing.assert_close(after, before)


@pytest.mark.parametrize("option, value, choices", [
    ("--memory-format", "nhwc", "['auto', 'channels_last', 'contiguous', 'channels_last_on_cuda']"),
    ("--data-path", "fast", "['auto', 'tensor', 'pil']")])
def test_bad_values_are_named_with_their_choices(option, value, choices, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", option, value, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"invalid parameter {option[2:].replace('-', '_')}={value!r}: expected one of {choices}" in err
    assert not (tmp_path / "runs").exists()
    with pytest.raises(ConfigError, match="memory_format='auto'.*settled"):
        apply_memory_format(TransferModel(torch.nn.Identity(), torch.nn.Identity()), "auto", torch.device("cpu"))
    with pytest.raises(ConfigError, match="data_path='auto'.*'tensor' or 'pil'"):
        build_datasets("digits", "", False, 32, None, 0, MEAN_STD, data_path="auto")


# ---------------------------------------------------------------- the tensor data path
def _images(loader) -> tuple[torch.Tensor, torch.Tensor]:
    batches = list(loader)
    return torch.cat([images for images, _ in batches]), torch.cat([torch.as_tensor(labels) for _, labels in batches])


def _same_evaluation_images(dataset: str, data_dir: str, image_size: int, val_size, **options) -> None:
    pil, tensor = (build_datasets(dataset, data_dir, False, image_size, val_size, 0, MEAN_STD, augment=False,
                                  data_path=path, **options) for path in ("pil", "tensor"))
    for split in ("train", "val", "test"):
        expected, expected_labels = _images(make_loader(getattr(pil, split), 64))
        images, labels = _images(make_loader(getattr(tensor, split), 64))
        assert torch.equal(images, expected) and torch.equal(labels, expected_labels), split
        assert getattr(tensor, split).indices == list(getattr(pil, split).indices)
    image, label = tensor.test[3]  # indexing one image gives the same as the PIL path's item
    assert torch.equal(image, pil.test[3][0]) and label == pil.test[3][1]


@pytest.mark.parametrize("image_size", [32, 64])
def test_tensor_path_gives_the_pil_paths_images_digits_and_cifar(tmp_path, monkeypatch, image_size):
    _same_evaluation_images("digits", "", image_size, None)
    fake_cifar10(tmp_path, monkeypatch, 20, 30)
    _same_evaluation_images("cifar10", str(tmp_path), image_size, 10)


def test_tensor_path_gives_the_pil_paths_images_image_folder(tmp_path):
    _same_evaluation_images("imagefolder", str(image_folder(tmp_path)), 48, None)


def test_tensor_path_gives_the_pil_paths_images_fashion_mnist(tmp_path):
    from test_data import need_fashion_files

    need_fashion_files()
    _same_evaluation_images("fashion-mnist", str(tmp_path), 32, 1000, train_subset=2000)
    splits = build_datasets("fashion-mnist", str(tmp_path), False, 32, None, 0, MEAN_STD, data_path="tensor")
    assert splits.test.images.shape == (10000, 1, 32, 32) and splits.test.images.dtype == torch.uint8  # 10 MB
    assert len(splits.train) + len(splits.val) + len(splits.test) == 70000


def test_crop_flip_is_torchvisions_padded_crop_and_flip_per_image():
    images = torch.randint(0, 256, (16, 1, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    out = crop_flip(images, torch.Generator().manual_seed(0))
    draws = torch.Generator().manual_seed(0)  # crop_flip draws the offsets, then the flips
    offsets = torch.randint(0, 9, (16, 2), generator=draws)
    flips = torch.rand(16, generator=draws) < 0.5
    assert 0 < flips.sum() < 16 and len({tuple(o) for o in offsets.tolist()}) > 1
    for image, result, (top, left), flip in zip(images, out, offsets.tolist(), flips.tolist()):
        expected = TF.crop(TF.pad(image, [4]), top, left, 32, 32)  # RandomCrop(32, padding=32 // 8): zero fill
        assert torch.equal(result, TF.horizontal_flip(expected) if flip else expected)


def test_augmented_batches_are_fixed_by_the_epoch_seed_and_shuffled_as_the_pil_path():
    tensor, pil = (build_datasets("digits", "", False, 32, None, 0, MEAN_STD, augment=True, data_path=path)
                   for path in ("tensor", "pil"))
    generator = torch.Generator()
    loader = make_loader(tensor.train, 64, shuffle=True, generator=generator)
    generator.manual_seed(11)
    first, labels = _images(loader)
    generator.manual_seed(11)
    again, _ = _images(loader)
    continued, _ = _images(loader)  # not re-seeded: the next epoch's augmentations
    generator.manual_seed(12)
    other, _ = _images(loader)
    assert torch.equal(first, again) and not torch.equal(first, continued) and not torch.equal(first, other)
    plain = build_datasets("digits", "", False, 32, None, 0, MEAN_STD, augment=False, data_path="tensor")
    assert not torch.equal(first, _images(make_loader(plain.train, 64, shuffle=True,
                                                      generator=torch.Generator().manual_seed(11)))[0])
    _, pil_labels = _images(make_loader(pil.train, 64, shuffle=True, generator=torch.Generator().manual_seed(11)))
    assert torch.equal(labels, pil_labels)  # the same order of images as the PIL path's loader


def test_a_fine_tuned_run_on_the_tensor_path_resumes_to_the_same_numbers(tmp_path):
    params = dict(dataset="digits", image_size=32, head="fc", train_subset=128, batch_size=32, augment=True,
                  dropout=0.3, epochs=2)
    straight = run_experiment(ExperimentConfig(out=str(tmp_path / "straight"), **params), progress=False)
    assert settings(straight) == ("channels_last", "tensor")
    stopped = run_experiment(ExperimentConfig(out=str(tmp_path / "resumed"), **{**params, "epochs": 1}),
                             progress=False)
    assert main(["run", "--out", str(stopped), "--resume", "--epochs", "2", "--quiet"]) == 0
    pd.testing.assert_frame_equal(comparable(stopped), comparable(straight))
    metrics = [json.loads((d / "metrics.json").read_text()) for d in (stopped, straight)]
    for key in ("test_acc", "test_loss", "val_acc", "train_loss", "best_epoch"):
        assert metrics[0][key] == metrics[1][key], key


def test_a_seed_keeps_the_settings_it_was_started_with_and_a_new_seed_gets_the_fast_ones(tmp_path):
    from node_transfer.suites.runner import run_suite

    out = run_suite("smoke", "cpu", seeds=1, out=tmp_path / "new", labels=("fc",), options=IN_PROCESS)
    assert json.loads((out / "suite.json").read_text())["speed"] == {"0": FAST}
    assert settings(out / "fc-s0") == tuple(FAST.values())
    old = run_suite("smoke", "cpu", seeds=1, out=tmp_path / "old", labels=("fc",), options=IN_PROCESS)
    meta = json.loads((old / "suite.json").read_text())
    del meta["speed"]  # a suite started before the settings existed: its seed 0 was made with the old ones
    (old / "suite.json").write_text(json.dumps(meta))
    run_suite("smoke", "cpu", seeds=2, out=old, resume=True, options=IN_PROCESS)
    assert settings(old / "node-s0") == tuple(LEGACY[k] for k in FAST)  # added later to seed 0: as its first run
    assert json.loads((old / "node-s0" / "config.json").read_text())["ode_backend"] == LEGACY["ode_backend"]
    assert settings(old / "fc-s1") == settings(old / "node-s1") == tuple(FAST.values())  # a new seed: fast
    assert json.loads((old / "suite.json").read_text())["speed"] == {"0": LEGACY_LOOP, "1": FAST}
