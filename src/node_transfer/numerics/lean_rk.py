"""torchdiffeq's adaptive Runge-Kutta algorithm with lean bookkeeping: the integration loop of the `lean` backend.

What it keeps of torchdiffeq 0.2.5's `RKAdaptiveStepsizeODESolver`, so that it takes the same steps and counts
the same function evaluations (NFE): the tableaus (read from torchdiffeq's own solver classes), the choice of the
first step (Hairer, Norsett & Wanner, Sec. II.4), the error ratio (the norm of error / (atol + rtol max(|y0|,
|y1|))), the step-size update (safety 0.9, factor in [0.2, 10], exponent 1/order), reusing the last stage as the
next step's first (FSAL), stepping past the end time and reading the solution there from the step's 4th-order
dense output, and the step bound and failures (underflow, non-finite state).

What it changes is only how the arithmetic around the evaluations is laid out. torchdiffeq keeps the stages in
one (..., stages) tensor, multiplies all of it by each row of the tableau and sums it (`_UncheckedAssign`, `mul`,
`sum`), records the error norm and the dense-output fit of every step in the autograd graph, and backpropagates
into the choice of the first step. Here the stages are a list, a stage's input is one tensor built by in-place
adds, the error estimate, its norm and the step-size control run without autograd (no gradient flows through a
step size, as in torchode's `backprop_through_step_size_control=False`), and the dense output is fitted once,
for the step that reaches the end time, as weights on the stages. bench/node_step.py measures what that buys.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..core.solvers import SolverSettings

__all__ = ["SolveFailure", "Tableau", "integrate", "rms_norm", "segment_norm", "tableau"]

Func = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Norm = Callable[[torch.Tensor], torch.Tensor]

SAFETY, IFACTOR, DFACTOR = 0.9, 10.0, 0.2  # torchdiffeq's defaults


class SolveFailure(RuntimeError):
    """The solve cannot go on (step bound, step size underflow, non-finite state); the message is the reason."""


@dataclass(frozen=True)
class Tableau:
    """An embedded explicit Runge-Kutta method as torchdiffeq writes it (stage 0 at t0 is implicit)."""

    nodes: tuple[float, ...]  # alpha: the times of stages 1.. as fractions of the step
    rows: tuple[tuple[float, ...], ...]  # beta: each stage's weights on the stages before it
    solution: tuple[float, ...]  # c_sol: the step's solution, weights on every stage
    error: tuple[float, ...]  # c_error: the error estimate, weights on every stage
    midpoint: tuple[float, ...]  # mid: the solution at half the step, for the dense output
    order: int

    @property
    def last_stage_is_solution(self) -> bool:
        """The last stage is evaluated at the step's solution (dopri5, bosh3, dopri8): no separate sum for it."""
        return self.solution[-1] == 0 and self.solution[:-1] == self.rows[-1]


@functools.cache
def tableau(method: str) -> Tableau:
    """The tableau of one of torchdiffeq's adaptive methods (dopri5, bosh3, adaptive_heun, fehlberg2, dopri8)."""
    from torchdiffeq._impl.odeint import SOLVERS  # its only list of methods; solvers.py's table is checked against it

    solver = SOLVERS[method]
    table = solver.tableau
    return Tableau(tuple(table.alpha.tolist()), tuple(tuple(row.tolist()) for row in table.beta),
                   tuple(table.c_sol.tolist()), tuple(table.c_error.tolist()), tuple(solver.mid.tolist()),
                   solver.order)


def rms_norm(x: torch.Tensor) -> torch.Tensor:
    """Root mean square of all elements (torchdiffeq's norm for a tensor state)."""
    return torch.linalg.vector_norm(x) / math.sqrt(x.numel())


def segment_norm(sizes: list[int]) -> Norm:
    """The largest RMS over consecutive pieces of a flat tensor (torchdiffeq's norm for a tuple state)."""

    def norm(x: torch.Tensor) -> torch.Tensor:
        return torch.stack([rms_norm(piece) for piece in x.split(sizes) if piece.numel()]).max()

    return norm


def _combine(y: torch.Tensor, stages: list[torch.Tensor], weights: tuple[float, ...] | list[float],
             h: float) -> torch.Tensor:
    """y + h * sum(w_j k_j), one output tensor built by in-place adds (zero weights skipped)."""
    out = None
    for k, w in zip(stages, weights):
        if w != 0.0:
            out = torch.add(y, k, alpha=w * h) if out is None else out.add_(k, alpha=w * h)
    return y if out is None else out


def _head(x: torch.Tensor, length: int | None) -> torch.Tensor:
    """The first `length` elements of a flat x, or x itself (no view in the autograd graph: a slice's backward
    would zero-fill and copy a whole gradient each time)."""
    return x if length is None else x[:length]


