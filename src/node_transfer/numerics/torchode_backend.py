"""torchode backend of the ODE block (`ODEBlock(..., ode_backend="torchode")`): per-sample step sizes.

torchdiffeq solves the whole batch as one system with one step size (its issue #278); torchode
(Lienen & Günnemann 2022) controls the error and the step size of every sample separately. `TorchodeBackend`
is only the solve (failures raise ODESolveError here): the block keeps its validation, NFE accounting,
augmentation, STEER and regularisation whatever the backend. torchode works on flat (batch, features) states,
so the state (a feature vector, a feature map, or the (h, kinetic, jacobian) tuple of the regularised solve) is
packed into one flat vector per sample around the dynamics.

Notes read from torchode 1.0.1's source:

- Its `ODETerm` adds 1 to *every* sample's `n_f_evals` at each call of f (a call evaluates the whole batch),
  so the backend's `nfe_per_sample` equals the block's `nfe_forward` there; the per-sample adaptivity shows
  in `steps_per_sample` (step attempts while a sample was still running).
- `BacksolveAdjoint` ignores the status of its backward solve and applies no step bound; the backend adds
  both.
  Its backward pass evaluates f one sample at a time under `torch.func.vmap` and carries a per-sample copy
  of every parameter's adjoint (memory grows with batch x parameters). It cannot integrate the Jacobian /
  kinetic regularisation (batch-shaped noise, `torch.autograd.grad` inside f): that combination is refused
  (`solvers.check_adjoint`).
- f is called with per-sample times: the dynamics receive t as a (batch, 1, ...) tensor that broadcasts
  against the state (MLPDynamics and ConvDynamics accept it), not as a scalar.
- `torch.compile` is not offered: torchode's solve loop syncs with the host and branches on data every step,
  which breaks the graph, and its supported route (TorchScript of the whole solver) needs a term fixed at
  construction, which this backend rebuilds per solve.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any

import torch
import torchode as to
from torch import nn

# torchdiffeq's own tableaus, so that both backends run the same methods (torchdiffeq exports them only
# privately; these four imports are the package's only use of torchdiffeq's private modules).
from torchdiffeq._impl.adaptive_heun import _ADAPTIVE_HEUN_TABLEAU
from torchdiffeq._impl.bosh3 import _BOGACKI_SHAMPINE_TABLEAU
from torchdiffeq._impl.dopri8 import _DOPRI8_TABLEAU
from torchdiffeq._impl.fehlberg2 import _FEHLBERG2_TABLEAU
from torchode import status_codes
from torchode.interpolation import LinearInterpolation
from torchode.single_step_methods.runge_kutta import ButcherTableau, ERKInterpolationData, ExplicitRungeKutta

from ..core.errors import ConfigError, ODESolveError
from ..core.solvers import SolverSettings, solver_names

__all__ = ["TorchodeBackend"]


# ---------------------------------------------------------------------------- methods
class _TableauMethod(ExplicitRungeKutta):
    """An explicit Runge-Kutta method from a Butcher tableau, for the methods torchode does not ship.

    Its interpolant is linear: the block reads the solution only at the end of the last step, where a linear
    interpolant returns the step's end value.
    """

    def __init__(self, tableau: ButcherTableau, order: int) -> None:
        super().__init__(None, tableau)
        self.order = order

    def convergence_order(self) -> int:
        return self.order

    def build_interpolation(self, data: ERKInterpolationData) -> LinearInterpolation:
        return LinearInterpolation(data.t0, data.dt, data.y0, data.y1)


def _from_torchdiffeq(tableau: Any) -> ButcherTableau:
    """torchode's tableau of one of torchdiffeq's adaptive methods, so both backends run the same method."""
    return ButcherTableau.from_lists(
        c=[0.0, *tableau.alpha.tolist()],
        a=[[], *(row.tolist() for row in tableau.beta)],
        b=tableau.c_sol.tolist(),
        b_err=tableau.c_error.tolist(),
    )


def _fixed(c: list[float], a: list[list[float]], b: list[float]) -> ButcherTableau:
    """Tableau of a fixed-step method (no error estimate: the fixed-step controller accepts every step)."""
    return ButcherTableau.from_lists(c=c, a=a, b=b, b_err=[0.0] * len(b))


#: Method name -> factory of a torchode step method; the names are `solvers.solver_names("torchode")`.
_METHODS: dict[str, Callable[[], nn.Module]] = {
    # adaptive (tsit5 exists only in torchode)
    "dopri5": lambda: to.Dopri5(),
    "tsit5": lambda: to.Tsit5(),
    "bosh3": lambda: _TableauMethod(_from_torchdiffeq(_BOGACKI_SHAMPINE_TABLEAU), 3),
    "adaptive_heun": lambda: _TableauMethod(_from_torchdiffeq(_ADAPTIVE_HEUN_TABLEAU), 2),
    "fehlberg2": lambda: _TableauMethod(_from_torchdiffeq(_FEHLBERG2_TABLEAU), 2),
    "dopri8": lambda: _TableauMethod(_from_torchdiffeq(_DOPRI8_TABLEAU), 8),
    # fixed-step, with torchdiffeq's tableaus (its rk4 is the 3/8 rule)
    "euler": lambda: to.Euler(None),
    "midpoint": lambda: _TableauMethod(_fixed([0.0, 0.5], [[], [0.5]], [0.0, 1.0]), 2),
    "heun2": lambda: _TableauMethod(_fixed([0.0, 1.0], [[], [1.0]], [0.5, 0.5]), 2),
    "heun3": lambda: _TableauMethod(_fixed([0.0, 1 / 3, 2 / 3], [[], [1 / 3], [0.0, 2 / 3]], [0.25, 0.0, 0.75]), 3),
    "rk4": lambda: _TableauMethod(
        _fixed([0.0, 1 / 3, 2 / 3, 1.0], [[], [1 / 3], [-1 / 3, 1.0], [1.0, -1.0, 1.0]], [1 / 8, 3 / 8, 3 / 8, 1 / 8]),
        4),
}


def _make_method(solver: str) -> nn.Module:
    if solver not in _METHODS:
        raise ConfigError("solver", solver, f"one of {solver_names('torchode')} for ode_backend='torchode'")
    return _METHODS[solver]()


# ---------------------------------------------------------------------------- flat state
class _FlatDynamics(nn.Module):
    """f on torchode's flat (batch, features) state: unpacks it into the block's state, calls the counted
    dynamics with per-sample times, and packs the derivative.

    The state is h of any per-sample shape, or (h, kinetic, jacobian) with two per-sample scalars appended.
    `time_scale` s solves in units of s (fixed steps of exactly 1: integer times add up without rounding):
    d y/d tau = s f(s tau, y).
    """

    def __init__(self, func: nn.Module, shape: torch.Size, regularized: bool, time_scale: float) -> None:
        super().__init__()
        self.func = func
        self.shape, self.numel = tuple(shape), math.prod(shape)
        self.regularized, self.time_scale = regularized, time_scale

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        unbatched = y.dim() == 1  # BacksolveAdjoint's backward pass evaluates f per sample under vmap
        if unbatched:
            y = y.unsqueeze(0)
        batch = y.shape[0]
        t = t.to(y.dtype).expand(batch).reshape(batch, *([1] * len(self.shape)))
        if self.time_scale != 1.0:
            t = t * self.time_scale
        h = y[:, :self.numel].reshape(batch, *self.shape)
        if self.regularized:
            dh, kinetic, jacobian = self.func(t, (h, y[:, self.numel], y[:, self.numel + 1]))
            dy = torch.cat([dh.reshape(batch, -1), kinetic[:, None], jacobian[:, None]], dim=1)
        else:
            dy = self.func(t, h).reshape(batch, -1)
        if self.time_scale != 1.0:
            dy = dy * self.time_scale
        return dy.squeeze(0) if unbatched else dy


def _pack(state: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    if isinstance(state, tuple):
        h, kinetic, jacobian = state
        return torch.cat([h.reshape(h.shape[0], -1), kinetic[:, None], jacobian[:, None]], dim=1)
    return state.reshape(state.shape[0], -1)


def _unpack(flat: torch.Tensor, like: torch.Tensor | tuple[torch.Tensor, ...]):
    if isinstance(like, tuple):
        h = like[0]
        n = h[0].numel()
        return flat[:, :n].reshape(h.shape), flat[:, n], flat[:, n + 1]
    return flat.reshape(like.shape)


def _seminorm(n_state: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Error norm of the adjoint's augmented state [adj_t, y, adj_y, params...] that ignores the parameter
    adjoints (Kidger et al. 2021), like torchdiffeq's `norm="seminorm"`: max of the RMS of y and of adj_y."""

    def norm(error: torch.Tensor) -> torch.Tensor:
        y = error[:, 1:1 + n_state]
        adj_y = error[:, 1 + n_state:1 + 2 * n_state]
        return torch.maximum(to.step_size_controllers.rms_norm(y), to.step_size_controllers.rms_norm(adj_y))

    return norm


