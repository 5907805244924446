"""Classification heads on backbone features: `fc` (the paper's baseline), `node` (ODE block, then FC) and
`mlp` (the NODE head's control: its dynamics applied once, without time, integration or residual, then FC).

All take either pooled features (batch, C) or a feature map (batch, C, H, W) and return logits. All name
their final linear layer `fc`, so a head started from a trained FC baseline inherits its classifier.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..core.choices import HEADS, NODE_STATES
from ..core.config import ExperimentConfig, default
from ..core.errors import ConfigError
from ..core.solvers import SolverSettings
from ..numerics.dynamics import activation_layer, make_dynamics
from ..numerics.ode import ODEBlock


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (optionally only those that require gradients)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def _pool(features: torch.Tensor) -> torch.Tensor:
    return features.mean(dim=(2, 3)) if features.dim() == 4 else features


def _pooled_vector(features: torch.Tensor, num_features: int) -> torch.Tensor:
    """Pooled features (batch, num_features) from a vector or a map; a clear error for any other shape."""
    pooled = _pool(features)
    if pooled.dim() != 2 or pooled.shape[1] != num_features:
        raise ValueError(f"features must have shape (batch, {num_features}) or (batch, {num_features}, H, W), "
                         f"got {tuple(features.shape)}")
    return pooled


class FCHead(nn.Module):
    """Global average pool (if given a map), dropout, linear: what the paper's baseline puts on B0."""

    def __init__(self, num_features: int, num_classes: int, dropout: float = default("dropout")) -> None:
        super().__init__()
        self.num_features = num_features
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(num_features, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(_pooled_vector(features, self.num_features)))


class MLPHead(nn.Module):
    """LayerNorm -> Linear(C, width) -> activation -> Linear(width, C) -> dropout -> fc on the pooled vector.

    The control for a NODE head: the same layers as its vector dynamics (`MLPDynamics`) without the time input,
    the integration or the skip connection, so its parameter count is the NODE head's less width + C.
    """

    def __init__(self, num_features: int, num_classes: int, width: int = default("ode_width"),
                 activation: str = default("ode_activation"), dropout: float = default("dropout")) -> None:
        super().__init__()
        act = activation_layer(activation)
        self.num_features = num_features
        self.body = nn.Sequential(nn.LayerNorm(num_features), nn.Linear(num_features, width), act,
                                  nn.Linear(width, num_features))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(num_features, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.body(_pooled_vector(features, self.num_features))))


class NODEHead(nn.Module):
    """ODE block on the pooled vector (`state='vector'`) or on the feature map (`state='map'`), then FC."""

    def __init__(self, num_features: int, num_classes: int, block: ODEBlock, state: str = default("node_state"),
                 dropout: float = default("dropout")) -> None:
        super().__init__()
        if state not in NODE_STATES:
            raise ConfigError("node_state", state, f"one of {list(NODE_STATES)}")
        self.num_features, self.state = num_features, state
        self.block = block
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(num_features + block.augment_dim, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.state == "vector":
            return self.fc(self.dropout(self.block(_pool(features))))
        if features.dim() != 4:
            raise ValueError(f"a map-state NODE head needs features of shape (batch, {self.num_features}, H, W),"
                             f" got {tuple(features.shape)}")
        return self.fc(self.dropout(_pool(self.block(features))))


HeadBuilder = Callable[[ExperimentConfig, int, int], nn.Module]
#: One builder per head of `core.choices.HEAD_KINDS` (config, feature channels, classes -> the head).
HEAD_BUILDERS: dict[str, HeadBuilder] = {}


def builds(name: str) -> Callable[[HeadBuilder], HeadBuilder]:
    """Register the decorated function as the builder of head `name`."""
    def register(builder: HeadBuilder) -> HeadBuilder:
        HEAD_BUILDERS[name] = builder
        return builder
    return register


@builds("fc")
def _fc(config: ExperimentConfig, num_features: int, num_classes: int) -> nn.Module:
    return FCHead(num_features, num_classes, config.dropout)


@builds("mlp")
def _mlp(config: ExperimentConfig, num_features: int, num_classes: int) -> nn.Module:
    return MLPHead(num_features, num_classes, config.ode_width, config.ode_activation, config.dropout)


@builds("node")
def _node(config: ExperimentConfig, num_features: int, num_classes: int) -> nn.Module:
    dynamics = make_dynamics(config.node_state, num_features, config.ode_width, config.ode_activation,
                             config.zero_init, config.augment_dim)
    block = ODEBlock(dynamics, SolverSettings.from_config(config), augment_dim=config.augment_dim, steer=config.steer,
                     regularization=config.regularization)
    return NODEHead(num_features, num_classes, block, config.node_state, config.dropout)


def head_from_config(config: ExperimentConfig, num_features: int, num_classes: int) -> nn.Module:
    """The head a config asks for, by its builder in `HEAD_BUILDERS`."""
    if config.head not in HEAD_BUILDERS:
        raise ConfigError("head", config.head, f"one of {list(HEADS)}")
    return HEAD_BUILDERS[config.head](config, num_features, num_classes)


def build_head(kind: str, num_features: int, num_classes: int, **options: Any) -> nn.Module:
    """`head_from_config` of the default config with `head=kind` and `options` (config parameters) changed."""
    return head_from_config(ExperimentConfig.from_dict({"head": kind, **options}), num_features, num_classes)


def ode_blocks(module: nn.Module) -> list[ODEBlock]:
    """Every ODE block inside a model (for NFE accounting and fallback)."""
    return [m for m in module.modules() if isinstance(m, ODEBlock)]
