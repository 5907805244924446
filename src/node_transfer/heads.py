"""Classification heads on backbone features: `fc` (the paper's baseline), `node` (ODE block, then FC) and
`mlp` (the NODE head's control: its dynamics applied once, without time, integration or residual, then FC).

All take either pooled features (batch, C) or a feature map (batch, C, H, W) and return logits. All name
their final linear layer `fc`, so a head started from a trained FC baseline inherits its classifier.
"""

from __future__ import annotations

import torch
from torch import nn

from .dynamics import activation_layer, make_dynamics
from .errors import ConfigError
from .ode import ODEBlock


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (optionally only those that require gradients)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def _pool(features: torch.Tensor) -> torch.Tensor:
    return features.mean(dim=(2, 3)) if features.dim() == 4 else features


class FCHead(nn.Module):
    """Global average pool (if given a map), dropout, linear: what the paper's baseline puts on B0."""

    def __init__(self, num_features: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_features = num_features
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(num_features, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled = _pool(features)
        if pooled.dim() != 2 or pooled.shape[1] != self.num_features:
            raise ValueError(f"features must have shape (batch, {self.num_features}) or "
                             f"(batch, {self.num_features}, H, W), got {tuple(features.shape)}")
        return self.fc(self.dropout(pooled))


class MLPHead(nn.Module):
    """LayerNorm -> Linear(C, width) -> activation -> Linear(width, C) -> dropout -> fc on the pooled vector.

    The control for a NODE head: the same layers as its vector dynamics (`MLPDynamics`) without the time input,
    the integration or the skip connection, so its parameter count is the NODE head's less width + C.
    """

    def __init__(self, num_features: int, num_classes: int, width: int = 256, activation: str = "softplus",
                 dropout: float = 0.0) -> None:
        super().__init__()
        act = activation_layer(activation)
        self.num_features = num_features
        self.body = nn.Sequential(nn.LayerNorm(num_features), nn.Linear(num_features, width), act,
                                  nn.Linear(width, num_features))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(num_features, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled = _pool(features)
        if pooled.dim() != 2 or pooled.shape[1] != self.num_features:
            raise ValueError(f"features must have shape (batch, {self.num_features}) or "
                             f"(batch, {self.num_features}, H, W), got {tuple(features.shape)}")
        return self.fc(self.dropout(self.body(pooled)))


class NODEHead(nn.Module):
    """ODE block on the pooled vector (`state='vector'`) or on the feature map (`state='map'`), then FC."""

    def __init__(self, num_features: int, num_classes: int, block: ODEBlock, state: str = "vector",
                 dropout: float = 0.0) -> None:
        super().__init__()
        if state not in ("vector", "map"):
            raise ConfigError("node_state", state, "one of ['vector', 'map']")
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


def build_head(kind: str, num_features: int, num_classes: int, *, dropout: float = 0.0,
               node_state: str = "vector", ode_width: int = 256, ode_activation: str = "softplus",
               zero_init: bool = False, augment_dim: int = 0, solver: str = "dopri5", rtol: float = 1e-5,
               atol: float = 1e-5, t_end: float = 1.0, step_size: float | None = None,
               adjoint: bool = False, seminorm: bool = False, max_num_steps: int = 1000, steer: float = 0.0,
               regularization: str = "none", ode_backend: str = "torchdiffeq") -> nn.Module:
    """Build an `fc`, `mlp` or `node` head; the keyword arguments are the config's parameters of the same name."""
    if kind == "fc":
        return FCHead(num_features, num_classes, dropout)
    if kind == "mlp":
        return MLPHead(num_features, num_classes, ode_width, ode_activation, dropout)
    if kind != "node":
        raise ConfigError("head", kind, "one of ['fc', 'mlp', 'node']")
    dynamics = make_dynamics(node_state, num_features, ode_width, ode_activation, zero_init, augment_dim)
    block = ODEBlock(dynamics, solver=solver, rtol=rtol, atol=atol, t_end=t_end, step_size=step_size,
                     adjoint=adjoint, seminorm=seminorm, max_num_steps=max_num_steps, augment_dim=augment_dim,
                     steer=steer, regularization=regularization, backend=ode_backend)
    return NODEHead(num_features, num_classes, block, node_state, dropout)


def ode_blocks(module: nn.Module) -> list[ODEBlock]:
    """Every ODE block inside a model (for NFE accounting and fallback)."""
    return [m for m in module.modules() if isinstance(m, ODEBlock)]
