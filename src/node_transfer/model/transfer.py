"""The transfer model: a timm backbone's last feature map, then an `fc` or `node` head."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..core.errors import ConfigError
from .heads import count_parameters, head_from_config

__all__ = ["TransferModel", "apply_memory_format", "head_from_config", "load_initial_weights"]


class TransferModel(nn.Module):
    """backbone.forward_features -> head. The head runs in float32 even under autocast (ODE tolerances).

    With `channels_last` set (`apply_memory_format`), images enter the backbone as NHWC and its features leave it
    as NCHW again: heads, pooling and cached features see the layout they always had."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head
        self.channels_last = False

    def features(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
            return self.backbone.forward_features(images).contiguous()
        return self.backbone.forward_features(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.features(images).float()
        with torch.autocast(device_type=features.device.type, enabled=False):
            return self.head(features)

    def parameter_counts(self) -> dict[str, int]:
        return {"params_total": count_parameters(self), "params_head": count_parameters(self.head),
                "params_trainable": count_parameters(self, trainable_only=True)}


def apply_memory_format(model: TransferModel, memory_format: str, device: torch.device) -> None:
    """Lay out the model for `memory_format` (settled, see `speed`): `channels_last` converts the backbone and its
    inputs; `channels_last_on_cuda` converts the whole model on CUDA only, as every run before the setting did."""
    if memory_format == "channels_last":
        model.backbone.to(memory_format=torch.channels_last)
        model.channels_last = True
    elif memory_format == "channels_last_on_cuda":
        if device.type == "cuda":
            model.to(memory_format=torch.channels_last)
    elif memory_format != "contiguous":
        raise ConfigError("memory_format", memory_format, "'channels_last', 'contiguous' or 'channels_last_on_cuda' "
                          "('auto' is settled before the model is built)")


def load_initial_weights(model: TransferModel, checkpoint: dict[str, Any], source: str) -> list[str]:
    """Start from a finished run (the paper's protocol: the trained baseline, then a NODE block added).

    Every backbone tensor must match by name and shape; head tensors are taken where name and shape match
    (so a NODE head inherits the baseline's `fc`). Returns the names of the head tensors taken.
    """
    state = checkpoint["model"]
    own = model.state_dict()
    backbone_keys = [k for k in own if k.startswith("backbone.")]
    missing = [k for k in backbone_keys if k not in state]
    mismatched = [k for k in backbone_keys if k in state and state[k].shape != own[k].shape]
    if missing or mismatched:
        bad = (missing or mismatched)[0]
        raise ConfigError("init_from", source, f"a checkpoint of the same backbone (tensor {bad!r} is "
                          f"{'missing' if missing else 'of another shape'}; checkpoint backbone: "
                          f"{checkpoint.get('config', {}).get('backbone', 'unknown')})")
    taken = {k: state[k] for k in backbone_keys}
    head_taken = []
    for key, value in own.items():
        if key.startswith("head.") and key in state:
            if state[key].shape == value.shape:
                taken[key] = state[key]
                head_taken.append(key)
            elif (key == "head.fc.weight" and state[key].dim() == 2 and state[key].shape[0] == value.shape[0]
                  and state[key].shape[1] < value.shape[1]):
                padded = value.new_zeros(value.shape)  # augmented state: extra inputs start at weight 0
                padded[:, : state[key].shape[1]] = state[key]
                taken[key] = padded
                head_taken.append(key)
    if checkpoint.get("num_classes") not in (None, model.head.fc.out_features):
        raise ConfigError("init_from", source, f"a checkpoint with {model.head.fc.out_features} classes "
                          f"(it has {checkpoint['num_classes']})")
    model.load_state_dict(taken, strict=False)
    return head_taken
