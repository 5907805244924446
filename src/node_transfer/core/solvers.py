"""The solver registry: which ODE methods each backend offers, which are fixed-step, and their checks; and
`SolverSettings`, the one object that says how a block solves.

One table per backend (after timm's `_registry.py`: names in a registry, one resolver), and one backend-aware
check of a solver and of a fallback solver, used both by `ExperimentConfig.validate` and by the ODE block.
`SolverSettings` is built from the config (`from_config` reads the fields of the same names), passed to the block
and to every backend; a fallback is a `dataclasses.replace` of it. The module imports no torch, so the config
stays light.

torchdiffeq has no public list of its methods: the table below is written out, and
`tests/test_solvers.py` checks it against torchdiffeq's private `SOLVERS` (the only place that reads it).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

#: Function evaluations per step of the explicit fixed-step Runge-Kutta methods (torchdiffeq's rk4 is the
#: 3/8 rule: 4). Both backends run these with the same tableaus.
FIXED_STEP_NFE = {"euler": 1, "midpoint": 2, "heun2": 2, "heun3": 3, "rk4": 4}
FAILURE_POLICIES = ("stop", "fallback")


@dataclass(frozen=True)
class BackendMethods:
    """The methods of one backend: adaptive ones, and fixed-step ones with their NFE per step (None: unknown)."""

    adaptive: tuple[str, ...]
    fixed: dict[str, int | None] = field(default_factory=dict)
    #: False where the adjoint cannot integrate the kinetic/Jacobian regularisation alongside the state.
    adjoint_with_regularization: bool = True
    why_not: str = ""


_ADAPTIVE_RK = ("adaptive_heun", "bosh3", "dopri5", "dopri8", "fehlberg2")

_TORCHDIFFEQ_FIXED = {**FIXED_STEP_NFE, "explicit_adams": None, "implicit_adams": None, "fixed_adams": None}

REGISTRY: dict[str, BackendMethods] = {
    # torchdiffeq's adaptive Runge-Kutta algorithm and tableaus in a loop of our own whose bookkeeping costs little
    # next to the dynamics (see lean_backend.py); its fixed-grid methods are torchdiffeq's own.
    "lean": BackendMethods(adaptive=_ADAPTIVE_RK, fixed=dict(_TORCHDIFFEQ_FIXED)),
    # scipy_solver is left out: it does not backpropagate. The Adams methods are fixed-grid in torchdiffeq.
    "torchdiffeq": BackendMethods(adaptive=_ADAPTIVE_RK, fixed=dict(_TORCHDIFFEQ_FIXED)),
    # torchode adds tsit5 and lacks the multistep Adams methods (see torchode_backend.py).
    "torchode": BackendMethods(
        adaptive=(*_ADAPTIVE_RK, "tsit5"),
        fixed=dict(FIXED_STEP_NFE),
        adjoint_with_regularization=False,
        why_not="its adjoint evaluates f one sample at a time under torch.func.vmap, which the "
                "regularisation's batch-shaped Hutchinson noise and autograd.grad do not support",
    ),
}
ODE_BACKENDS = tuple(REGISTRY)
#: The backend of new runs: the fastest that gives torchdiffeq's NFE and solutions (bench/node_step.py).
DEFAULT_BACKEND = "lean"
#: The backend of every run saved before `ode_backend` was recorded: a configuration without it means this one.
LEGACY_BACKEND = "torchdiffeq"


def _methods(backend: str) -> BackendMethods:
    if backend not in REGISTRY:
        raise ConfigError("ode_backend", backend, f"one of {list(ODE_BACKENDS)}")
    return REGISTRY[backend]


def check_backend(backend: str) -> None:
    """Raise ConfigError naming `ode_backend` unless the registry has that backend."""
    _methods(backend)


def _where(backend: str) -> str:
    return "" if backend == DEFAULT_BACKEND else f" for ode_backend={backend!r}"


def solver_names(backend: str = DEFAULT_BACKEND) -> list[str]:
    """Every method the backend solves with."""
    methods = _methods(backend)
    return sorted((*methods.adaptive, *methods.fixed))


def fixed_step_solvers(backend: str = DEFAULT_BACKEND) -> list[str]:
    """The backend's fixed-grid methods (euler, rk4, ...), which ignore rtol/atol and need a step size."""
    return sorted(_methods(backend).fixed)


