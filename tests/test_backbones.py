"""Backbones: the offline Lite0 weights are real ImageNet weights; weights never fall back silently."""

import time

import pytest
import skimage.data
import timm
import torch
from PIL import Image

from node_transfer.backbones import check_backbone_name, create_backbone, feature_shape, lite0_imagenet_state_dict
from node_transfer.errors import BackboneError, ConfigError


@pytest.fixture(scope="module")
def imagenet_lite0():
    model = timm.create_model("tf_efficientnet_lite0", num_classes=1000)
    model.load_state_dict(lite0_imagenet_state_dict())
    return model.eval()


def top1(model, image) -> int:
    transform = timm.data.create_transform(**timm.data.resolve_model_data_config(model))
    with torch.no_grad():
        return model(transform(Image.fromarray(image)).unsqueeze(0)).argmax().item()


def test_offline_lite0_weights_classify_real_photos(imagenet_lite0):
    assert 281 <= top1(imagenet_lite0, skimage.data.chelsea()) <= 285  # ImageNet's domestic cat classes
    assert top1(imagenet_lite0, skimage.data.coffee()) == 967  # espresso


def test_imagenet_backbone_differs_from_random_and_keeps_its_preprocessing():
    pretrained, config = create_backbone("tf_efficientnet_lite0", "imagenet")
    random_init, _ = create_backbone("tf_efficientnet_lite0", "none")
    assert config["mean"] == (0.5, 0.5, 0.5) and config["std"] == (0.5, 0.5, 0.5)
    assert not torch.equal(pretrained.conv_stem.weight, random_init.conv_stem.weight)
    torch.testing.assert_close(pretrained.conv_stem.weight, lite0_imagenet_state_dict()["conv_stem.weight"])
    assert feature_shape(pretrained, 64) == (1280, 2, 2) and pretrained.num_features == 1280


def test_hub_weights_fail_fast_offline_and_name_the_alternatives():
    start = time.perf_counter()
    with pytest.raises(BackboneError) as info:
        create_backbone("efficientnet_b0", "imagenet")
    assert time.perf_counter() - start < 30
    assert "tf_efficientnet_lite0" in str(info.value) and "weights=none" in str(info.value)


def test_unknown_backbone_is_a_config_error_with_suggestions():
    with pytest.raises(ConfigError) as info:
        check_backbone_name("efficientnet_b00")
    assert info.value.name == "backbone" and "efficientnet_b0" in str(info.value)


def test_weights_from_a_file_and_from_a_run_checkpoint(tmp_path):
    source, _ = create_backbone("test_efficientnet", "none")
    torch.save(source.state_dict(), tmp_path / "plain.pt")
    loaded, _ = create_backbone("test_efficientnet", str(tmp_path / "plain.pt"))
    torch.testing.assert_close(loaded.state_dict(), source.state_dict())
    checkpoint = {"model": {**{f"backbone.{k}": v for k, v in source.state_dict().items()},
                            "head.fc.weight": torch.zeros(3, 4)}}
    torch.save(checkpoint, tmp_path / "run.pt")
    from_run, _ = create_backbone("test_efficientnet", str(tmp_path / "run.pt"))
    torch.testing.assert_close(from_run.state_dict(), source.state_dict())


def test_bad_weight_files_are_backbone_errors(tmp_path):
    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(BackboneError, match="cannot read"):
        create_backbone("test_efficientnet", str(tmp_path / "corrupt.pt"))
    other, _ = create_backbone("test_resnet", "none")
    torch.save(other.state_dict(), tmp_path / "other.pt")
    with pytest.raises(BackboneError, match="does not fit"):
        create_backbone("test_efficientnet", str(tmp_path / "other.pt"))
