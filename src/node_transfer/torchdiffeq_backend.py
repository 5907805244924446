"""torchdiffeq backend of the ODE block: `odeint`, or `odeint_adjoint` for gradients by the adjoint method.

torchdiffeq solves the whole batch as one system with one step size. Its failures are bare asserts; the block
turns them into `ODESolveError` (`ODEBlock.translate_errors`).
"""

from __future__ import annotations

import torch
from torch import nn
from torchdiffeq import odeint, odeint_adjoint

from .solvers import is_fixed_step

__all__ = ["TorchdiffeqBackend"]


class TorchdiffeqBackend:
    """Solves with torchdiffeq; the methods are `solvers.solver_names("torchdiffeq")`."""

    name = "torchdiffeq"

    def check(self, adjoint: bool) -> None:
        """Every torchdiffeq method runs with and without the adjoint: nothing to refuse."""

    def solve(self, func: nn.Module, state, times: torch.Tensor, *, solver: str, rtol: float, atol: float,
              step_size: float | None, max_num_steps: int, adjoint: bool, seminorm: bool):
        """Solve from times[0] to times[-1]; returns the states at `times`, stacked (odeint's output)."""
        fixed = is_fixed_step(solver, self.name)
        options = {"step_size": step_size} if fixed else {"max_num_steps": max_num_steps}
        if not adjoint:
            return odeint(func, state, times, rtol=rtol, atol=atol, method=solver, options=options)
        adjoint_options = dict(options)
        if seminorm and not fixed:
            adjoint_options["norm"] = "seminorm"
        return odeint_adjoint(func, state, times, rtol=rtol, atol=atol, method=solver, options=options,
                              adjoint_options=adjoint_options, adjoint_params=tuple(func.parameters()))