def is_fixed_step(solver: str, backend: str = DEFAULT_BACKEND) -> bool:
    return solver in _methods(backend).fixed


def nfe_per_step(solver: str, backend: str = DEFAULT_BACKEND) -> int | None:
    """Evaluations of f per step of a fixed-step method; None for adaptive methods and where unknown."""
    return _methods(backend).fixed.get(solver)


def check_solver(solver: str, rtol: float, atol: float, t_end: float, step_size: float | None,
                 backend: str = DEFAULT_BACKEND) -> None:
    """Raise ConfigError (a ValueError) for a method the backend lacks or an impossible tolerance/time/step."""
    names = solver_names(backend)
    if solver not in names:
        raise ConfigError("solver", solver, f"one of {names}{_where(backend)}")
    for name, value in (("rtol", rtol), ("atol", atol), ("t_end", t_end)):
        if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
            raise ConfigError(name, value, "a finite number > 0")
    if is_fixed_step(solver, backend):
        if step_size is None:
            raise ConfigError("step_size", step_size,
                              f"a positive number: the fixed-step method {solver!r} needs a step size")
        if not 0 < step_size <= t_end:
            raise ConfigError("step_size", step_size, f"a number in (0, t_end={t_end}]")
    elif step_size is not None and not step_size > 0:
        raise ConfigError("step_size", step_size, "a positive number, or None")


def check_fallback(fallback_solver: str, backend: str = DEFAULT_BACKEND) -> None:
    """Raise ConfigError unless `fallback_solver` is a fixed-step method of this backend."""
    if not is_fixed_step(fallback_solver, backend):
        raise ConfigError("fallback_solver", fallback_solver,
                          f"a fixed-step method, one of {fixed_step_solvers(backend)}{_where(backend)}")


def check_adjoint(adjoint: bool, regularization: str, backend: str = DEFAULT_BACKEND) -> None:
    """Raise ConfigError where the backend's adjoint cannot integrate the regularisation terms."""
    methods = _methods(backend)
    if adjoint and regularization != "none" and not methods.adjoint_with_regularization:
        raise ConfigError("regularization", regularization,
                          f"'none' with adjoint=True{_where(backend)} ({methods.why_not})")


@dataclass(frozen=True)
class SolverSettings:
    """How the ODE block solves: method, tolerances, end time, step, gradient mode, step bound and backend.

    The fields are `ExperimentConfig`'s of the same names (`from_config`); the block and every backend take this
    one object, so a new solve setting is a field here and in the config, and its use in a backend.
    """

    solver: str
    rtol: float
    atol: float
    t_end: float
    step_size: float | None
    adjoint: bool
    seminorm: bool
    max_num_steps: int
    ode_backend: str

    @classmethod
    def from_config(cls, config: Any) -> SolverSettings:
        """The settings of a config (an `ExperimentConfig`, or anything with these attributes)."""
        return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(cls)})

    @property
    def fixed_step(self) -> bool:
        """Whether the method is fixed-grid (ignores rtol/atol, needs `step_size`)."""
        return is_fixed_step(self.solver, self.ode_backend)

    def check(self) -> SolverSettings:
        """Raise ConfigError naming the first invalid setting; return the settings unchanged otherwise."""
        check_backend(self.ode_backend)
        check_solver(self.solver, self.rtol, self.atol, self.t_end, self.step_size, self.ode_backend)
        if isinstance(self.max_num_steps, bool) or not isinstance(self.max_num_steps, int) or self.max_num_steps < 1:
            raise ConfigError("max_num_steps", self.max_num_steps, "a positive integer")
        return self

    def fallback(self, solver: str, step_size: float) -> SolverSettings:
        """These settings with a fixed-step method of the same backend (a solve that cannot fail on step control)."""
        check_fallback(solver, self.ode_backend)
        return dataclasses.replace(self, solver=solver, step_size=step_size).check()
