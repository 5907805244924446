"""ODE right-hand sides with known behaviour, shared by the solver tests of both backends."""

import torch
from torch import nn


class LinearDynamics(nn.Module):
    """dh/dt = A h, whose solution is h(T) = expm(A T) h(0)."""

    def __init__(self, matrix: torch.Tensor) -> None:
        super().__init__()
        self.matrix = nn.Parameter(matrix.clone())

    def check_state(self, h):
        assert h.shape[1] == self.matrix.shape[0]

    def forward(self, t, h):
        return h @ self.matrix.T


class Explodes(nn.Module):
    """dh/dt = h^2 blows up at t = 1/h(0): a solve past it must fail."""

    def check_state(self, h):
        pass

    def forward(self, t, h):
        return h * h
