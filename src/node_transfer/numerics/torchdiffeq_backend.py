"""torchdiffeq backend of the ODE block: `odeint`, or `odeint_adjoint` for gradients by the adjoint method.

torchdiffeq solves the whole batch as one system with one step size. Its failures are bare asserts (which
`python -O` would strip): `translate_errors` turns them into `ODESolveError` naming the solver, tolerances and
NFE, around the solve here and, for the adjoint, around `loss.backward()` (the block offers it to the trainer).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn
from torchdiffeq import odeint, odeint_adjoint

from ..core.errors import ODESolveError
from ..core.solvers import SolverSettings

__all__ = ["TorchdiffeqBackend"]

#: Fragments of torchdiffeq's assert messages -> the reason ODESolveError gives.
_REASONS = (("max_num_steps", "more than max_num_steps={} steps"), ("underflow in dt", "step size underflow"),
            ("non-finite", "non-finite state"))


class TorchdiffeqBackend:
    """Solves with torchdiffeq; the methods are `solvers.solver_names("torchdiffeq")`."""

    name = "torchdiffeq"

    def check(self, settings: SolverSettings) -> None:
        """Every torchdiffeq method runs with and without the adjoint: nothing to refuse."""

    @contextlib.contextmanager
    def translate_errors(self, settings: SolverSettings, func: nn.Module) -> Iterator[None]:
        """Turn torchdiffeq's bare asserts into ODESolveError (with `func.nfe`, the evaluations so far)."""
        try:
            yield
        except AssertionError as exc:
            text = str(exc)
            for key, reason in _REASONS:
                if key in text:
                    raise ODESolveError(reason.format(settings.max_num_steps), settings.solver, settings.rtol,
                                        settings.atol, func.nfe) from None
            raise ODESolveError(f"solver assertion: {text[:200]}", settings.solver, settings.rtol, settings.atol,
                                func.nfe) from exc

    def solve(self, func: nn.Module, state, t_end: float, settings: SolverSettings):
        """The state at t_end (a tensor, or a tuple like `state`), solved from t = 0."""
        h0 = state[0] if isinstance(state, tuple) else state
        times = torch.tensor([0.0, t_end], device=h0.device, dtype=h0.dtype)
        fixed = settings.fixed_step
        options = {"step_size": settings.step_size} if fixed else {"max_num_steps": settings.max_num_steps}
        with self.translate_errors(settings, func):
            if not settings.adjoint:
                solution = odeint(func, state, times, rtol=settings.rtol, atol=settings.atol, method=settings.solver,
                                  options=options)
            else:
                adjoint_options = dict(options)
                if settings.seminorm and not fixed:
                    adjoint_options["norm"] = "seminorm"
                solution = odeint_adjoint(func, state, times, rtol=settings.rtol, atol=settings.atol,
                                          method=settings.solver, options=options, adjoint_options=adjoint_options,
                                          adjoint_params=tuple(func.parameters()))
        return tuple(s[-1] for s in solution) if isinstance(state, tuple) else solution[-1]
