"""The ODE block (after torchdiffeq's examples/odenet_mnist.py): integrates h(0) -> h(T) and counts NFE.

`ODEBlock` integrates dh/dt = f(t, h) from h(0) = input to h(T) with a *backend* (torchdiffeq, or torchode with
a step size per sample), optionally by the adjoint method, and counts function evaluations (NFE) separately for
the forward and backward pass. Around the solve it adds what the heads use: zero augmentation channels,
STEER's random end time, and the kinetic / Jacobian regularisation integrated alongside the state. Solver
failures (torchdiffeq's bare asserts, a non-finite state) become `ODESolveError` naming the solver, tolerance
and NFE. The methods and their checks are in `solvers.py`, the dynamics in `dynamics.py`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Protocol

import torch
from torch import nn

from .choices import REGULARIZATIONS
from .config import default
from .dynamics import LinearDynamics, MLPDynamics  # re-exported: book/neural-odes.md imports them from here
from .errors import ConfigError, ODESolveError
from .solvers import DEFAULT_BACKEND, check_adjoint, check_backend, check_fallback, check_solver
from .torchdiffeq_backend import TorchdiffeqBackend

__all__ = ["Backend", "LinearDynamics", "MLPDynamics", "ODEBlock", "make_backend"]


class Backend(Protocol):
    """What the block needs of a solver library (`TorchdiffeqBackend`, `TorchodeBackend`)."""

    name: str

    def check(self, adjoint: bool) -> None: ...

    def solve(self, func: nn.Module, state, times: torch.Tensor, *, solver: str, rtol: float, atol: float,
              step_size: float | None, max_num_steps: int, adjoint: bool, seminorm: bool): ...


def make_backend(name: str) -> Backend:
    """The backend of that name (one of `solvers.ODE_BACKENDS`)."""
    if name == "torchode":
        from .torchode_backend import TorchodeBackend  # local: torchode is loaded only when chosen

        return TorchodeBackend()
    check_backend(name)
    return TorchdiffeqBackend()


class _CountedDynamics(nn.Module):
    """Wraps f to count evaluations and, when asked, integrate the regularisation terms alongside h.

    With regularisation the state is (h, kinetic, jacobian): d kinetic/dt = mean(f^2) (Finlay et al. 2020)
    and d jacobian/dt = mean((e^T df/dh)^2), a Hutchinson estimate of the Jacobian's Frobenius norm.
    """

    def __init__(self, dynamics: nn.Module) -> None:
        super().__init__()
        self.dynamics = dynamics
        self.nfe = 0
        self.with_regularization = False
        self.noise: torch.Tensor | None = None

    def forward(self, t: torch.Tensor, state):
        self.nfe += 1
        if not self.with_regularization:
            return self.dynamics(t, state)
        h = state[0]
        with torch.enable_grad():
            if not h.requires_grad:
                h = h.detach().requires_grad_(True)
            dh = self.dynamics(t, h)
            per_sample = tuple(range(1, dh.dim()))
            kinetic = dh.pow(2).mean(dim=per_sample)
            vjp = torch.autograd.grad(dh, h, self.noise, create_graph=True)[0]
            jacobian = vjp.pow(2).mean(dim=per_sample)
        return dh, kinetic, jacobian



class ODEBlock(nn.Module):
    """Integrates h(0) -> h(T) with a backend's solver; `nfe_forward`/`nfe_backward` count evaluations.

    Args (defaults: `ExperimentConfig`'s):
        dynamics: an nn.Module f(t, h) with a `check_state(h)` method (MLPDynamics, ConvDynamics).
        solver: a method of the backend (`solvers.solver_names(backend)`: dopri5, bosh3, rk4, euler...).
        rtol, atol: tolerances of adaptive methods (fixed-step methods ignore them).
        t_end: end time T of the integration, from 0.
        step_size: step of fixed-step methods (required there); for adaptive ones, none.
        adjoint: compute gradients by the adjoint method (memory flat in NFE) instead of backprop.
        seminorm: with the adjoint, control the error of the state only (Kidger et al. 2021).
        max_num_steps: bound on the steps of one adaptive solve; exceeding it raises ODESolveError.
        augment_dim: zero channels appended to the state (Dupont et al. 2019); the output keeps them.
        steer: in training, draw T uniformly from [T - steer, T + steer] (Ghosh et al. 2020).
        regularization: "none", "kinetic", "jacobian" or "both"; terms in `self.regularization` after a
            training forward pass (weights are applied by the caller).
        backend: "torchdiffeq", "torchode", or a backend object (`Backend`).
    """

    def __init__(self, dynamics: nn.Module, solver: str = default("solver"), rtol: float = default("rtol"),
                 atol: float = default("atol"), t_end: float = default("t_end"),
                 step_size: float | None = default("step_size"), adjoint: bool = default("adjoint"),
                 seminorm: bool = default("seminorm"), max_num_steps: int = default("max_num_steps"),
                 augment_dim: int = default("augment_dim"), steer: float = default("steer"),
                 regularization: str = default("regularization"),
                 backend: str | Backend = DEFAULT_BACKEND) -> None:
        super().__init__()
        backend = make_backend(backend) if isinstance(backend, str) else backend
        check_solver(solver, rtol, atol, t_end, step_size, backend.name)
        if max_num_steps < 1:
            raise ConfigError("max_num_steps", max_num_steps, "a positive integer")
        if augment_dim < 0:
            raise ConfigError("augment_dim", augment_dim, "an integer >= 0")
        if not 0 <= steer < t_end:
            raise ConfigError("steer", steer, f"a number in [0, t_end={t_end})")
        if regularization not in REGULARIZATIONS:
            raise ConfigError("regularization", regularization, f"one of {list(REGULARIZATIONS)}")
        check_adjoint(adjoint, regularization, backend.name)
        backend.check(adjoint)
        self.func = _CountedDynamics(dynamics)
        self.backend = backend
        self.solver, self.rtol, self.atol = solver, float(rtol), float(atol)
        self.t_end, self.step_size = float(t_end), step_size
        self.adjoint, self.seminorm, self.max_num_steps = adjoint, seminorm, max_num_steps
        self.augment_dim, self.steer, self.regularization_kind = augment_dim, float(steer), regularization
        self.regularization: dict[str, torch.Tensor] = {}
        self.nfe_forward = 0
        self.fallback_used = False

    @property
    def dynamics(self) -> nn.Module:
        """The dynamics f(t, h) this block integrates (without the evaluation counter around it)."""
        return self.func.dynamics

    # -- accounting
    @property
    def nfe_backward(self) -> int:
        """Evaluations of f since the last forward pass ended: the backward solve of the adjoint.

        Direct backpropagation evaluates f no further (it differentiates the stored forward graph), so
        this stays 0 there; its backward cost is one vector-Jacobian product per forward evaluation.
        """
        return self.func.nfe - self.nfe_forward

    def use_fallback(self, solver: str = default("fallback_solver"),
                     step_size: float = default("fallback_step_size")) -> None:
        """Switch to a fixed-step method of the backend (a solve that cannot fail on step control)."""
        check_fallback(solver, self.backend.name)
        check_solver(solver, self.rtol, self.atol, self.t_end, step_size, self.backend.name)
        self.solver, self.step_size, self.fallback_used = solver, step_size, True

    def extra_repr(self) -> str:
        backend = "" if self.backend.name == DEFAULT_BACKEND else f", backend={self.backend.name}"
        return (f"solver={self.solver}, rtol={self.rtol:g}, atol={self.atol:g}, t_end={self.t_end:g}, "
                f"step_size={self.step_size}, adjoint={self.adjoint}{backend}")

    # -- solving
    def _end_time(self) -> float:
        if self.training and self.steer > 0:
            return self.t_end + (torch.rand(()).item() * 2 - 1) * self.steer
        return self.t_end

    def forward(self, h0: torch.Tensor) -> torch.Tensor:
        if self.augment_dim and h0.dim() >= 2:
            pad_shape = (h0.shape[0], self.augment_dim, *h0.shape[2:])
            h0 = torch.cat([h0, h0.new_zeros(pad_shape)], dim=1)
        self.func.dynamics.check_state(h0)
        regularize = self.training and self.regularization_kind != "none" and torch.is_grad_enabled()
        self.func.with_regularization = regularize
        state = h0
        if regularize:
            self.func.noise = torch.randn_like(h0)
            zeros = h0.new_zeros(h0.shape[0])
            state = (h0, zeros, zeros.clone())
        times = torch.tensor([0.0, self._end_time()], device=h0.device, dtype=h0.dtype)
        self.func.nfe = 0
        with self.translate_errors():
            solution = self.backend.solve(self.func, state, times, solver=self.solver, rtol=self.rtol,
                                          atol=self.atol, step_size=self.step_size,
                                          max_num_steps=self.max_num_steps, adjoint=self.adjoint,
                                          seminorm=self.seminorm)
        self.nfe_forward = self.func.nfe
        if regularize:
            h_end, kinetic, jacobian = (s[-1] for s in solution)
            self.regularization = {}
            if self.regularization_kind in ("kinetic", "both"):
                self.regularization["kinetic"] = kinetic.mean()
            if self.regularization_kind in ("jacobian", "both"):
                self.regularization["jacobian"] = jacobian.mean()
        else:
            h_end = solution[-1]
            self.regularization = {}
        if not torch.isfinite(h_end).all():
            raise ODESolveError("non-finite state at the end time", self.solver, self.rtol, self.atol,
                                self.func.nfe)
        return h_end

    @contextlib.contextmanager
    def translate_errors(self) -> Iterator[None]:
        """Turn torchdiffeq's bare asserts into ODESolveError; wrap `loss.backward()` in it for the adjoint."""
        try:
            yield
        except AssertionError as exc:
            text = str(exc)
            for key, reason in (("max_num_steps", f"more than max_num_steps={self.max_num_steps} steps"),
                                ("underflow in dt", "step size underflow"),
                                ("non-finite", "non-finite state")):
                if key in text:
                    raise ODESolveError(reason, self.solver, self.rtol, self.atol, self.func.nfe) from None
            raise ODESolveError(f"solver assertion: {text[:200]}", self.solver, self.rtol, self.atol,
                                self.func.nfe) from exc
