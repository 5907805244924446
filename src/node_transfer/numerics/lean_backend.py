"""The `lean` backend of the ODE block: torchdiffeq's adaptive methods in a loop of our own (`lean_rk`).

Beside the libraries, not instead of them: the adaptive Runge-Kutta methods (dopri5, bosh3, adaptive_heun,
fehlberg2, dopri8) run torchdiffeq's algorithm and tableaus in `lean_rk.integrate`, whose bookkeeping costs
little next to the dynamics; fixed-grid methods (euler, rk4, the Adams methods, and so the fallback) are solved by
torchdiffeq itself. It is the default of new runs (`solvers.DEFAULT_BACKEND`: the fastest path measured that
takes torchdiffeq's steps, bench/node_step.py and bench/lean_equivalence.py); torchdiffeq and torchode stay
selectable, and every run saved with torchdiffeq keeps it. Gradients come by backpropagation through the solve or by the
adjoint method, written after torchdiffeq's `OdeintAdjointMethod`: the forward solve keeps no graph, and the
backward solve integrates [y, adj_y, adj_params] from T back to 0 with the same method, tolerances and step bound,
its error controlled by the largest RMS over y, adj_y and every parameter's adjoint (torchdiffeq's default), or
over y and adj_y alone with `seminorm` (Kidger et al. 2021). tests/test_lean_backend.py checks solutions, NFE and
gradients against torchdiffeq and closed forms; bench/node_step.py times it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn

from ..core.errors import ODESolveError
from ..core.solvers import SolverSettings
from .lean_rk import SolveFailure, integrate, rms_norm, segment_norm
from .torchdiffeq_backend import TorchdiffeqBackend

__all__ = ["LeanBackend"]

State = torch.Tensor | tuple[torch.Tensor, ...]


class _Packed:
    """A state (a tensor, or the regularised solve's tuple) as one tensor for the solver, and back."""

    def __init__(self, state: State) -> None:
        self.is_tuple = isinstance(state, tuple)
        parts = state if isinstance(state, tuple) else (state,)
        self.shapes = [part.shape for part in parts]
        self.sizes = [part.numel() for part in parts]

    def pack(self, state: State) -> torch.Tensor:
        return torch.cat([part.reshape(-1) for part in state]) if isinstance(state, tuple) else state

    def unpack(self, packed: torch.Tensor) -> State:
        if not self.is_tuple:
            return packed
        return tuple(piece.view(shape) for piece, shape in zip(packed.split(self.sizes), self.shapes))

    def wrap(self, func: nn.Module) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """f on the packed state."""
        if not self.is_tuple:
            return func
        return lambda t, y: self.pack(func(t, self.unpack(y)))

    def norm(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """torchdiffeq's: the RMS for a tensor, the largest RMS of the parts for a tuple."""
        return segment_norm(self.sizes) if self.is_tuple else rms_norm


class _Adjoint(torch.autograd.Function):
    """h(T) of a solve whose gradients come from a backward solve of the adjoint system (no forward graph kept)."""

    @staticmethod
    def forward(ctx, solve: _AdjointSolve, y0: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            y_end = solve.forward(y0)
        ctx.solve = solve
        ctx.save_for_backward(y_end, *params)
        return y_end

    @staticmethod
    def backward(ctx, grad_end: torch.Tensor):
        y_end, *params = ctx.saved_tensors
        grad_y0, grad_params = ctx.solve.backward(y_end, grad_end, params)
        return (None, grad_y0, *grad_params)


class _AdjointSolve:
    """The two solves of the adjoint method for one call of the block."""

    def __init__(self, func: nn.Module, packed: _Packed, t_end: float, settings: SolverSettings,
                 fail: Callable[[SolveFailure, str], ODESolveError]) -> None:
        self.func, self.packed, self.t_end, self.settings, self.fail = func, packed, t_end, settings, fail

    def _integrate(self, f, y0: torch.Tensor, t0: float, t1: float, norm, stage: str, **parts: int) -> torch.Tensor:
        try:
            return integrate(f, y0, t0, t1, self.settings, norm, **parts)
        except SolveFailure as exc:
            raise self.fail(exc, stage) from None

    def forward(self, y0: torch.Tensor) -> torch.Tensor:
        return self._integrate(self.packed.wrap(self.func), y0, 0.0, self.t_end, self.packed.norm(), "")

    def backward(self, y_end: torch.Tensor, grad_end: torch.Tensor, params: list[torch.Tensor]):
        f, n, shape = self.packed.wrap(self.func), y_end.numel(), y_end.shape
        sizes = [p.numel() for p in params]

        def augmented(t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
            """d/dt [y, a, a_params] = [f, -a df/dy, -a df/dparams], from [y, a] (a_params is a quadrature)."""
            with torch.enable_grad():
                y = z[:n].view(shape).detach().requires_grad_(True)
                dy = f(t, y)
                vjps = torch.autograd.grad(dy, (y, *params), -z[n:2 * n].view(shape), allow_unused=True)
            return torch.cat([dy.reshape(-1)] + [(g if g is not None else torch.zeros_like(x)).reshape(-1)
                                                 for g, x in zip(vjps, (y, *params))])

        state_sizes = self.packed.sizes * 2  # y and adj_y, each in its parts
        parts = {"driving": 2 * n}
        if self.settings.seminorm:  # the error of y and adj_y only
            norm, parts["controlled"] = segment_norm(state_sizes), 2 * n
        else:
            norm = segment_norm(state_sizes + sizes)
        z0 = torch.cat([y_end.reshape(-1), grad_end.reshape(-1), y_end.new_zeros(sum(sizes))])
        z = self._integrate(augmented, z0, self.t_end, 0.0, norm, " in the adjoint's backward solve", **parts)
        grads = z[2 * n:].split(sizes)
        return z[n:2 * n].view(shape), [g.view_as(p) for g, p in zip(grads, params)]


class LeanBackend:
    """Solves adaptive methods with `lean_rk` and fixed-grid ones with torchdiffeq; the methods are
    `solvers.solver_names("lean")` (torchdiffeq's)."""

    name = "lean"

    def __init__(self) -> None:
        self._fixed_grid = TorchdiffeqBackend()

    def check(self, settings: SolverSettings) -> None:
        """Every method runs with and without the adjoint: nothing to refuse."""

    def translate_errors(self, settings: SolverSettings, func: nn.Module):
        """torchdiffeq's translation for its fixed-grid solves; the adaptive loop raises ODESolveError itself."""
        if settings.fixed_step:
            return self._fixed_grid.translate_errors(settings, func)
        return contextlib.nullcontext()

    @torch.compiler.disable
    def solve(self, func: nn.Module, state: State, t_end: float, settings: SolverSettings) -> State:
        """The state at t_end (a tensor, or a tuple like `state`), solved from t = 0.

        torch.compile does not trace it (a compiled head runs its solve eagerly): the loop's step control is Python
        float arithmetic on the host, which dynamo would trace as tensors (torch 2.14 does not specialise floats),
        and that changed the steps taken (NFE 20 -> 32 on a small head). Compile the dynamics instead.
        """
        if settings.fixed_step:
            return self._fixed_grid.solve(func, state, t_end, settings)

        def fail(exc: SolveFailure, stage: str) -> ODESolveError:
            return ODESolveError(f"{exc}{stage}", settings.solver, settings.rtol, settings.atol, func.nfe)

        packed = _Packed(state)
        y0 = packed.pack(state)
        if settings.adjoint:
            params = [p for p in func.parameters() if p.requires_grad]
            end = _Adjoint.apply(_AdjointSolve(func, packed, t_end, settings, fail), y0, *params)
        else:
            try:
                end = integrate(packed.wrap(func), y0, 0.0, t_end, settings, packed.norm())
            except SolveFailure as exc:
                raise fail(exc, "") from None
        return packed.unpack(end)