def _time(t: float, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(t, dtype=torch.float64, device=like.device)


@torch.no_grad()
def _finite(y: torch.Tensor) -> bool:
    """Whether every element is finite: its min and max are (NaN propagates), in one pass (isfinite's takes four,
    and a 128 x 1280 state's infinity norm 20 times as long here)."""
    return bool(torch.isfinite(torch.stack(torch.aminmax(y))).all())


@torch.no_grad()
def _first_step(func: Func, t0: float, y0: torch.Tensor, f0: torch.Tensor, order: int, rtol: float, atol: float,
                norm: Norm, direction: float, driving: int | None, controlled: int | None) -> float:
    """torchdiffeq's `_select_initial_step` (one evaluation), in the state's dtype as there; not differentiated."""
    y, f = _head(y0, controlled), _head(f0, controlled)
    scale = atol + y.abs() * rtol
    d0, d1 = norm(y / scale).abs(), norm(f / scale).abs()
    h0 = y.new_tensor(1e-6) if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    h0 = h0.abs()
    probe = _head(y0, driving) + (direction * h0) * _head(f0, driving)
    f1 = _head(func(_time(t0 + direction * h0.item(), y0), probe), controlled)
    d2 = (norm((f1 - f) / scale) / h0).abs()
    if d1 <= 1e-15 and d2 <= 1e-15:
        h1 = torch.maximum(y.new_tensor(1e-6), h0 * 1e-3)
    else:
        h1 = (0.01 / torch.maximum(d1, d2)) ** (1.0 / (order + 1))
    return torch.minimum(100 * h0, h1.abs()).item()


@torch.no_grad()
def _error_ratio(y0: torch.Tensor, y1: torch.Tensor, stages: list[torch.Tensor], weights: tuple[float, ...],
                 h: float, rtol: float, atol: float, norm: Norm) -> float:
    """norm(error / (atol + rtol max(|y0|, |y1|))) of the step, without autograd."""
    error = None
    for k, w in zip(stages, weights):
        if w != 0.0:
            error = k * (w * h) if error is None else error.add_(k, alpha=w * h)
    tolerance = torch.maximum(y0.abs(), y1.abs()).mul_(rtol).add_(atol)
    return norm(error.div_(tolerance)).abs().item()


def _next_step(dt: float, ratio: float, order: int) -> float:
    """torchdiffeq's `_optimal_step_size` (NaN propagates as in torch: the next step then underflows)."""
    if ratio == 0:
        return dt * IFACTOR
    if math.isnan(ratio):
        return math.nan
    factor = min(IFACTOR, max(SAFETY / ratio ** (1.0 / order), 1.0 if ratio < 1 else DFACTOR))
    return dt * factor


def _dense_weights(table: Tableau, x: float) -> list[float]:
    """torchdiffeq's 4th-order interpolant at x in [0, 1] of a step, written as weights on its stages.

    p(x) = y0 + x d + x^2 c + x^3 b + x^4 a with torchdiffeq's `_interp_fit` coefficients (from y0, y1, the
    midpoint value and the first and last stage); substituting y1 = y0 + h sum(c_sol k) and
    y_mid = y0 + h sum(mid k) leaves y0 with weight 1 and each stage with the weight below.
    """
    x2, x3, x4 = x * x, x ** 3, x ** 4
    on_solution = -5 * x2 + 14 * x3 - 8 * x4
    on_midpoint = 16 * x2 - 32 * x3 + 16 * x4
    weights = [on_solution * s + on_midpoint * m for s, m in zip(table.solution, table.midpoint)]
    weights[0] += x - 4 * x2 + 5 * x3 - 2 * x4
    weights[-1] += x2 - 3 * x3 + 2 * x4
    return weights


def integrate(func: Func, y0: torch.Tensor, t0: float, t1: float, settings: SolverSettings, norm: Norm = rms_norm,
              driving: int | None = None, controlled: int | None = None) -> torch.Tensor:
    """The solution at t1 of dy/dt = func(t, y), y(t0) = y0 (t1 < t0 integrates backwards), differentiable.

    `settings` arrive whole (a new solve setting is read here, where the loop honours it): the method's tableau,
    the tolerances and the step bound. `func` gets t as a float64 scalar tensor, as from torchdiffeq. Raises
    SolveFailure with the reason. For a
    flat y whose tail f never reads (the adjoint's parameter adjoints: a quadrature), `driving` is the length of
    the head f reads: f gets only that head, and only the head's stage values are formed (the tail's solution is
    the same sum of stages). `controlled` is the length of the head the error norm sees (the seminorm).
    """
    table, rtol, atol, max_num_steps = tableau(settings.solver), settings.rtol, settings.atol, settings.max_num_steps
    direction = 1.0 if t1 >= t0 else -1.0
    f0 = func(_time(t0, y0), _head(y0, driving))
    dt = _first_step(func, t0, y0, f0, table.order - 1, rtol, atol, norm, direction, driving, controlled)
    t, y, f, steps, checked = t0, y0, f0, 0, None
    while direction * (t1 - t) > 0:
        if steps >= max_num_steps:
            raise SolveFailure(f"more than max_num_steps={max_num_steps} steps")
        if not math.isfinite(dt):
            dt = 0.0  # torchdiffeq: min_step
        if not direction * ((t + direction * dt) - t) > 0:
            raise SolveFailure("step size underflow")
        if checked is not y:  # torchdiffeq checks the state at every step; it changes only when one is accepted
            if not _finite(y):
                raise SolveFailure("non-finite state")
            checked = y
        steps += 1
        h = direction * dt
        stages = [f]
        for node, row in zip(table.nodes, table.rows):
            stage_input = _combine(_head(y, driving), [_head(k, driving) for k in stages], row, h)
            stages.append(func(_time(t + h if node == 1.0 else t + node * h, y), stage_input))
        if not table.last_stage_is_solution:
            y1 = _combine(y, stages, table.solution, h)
        elif driving is None:
            y1 = stage_input
        else:  # the head's solution is the last stage's input; the tail's is the same sum of its stages
            tail = slice(driving, None)
            y1 = torch.cat([stage_input, _combine(y[tail], [k[tail] for k in stages], table.solution, h)])
        ratio = _error_ratio(_head(y, controlled), _head(y1, controlled), [_head(k, controlled) for k in stages],
                             table.error, h, rtol, atol, norm)
        if ratio <= 1:
            t_next = t + h
            if direction * (t1 - t_next) <= 0:  # this step reaches the end time: read the solution there
                x = (t1 - t) / (t_next - t)
                return y1 if x == 1.0 else _combine(y, stages, _dense_weights(table, x), h)
            t, y, f = t_next, y1, stages[-1]
        dt = _next_step(dt, ratio, table.order)
    return y