class _CheckedSolve(to.AutoDiffAdjoint):
    """torchode's solve loop, whose failure (status other than success) raises through `on_status`."""

    def __init__(self, method: nn.Module, controller: nn.Module, max_steps: int | None,
                 on_status: Callable[[torch.Tensor, dict, str], None], stage: str) -> None:
        super().__init__(method, controller, max_steps=max_steps, backprop_through_step_size_control=False)
        self.on_status, self.stage = on_status, stage

    def solve(self, problem, term=None, dt0=None, args=None):
        solution = super().solve(problem, term, dt0, args)
        self.on_status(solution.status, solution.stats, self.stage)
        return solution


_REASONS = {
    status_codes.GENERAL_ERROR: "solver error",
    status_codes.REACHED_DT_MIN: "step size underflow",
    status_codes.INFINITE_NORM: "non-finite state",
}


# ---------------------------------------------------------------------------- the backend
class TorchodeBackend:
    """Solves with torchode, a step size per sample; the methods are `solvers.solver_names("torchode")`.

    Accounting of the last forward solve: `nfe_per_sample` (torchode's `n_f_evals` averaged over the batch)
    and `steps_per_sample` (step attempts while the sample was running, averaged over the batch). The adjoint
    is torchode's `BacksolveAdjoint` (seminorm supported). A failed sample raises ODESolveError.
    """

    name = "torchode"

    def __init__(self) -> None:
        self.nfe_per_sample = 0.0
        self.steps_per_sample = 0.0

    def check(self, settings: SolverSettings) -> None:
        if settings.adjoint and not hasattr(to, "BacksolveAdjoint"):
            raise ConfigError("adjoint", settings.adjoint, "False: this torchode version has no BacksolveAdjoint")

    def translate_errors(self, settings: SolverSettings, func: nn.Module):
        """Nothing to translate: the solves raise ODESolveError themselves (the backward one too)."""
        return contextlib.nullcontext()

    def _check_status(self, status: torch.Tensor, stats: dict, stage: str, func: nn.Module,
                      settings: SolverSettings) -> None:
        """Record torchode's statistics of the forward solve; raise ODESolveError if any sample failed."""
        if stage == "forward":
            self.nfe_per_sample = stats["n_f_evals"].double().mean().item()
            self.steps_per_sample = stats["n_steps"].double().mean().item()
        worst = int(status.max().item())
        if worst == status_codes.SUCCESS:
            return
        if worst == status_codes.REACHED_MAX_STEPS:
            reason = f"more than max_num_steps={settings.max_num_steps} steps"
        else:
            reason = _REASONS.get(worst, f"torchode status {worst}")
        failed = int((status != status_codes.SUCCESS).sum().item())
        where = " in the adjoint's backward solve" if stage == "backward" else ""
        raise ODESolveError(f"{reason}{where}, {failed} of {status.numel()} samples", settings.solver, settings.rtol,
                            settings.atol, func.nfe)

    def solve(self, func: nn.Module, state, t_end: float, settings: SolverSettings):
        """The state at t_end (a tensor, or a tuple like `state`), solved from t = 0 with torchode."""
        if settings.adjoint and isinstance(state, tuple):
            raise ConfigError("regularization", "kinetic/jacobian", "'none' with adjoint=True for "
                              "ode_backend='torchode'")

        def on_status(status: torch.Tensor, stats: dict, stage: str) -> None:
            self._check_status(status, stats, stage, func, settings)

        method = _make_method(settings.solver)
        fixed = settings.fixed_step
        h0 = state[0] if isinstance(state, tuple) else state
        batch = h0.shape[0]
        scale = float(settings.step_size) if fixed else 1.0
        term = to.ODETerm(_FlatDynamics(func, h0.shape[1:], isinstance(state, tuple), scale))
        y0 = _pack(state)
        if fixed:
            controller = to.FixedStepController()
            dt0 = y0.new_ones(batch)  # one step of `step_size`, in the rescaled time
            max_steps = None  # as torchdiffeq: fixed grids have no step bound
        else:
            controller = to.IntegralController(atol=settings.atol, rtol=settings.rtol).to(y0.device)
            dt0 = None
            max_steps = settings.max_num_steps + 1  # torchode flags n_steps >= max_steps: allow max_num_steps
        times = torch.tensor([0.0, t_end], device=h0.device, dtype=h0.dtype)
        problem = to.InitialValueProblem(y0=y0, t_start=(times[0] / scale).expand(batch),
                                         t_end=(times[-1] / scale).expand(batch))
        if settings.adjoint:
            backsolve = to.BacksolveAdjoint(term, method, controller)
            backsolve.forward_adjoint = _CheckedSolve(method, controller, max_steps, on_status, "forward")
            backward_controller = controller
            if settings.seminorm and not fixed:
                backward_controller = to.IntegralController(atol=settings.atol, rtol=settings.rtol,
                                                            norm=_seminorm(y0.shape[1])).to(y0.device)
            backsolve.backward_adjoint = _CheckedSolve(method, backward_controller, max_steps, on_status,
                                                       "backward")
            solution = backsolve.solve(problem, dt0=dt0)
        else:
            solution = _CheckedSolve(method, controller, max_steps, on_status, "forward").solve(
                problem, term=term, dt0=dt0)
        return _unpack(solution.ys[:, -1], state)
