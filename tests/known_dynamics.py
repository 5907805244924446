"""ODE right-hand sides with known behaviour, shared by the solver tests of both backends."""

from collections.abc import Callable, Iterator

import torch
from torch import nn

from node_transfer.core.errors import ODESolveError
from node_transfer.numerics.dynamics import LinearDynamics, MLPDynamics

__all__ = ["Explodes", "LinearDynamics", "tightest_forward_solves"]


class Explodes(nn.Module):
    """dh/dt = h^2 blows up at t = 1/h(0): a solve past it must fail."""

    def check_state(self, h):
        pass

    def forward(self, t, h):
        return h * h


def tightest_forward_solves(make_block: Callable[..., nn.Module], seeds: int = 8) -> Iterator[tuple[nn.Module,
                                                                                                       torch.Tensor]]:
    """Per seed, an adjoint block of a random 16-dim MLP flow at rtol = atol = 1e-6 with the smallest step bound
    (`max_num_steps`) its forward solve passes, and that solve's output: the backward solve, which also controls
    the parameters' adjoints, often needs more steps, so some of these exceed the bound."""
    for seed in range(seeds):
        torch.manual_seed(seed)
        dynamics, inputs = MLPDynamics(16, 32), torch.randn(8, 16)
        for bound in range(1, 20):
            block = make_block(dynamics, rtol=1e-6, atol=1e-6, adjoint=True, max_num_steps=bound)
            try:
                out = block(inputs)
            except ODESolveError:
                continue
            yield block, out
            break
