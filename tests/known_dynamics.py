"""ODE right-hand sides with known behaviour, shared by the solver tests of both backends."""

from torch import nn

from node_transfer.numerics.dynamics import LinearDynamics

__all__ = ["Explodes", "LinearDynamics"]


class Explodes(nn.Module):
    """dh/dt = h^2 blows up at t = 1/h(0): a solve past it must fail."""

    def check_state(self, h):
        pass

    def forward(self, t, h):
        return h * h
