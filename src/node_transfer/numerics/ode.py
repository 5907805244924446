"""The ODE block (after torchdiffeq's examples/odenet_mnist.py): integrates h(0) -> h(T) and counts NFE.

`ODEBlock` integrates dh/dt = f(t, h) from h(0) = input to h(T) as its `SolverSettings` say (method, tolerances,
end time, step, backprop or adjoint, step bound, backend: lean, torchdiffeq, or torchode with a step size per
sample), and counts function evaluations (NFE) separately for the forward and backward pass. Around the solve it
adds what the heads use: zero augmentation channels, STEER's random end time, and the kinetic / Jacobian
regularisation integrated alongside the state. A failed solve raises `ODESolveError` naming the solver, tolerance
and NFE (each backend translates its own failures). The methods and their checks are in `solvers.py`, the
dynamics in `dynamics.py`.
"""

from __future__ import annotations

import dataclasses
from contextlib import AbstractContextManager
from typing import Any, Protocol

import torch
from torch import nn

from ..core.choices import REGULARIZATIONS
from ..core.config import ExperimentConfig, default
from ..core.errors import ConfigError, ODESolveError
from ..core.solvers import DEFAULT_BACKEND, SolverSettings, check_adjoint, check_backend
from .dynamics import LinearDynamics, MLPDynamics  # re-exported: book/neural-odes.md imports them from here

__all__ = ["Backend", "LinearDynamics", "MLPDynamics", "ODEBlock", "SolverSettings", "make_backend",
           "solve_settings"]


class Backend(Protocol):
    """What the block needs of a solver library (`LeanBackend`, `TorchdiffeqBackend`, `TorchodeBackend`)."""

    name: str

    def check(self, settings: SolverSettings) -> None: ...

    def solve(self, func: nn.Module, state, t_end: float, settings: SolverSettings): ...

    def translate_errors(self, settings: SolverSettings, func: nn.Module) -> AbstractContextManager[None]: ...


def make_backend(name: str) -> Backend:
    """The backend of that name (one of `solvers.ODE_BACKENDS`); each library is imported only when chosen."""
    check_backend(name)
    if name == "torchode":
        from .torchode_backend import TorchodeBackend

        return TorchodeBackend()
    if name == "lean":
        from .lean_backend import LeanBackend

        return LeanBackend()
    from .torchdiffeq_backend import TorchdiffeqBackend

    return TorchdiffeqBackend()


def solve_settings(base: SolverSettings | None = None, **changes: Any) -> SolverSettings:
    """`base` (by default `ExperimentConfig`'s solve settings) with `changes` to fields named like its own."""
    names = [f.name for f in dataclasses.fields(SolverSettings)]
    for name, value in changes.items():
        if name not in names:
            raise ConfigError(name, value, f"one of the solve settings {names} (or augment_dim, steer, regularization)")
    return dataclasses.replace(base or SolverSettings.from_config(ExperimentConfig()), **changes)


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
    """Integrates h(0) -> h(T) as `settings` say; `nfe_forward`/`nfe_backward` count evaluations.

    Args (defaults: `ExperimentConfig`'s):
        dynamics: an nn.Module f(t, h) with a `check_state(h)` method (MLPDynamics, ConvDynamics).
        settings: the `SolverSettings` (from a config: `SolverSettings.from_config(config)`); keyword arguments
            named like its fields change single ones (`ODEBlock(f, solver="rk4", step_size=0.25)`): solver (one of
            `solvers.solver_names(ode_backend)`), rtol, atol, t_end, step_size (fixed-step methods), adjoint,
            seminorm (the adjoint's error control on the state only, Kidger et al. 2021), max_num_steps (exceeding
            it raises ODESolveError) and ode_backend ("lean", "torchdiffeq" or "torchode").
        augment_dim: zero channels appended to the state (Dupont et al. 2019); the output keeps them.
        steer: in training, draw T uniformly from [T - steer, T + steer] (Ghosh et al. 2020).
        regularization: "none", "kinetic", "jacobian" or "both"; terms in `self.regularization` after a
            training forward pass (weights are applied by the caller).
    """

    def __init__(self, dynamics: nn.Module, settings: SolverSettings | None = None, *,
                 augment_dim: int = default("augment_dim"), steer: float = default("steer"),
                 regularization: str = default("regularization"), **solver_changes: Any) -> None:
        super().__init__()
        settings = solve_settings(settings, **solver_changes).check()
        if augment_dim < 0:
            raise ConfigError("augment_dim", augment_dim, "an integer >= 0")
        if not 0 <= steer < settings.t_end:
            raise ConfigError("steer", steer, f"a number in [0, t_end={settings.t_end})")
        if regularization not in REGULARIZATIONS:
            raise ConfigError("regularization", regularization, f"one of {list(REGULARIZATIONS)}")
        self.augment_dim, self.steer, self.regularization_kind = augment_dim, float(steer), regularization
        self.func = _CountedDynamics(dynamics)
        self.settings = settings  # checked, with its backend, by the setter
        self.regularization: dict[str, torch.Tensor] = {}
        self.nfe_forward = 0
        self.fallback_used = False

    @property
    def settings(self) -> SolverSettings:
        """How the block solves; assigning new settings checks them (a `dataclasses.replace` of these)."""
        return self._settings

    @settings.setter
    def settings(self, settings: SolverSettings) -> None:
        settings.check()
        check_adjoint(settings.adjoint, self.regularization_kind, settings.ode_backend)
        backend = getattr(self, "backend", None)
        if backend is None or backend.name != settings.ode_backend:
            backend = make_backend(settings.ode_backend)
        backend.check(settings)
        self._settings, self.backend = settings, backend

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
        self.settings = self.settings.fallback(solver, step_size)
        self.fallback_used = True

    def extra_repr(self) -> str:
        s = self.settings
        backend = "" if s.ode_backend == DEFAULT_BACKEND else f", ode_backend={s.ode_backend}"
        return (f"solver={s.solver}, rtol={s.rtol:g}, atol={s.atol:g}, t_end={s.t_end:g}, "
                f"step_size={s.step_size}, adjoint={s.adjoint}{backend}")

    # -- solving
    def _end_time(self) -> float:
        if self.training and self.steer > 0:
            return self.settings.t_end + (torch.rand(()).item() * 2 - 1) * self.steer
        return self.settings.t_end

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
        self.func.nfe = 0
        end = self.backend.solve(self.func, state, self._end_time(), self.settings)
        self.nfe_forward = self.func.nfe
        self.regularization = {}
        if regularize:
            h_end, kinetic, jacobian = end
            if self.regularization_kind in ("kinetic", "both"):
                self.regularization["kinetic"] = kinetic.mean()
            if self.regularization_kind in ("jacobian", "both"):
                self.regularization["jacobian"] = jacobian.mean()
        else:
            h_end = end
        if not torch.isfinite(h_end).all():
            s = self.settings
            raise ODESolveError("non-finite state at the end time", s.solver, s.rtol, s.atol, self.func.nfe)
        return h_end

    def translate_errors(self) -> AbstractContextManager[None]:
        """The backend's translation of its failures into ODESolveError: wrap `loss.backward()` in it (the
        adjoint solves again there)."""
        return self.backend.translate_errors(self.settings, self.func)
