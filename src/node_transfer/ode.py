"""Neural ODE dynamics and the solver-backed ODE block (after torchdiffeq's examples/odenet_mnist.py).

`ODEBlock` integrates dh/dt = f(t, h) from h(0) = input to h(T) with any torchdiffeq method, optionally by
the adjoint method, and counts function evaluations (NFE) separately for the forward and backward pass.
Solver failures (torchdiffeq's bare asserts, a non-finite state) become `ODESolveError` naming the solver,
tolerance and NFE.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn
from torchdiffeq import odeint, odeint_adjoint
from torchdiffeq._impl.odeint import SOLVERS
from torchdiffeq._impl.solvers import FixedGridODESolver

from .errors import ConfigError, ODESolveError

#: Function evaluations per step of the fixed-step methods (torchdiffeq's rk4 is the 3/8 rule: 4).
FIXED_STEP_NFE = {"euler": 1, "midpoint": 2, "heun2": 2, "heun3": 3, "rk4": 4}
ACTIVATIONS = {"softplus": nn.Softplus, "tanh": nn.Tanh, "relu": nn.ReLU}


def solver_names() -> list[str]:
    """Every torchdiffeq method usable here (scipy_solver is left out: it does not backpropagate)."""
    return sorted(name for name in SOLVERS if name != "scipy_solver")


def is_fixed_step(method: str) -> bool:
    """True for torchdiffeq's fixed-grid methods (euler, rk4, ...), which ignore rtol/atol."""
    return method in SOLVERS and issubclass(SOLVERS[method], FixedGridODESolver)


def fixed_step_solvers() -> list[str]:
    return [name for name in solver_names() if is_fixed_step(name)]


def check_solver(solver: str, rtol: float, atol: float, t_end: float, step_size: float | None,
                 backend: str = "torchdiffeq") -> None:
    """Raise ConfigError (a ValueError) for an unknown method or an impossible tolerance/time/step.

    `backend` picks the list of methods: torchdiffeq's, or torchode's (which adds tsit5, lacks the Adams methods).
    """
    names, where = solver_names(), ""
    if backend == "torchode":
        from .torchode_backend import torchode_solver_names  # local: torchode is only needed when chosen

        names, where = torchode_solver_names(), " for ode_backend='torchode'"
    if solver not in names:
        raise ConfigError("solver", solver, f"one of {names}{where}")
    for name, value in (("rtol", rtol), ("atol", atol), ("t_end", t_end)):
        if not (isinstance(value, (int, float)) and value > 0 and value == value and value != float("inf")):
            raise ConfigError(name, value, "a finite number > 0")
    if is_fixed_step(solver):
        if step_size is None:
            raise ConfigError("step_size", step_size,
                              f"a positive number: the fixed-step method {solver!r} needs a step size")
        if not 0 < step_size <= t_end:
            raise ConfigError("step_size", step_size, f"a number in (0, t_end={t_end}]")
    elif step_size is not None and not step_size > 0:
        raise ConfigError("step_size", step_size, "a positive number, or None")


# ---------------------------------------------------------------------------- dynamics
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

    def __init__(self, dim: int, width: int = 256, activation: str = "softplus", zero_init: bool = False,
                 norm: bool = True):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ConfigError("ode_activation", activation, f"one of {sorted(ACTIVATIONS)}")
        self.dim = dim
        self.norm = nn.LayerNorm(dim) if norm else nn.Identity()
        self.fc1 = ConcatLinear(dim, width)
        self.act = ACTIVATIONS[activation]()
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

    def __init__(self, channels: int, width: int = 64, zero_init: bool = False) -> None:
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


