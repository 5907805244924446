"""Right-hand sides f(t, h) of the ODE heads (after torchdiffeq's examples/odenet_mnist.py).

Every dynamics is an `nn.Module` f(t, h) with a `check_state(h)` method that the ODE block calls on h(0).
`MLPDynamics` acts on a feature vector, `ConvDynamics` on a feature map, `LinearDynamics` is the reference ODE
with a closed form; `make_dynamics` picks one for a head's state.
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.choices import ACTIVATIONS, NODE_STATES
from ..core.config import default
from ..core.errors import ConfigError

__all__ = ["ACTIVATIONS", "ConcatConv2d", "ConcatLinear", "ConvDynamics", "LinearDynamics", "MLPDynamics",
           "activation_layer", "make_dynamics"]


def activation_layer(name: str) -> nn.Module:
    """The activation layer of that name (one of `ACTIVATIONS`)."""
    if name not in ACTIVATIONS:
        raise ConfigError("ode_activation", name, f"one of {sorted(ACTIVATIONS)}")
    return getattr(nn, ACTIVATIONS[name])()


class ConcatLinear(nn.Module):
    """Linear layer that sees time as one extra input feature (Chen et al. 2018)."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim_in + 1, dim_out)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        tt = t.to(x).expand(x.shape[0], 1)
        return self.linear(torch.cat([tt, x], dim=1))


class ConcatConv2d(nn.Module):
    """3x3 convolution that sees time as one extra constant channel (odenet_mnist's ConcatConv2d)."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim_in + 1, dim_out, kernel_size=3, padding=1)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        tt = t.to(x).expand(x.shape[0], 1, x.shape[2], x.shape[3])
        return self.conv(torch.cat([tt, x], dim=1))


class MLPDynamics(nn.Module):
    """f(t, h) for a feature vector: LayerNorm -> ConcatLinear -> activation -> ConcatLinear.

    The LayerNorm keeps f bounded whatever the scale of the backbone features (a less stiff head), but it
    discards the state's scale: `norm=False` drops it (low-dimensional toy states need the scale).
    `zero_init` zeroes the last layer so the block starts as the identity map.
    """

    def __init__(self, dim: int, width: int, activation: str = default("ode_activation"), zero_init: bool = False,
                 norm: bool = True):
        super().__init__()
        act = activation_layer(activation)
        self.dim = dim
        self.norm = nn.LayerNorm(dim) if norm else nn.Identity()
        self.fc1 = ConcatLinear(dim, width)
        self.act = act
        self.fc2 = ConcatLinear(width, dim)
        if zero_init:
            nn.init.zeros_(self.fc2.linear.weight)
            nn.init.zeros_(self.fc2.linear.bias)

    def check_state(self, h: torch.Tensor) -> None:
        if h.dim() != 2 or h.shape[1] != self.dim:
            raise ValueError(f"features must have shape (batch, {self.dim}) for vector dynamics, "
                             f"got {tuple(h.shape)}")

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.fc2(t, self.act(self.fc1(t, self.norm(h))))


class ConvDynamics(nn.Module):
    """f(t, h) for a feature map, as odenet_mnist's ODEfunc: (GroupNorm, ReLU, ConcatConv2d) x 2, GroupNorm.

    GroupNorm, not BatchNorm: batch statistics would change with every function evaluation.
    """

    def __init__(self, channels: int, width: int, zero_init: bool = False) -> None:
        super().__init__()
        self.channels = channels
        self.norm1 = nn.GroupNorm(_groups(channels), channels)
        self.conv1 = ConcatConv2d(channels, width)
        self.norm2 = nn.GroupNorm(_groups(width), width)
        self.conv2 = ConcatConv2d(width, channels)
        self.norm3 = nn.GroupNorm(_groups(channels), channels)
        self.relu = nn.ReLU()
        if zero_init:  # zero output of conv2 -> norm3 maps it to its bias, zero as well
            nn.init.zeros_(self.conv2.conv.weight)
            nn.init.zeros_(self.conv2.conv.bias)
            nn.init.zeros_(self.norm3.weight)

    def check_state(self, h: torch.Tensor) -> None:
        if h.dim() != 4 or h.shape[1] != self.channels:
            raise ValueError(f"features must have shape (batch, {self.channels}, height, width) for map "
                             f"dynamics, got {tuple(h.shape)}")

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        out = self.conv1(t, self.relu(self.norm1(h)))
        out = self.conv2(t, self.relu(self.norm2(out)))
        return self.norm3(out)


class LinearDynamics(nn.Module):
    """f(t, h) = A h for a batch of row vectors h: a reference ODE with the closed form h(T) = expm(A T) h(0).

    A is a parameter, so gradients through a solve (direct or adjoint) can be checked against the closed form.
    """

    def __init__(self, matrix: torch.Tensor) -> None:
        super().__init__()
        if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"matrix must be square, got shape {tuple(matrix.shape)}")
        self.matrix = nn.Parameter(matrix.clone())

    def check_state(self, h: torch.Tensor) -> None:
        if h.dim() != 2 or h.shape[1] != self.matrix.shape[0]:
            raise ValueError(f"state must have shape (batch, {self.matrix.shape[0]}), got {tuple(h.shape)}")

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return h @ self.matrix.T


def _groups(channels: int) -> int:
    for groups in (32, 16, 8, 4, 2):
        if channels % groups == 0:
            return groups
    return 1


def make_dynamics(state: str, num_features: int, width: int, activation: str = default("ode_activation"),
                  zero_init: bool = False, augment_dim: int = 0) -> nn.Module:
    """Dynamics for a 'vector' (pooled features) or 'map' (last feature map) state of the given size."""
    dim = num_features + augment_dim
    if state == "vector":
        return MLPDynamics(dim, width, activation, zero_init)
    if state == "map":
        return ConvDynamics(dim, width, zero_init)
    raise ConfigError("node_state", state, f"one of {list(NODE_STATES)}")