# ---------------------------------------------------------------------------- the block
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
    """Integrates h(0) -> h(T) with a torchdiffeq solver; `nfe_forward`/`nfe_backward` count evaluations.

    Args:
        dynamics: an nn.Module f(t, h) with a `check_state(h)` method (MLPDynamics, ConvDynamics).
        solver: any torchdiffeq method name (dopri5, bosh3, adaptive_heun, dopri8, rk4, euler, midpoint...).
        rtol, atol: tolerances of adaptive methods (fixed-step methods ignore them).
        t_end: end time T of the integration, from 0.
        step_size: step of fixed-step methods (required there); for adaptive ones, none.
        adjoint: compute gradients with `odeint_adjoint` (memory flat in NFE) instead of backprop.
        seminorm: with the adjoint, control the error of the state only (Kidger et al. 2021).
        max_num_steps: bound on the steps of one adaptive solve; exceeding it raises ODESolveError.
        augment_dim: zero channels appended to the state (Dupont et al. 2019); the output keeps them.
        steer: in training, draw T uniformly from [T - steer, T + steer] (Ghosh et al. 2020).
        regularization: "none", "kinetic", "jacobian" or "both"; terms in `self.regularization` after a
            training forward pass (weights are applied by the caller).
    """

    def __init__(self, dynamics: nn.Module, solver: str = "dopri5", rtol: float = 1e-5, atol: float = 1e-5,
                 t_end: float = 1.0, step_size: float | None = None, adjoint: bool = False,
                 seminorm: bool = False, max_num_steps: int = 1000, augment_dim: int = 0, steer: float = 0.0,
                 regularization: str = "none") -> None:
        super().__init__()
        check_solver(solver, rtol, atol, t_end, step_size)
        if max_num_steps < 1:
            raise ConfigError("max_num_steps", max_num_steps, "a positive integer")
        if augment_dim < 0:
            raise ConfigError("augment_dim", augment_dim, "an integer >= 0")
        if not 0 <= steer < t_end:
            raise ConfigError("steer", steer, f"a number in [0, t_end={t_end})")
        if regularization not in ("none", "kinetic", "jacobian", "both"):
            raise ConfigError("regularization", regularization, "one of ['none', 'kinetic', 'jacobian', 'both']")
        self.func = _CountedDynamics(dynamics)
        self.solver, self.rtol, self.atol = solver, float(rtol), float(atol)
        self.t_end, self.step_size = float(t_end), step_size
        self.adjoint, self.seminorm, self.max_num_steps = adjoint, seminorm, max_num_steps
        self.augment_dim, self.steer, self.regularization_kind = augment_dim, float(steer), regularization
        self.regularization: dict[str, torch.Tensor] = {}
        self.nfe_forward = 0
        self.fallback_used = False

    # -- accounting
    @property
    def nfe_backward(self) -> int:
        """Evaluations of f since the last forward pass ended: the backward solve of the adjoint.

        Direct backpropagation evaluates f no further (it differentiates the stored forward graph), so
        this stays 0 there; its backward cost is one vector-Jacobian product per forward evaluation.
        """
        return self.func.nfe - self.nfe_forward

    def use_fallback(self, solver: str = "rk4", step_size: float = 0.25) -> None:
        """Switch to a fixed-step method (a solve that cannot fail on step control)."""
        if not is_fixed_step(solver):
            raise ConfigError("fallback_solver", solver, f"a fixed-step method, one of {fixed_step_solvers()}")
        check_solver(solver, self.rtol, self.atol, self.t_end, step_size)
        self.solver, self.step_size, self.fallback_used = solver, step_size, True

    def extra_repr(self) -> str:
        return (f"solver={self.solver}, rtol={self.rtol:g}, atol={self.atol:g}, t_end={self.t_end:g}, "
                f"step_size={self.step_size}, adjoint={self.adjoint}")

    # -- solving
    def _options(self) -> dict:
        if is_fixed_step(self.solver):
            return {"step_size": self.step_size}
        return {"max_num_steps": self.max_num_steps}

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
            solution = self._solve(state, times)
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

    def _solve(self, state, times: torch.Tensor):
        options = self._options()
        if not self.adjoint:
            return odeint(self.func, state, times, rtol=self.rtol, atol=self.atol, method=self.solver,
                          options=options)
        adjoint_options = dict(options)
        if self.seminorm and not is_fixed_step(self.solver):
            adjoint_options["norm"] = "seminorm"
        return odeint_adjoint(self.func, state, times, rtol=self.rtol, atol=self.atol, method=self.solver,
                              options=options, adjoint_options=adjoint_options,
                              adjoint_params=tuple(self.func.parameters()))

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


def make_dynamics(state: str, num_features: int, width: int, activation: str = "softplus",
                  zero_init: bool = False, augment_dim: int = 0) -> nn.Module:
    """Dynamics for a 'vector' (pooled features) or 'map' (last feature map) state of the given size."""
    dim = num_features + augment_dim
    if state == "vector":
        return MLPDynamics(dim, width, activation, zero_init)
    if state == "map":
        return ConvDynamics(dim, width, zero_init)
    raise ConfigError("node_state", state, "one of ['vector', 'map']")
