"""Timings the teaching chapter shows: a NODE head's solve at several tolerances, and one training step with
backpropagation through the solver against the adjoint.

A first call pays for one-off work (allocations, kernel choices, lazy initialisation), so a single timed call
after building a head measures that work, not the head. Every timing here runs each task untimed `warmup`
times, then times the tasks alternately (A B C, C B A, ...) and keeps the median of `rounds`.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable

import matplotlib.pyplot as plt
import pandas as pd
import torch

from ..analysis.formats import format_tolerance
from ..core.config import default
from ..model.heads import build_head

#: The width of the teaching chapters' heads: the config's default.
WIDTH = default("ode_width")
#: Timed calls of each task (after the warm-up): the median of these is what the chapter shows.
ROUNDS = 5


def median_seconds(tasks: dict[str, Callable[[], object]], rounds: int = ROUNDS, warmup: int = 1) -> dict[str, float]:
    """Seconds per call of each task: `warmup` untimed calls each, then `rounds` rounds in alternating order."""
    for task in tasks.values():
        for _ in range(warmup):
            task()
    times: dict[str, list[float]] = {name: [] for name in tasks}
    names = list(tasks)
    for index in range(rounds):
        for name in names if index % 2 == 0 else reversed(names):
            start = time.perf_counter()
            tasks[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def tolerance_timings(batch: torch.Tensor, tolerances: tuple[float, ...], width: int = WIDTH, rounds: int = ROUNDS,
                      seed: int = 0) -> pd.DataFrame:
    """One freshly initialised NODE head solved on `batch` at each rtol = atol: the tolerance (as text: 1e-5),
    NFE and median ms per solve (no gradients)."""
    torch.manual_seed(seed)
    head = build_head("node", batch.shape[1], 10, ode_width=width)
    nfe: dict[float, int] = {}

    def solve(tol: float) -> Callable[[], None]:
        def run() -> None:
            head.block.settings = dataclasses.replace(head.block.settings, rtol=tol, atol=tol)
            with torch.no_grad():
                head.block(batch)
            nfe[tol] = head.block.nfe_forward
        return run

    seconds = median_seconds({tol: solve(tol) for tol in tolerances}, rounds=rounds)
    table = pd.DataFrame([{"rtol = atol": format_tolerance(tol), "NFE": nfe[tol],
                           f"ms per batch of {len(batch)}": round(1000 * seconds[tol], 1)} for tol in tolerances])
    return table


def plot_tolerance_cost(table: pd.DataFrame) -> plt.Figure:
    """NFE (left axis) and milliseconds per solve (right axis) against the tolerance of `tolerance_timings`."""
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    ms = next(column for column in table.columns if column.startswith("ms per batch"))
    tolerances = table["rtol = atol"].astype(float)
    ax.plot(tolerances, table["NFE"], marker="o", label="NFE per batch")
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("rtol = atol (tighter to the right)")
    ax.set_ylabel("function evaluations")
    twin = ax.twinx()
    twin.plot(tolerances, table[ms], marker="s", ls="--", color="C1", label=f"{ms} (median)")
    twin.set_ylabel(ms.replace("ms", "milliseconds"))
    twin.set_ylim(0, None)
    fig.legend(loc="upper left", bbox_to_anchor=(0.12, 0.88))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def gradient_timings(batch: torch.Tensor, labels: torch.Tensor, width: int = WIDTH, rounds: int = ROUNDS,
                     seed: int = 0) -> tuple[pd.DataFrame, dict[str, float]]:
    """Backprop through the solver against the adjoint, on the same initial head: NFE and median milliseconds of a
    forward and backward pass, and as facts the largest difference of their gradients (`grad_gap`, relative to the
    largest entry) and the adjoint's time over backprop's (`adjoint_time_ratio`)."""
    heads = {}
    for adjoint in (False, True):
        torch.manual_seed(seed)
        heads[adjoint] = build_head("node", batch.shape[1], 10, ode_width=width, adjoint=adjoint)

    def step(adjoint: bool) -> Callable[[], None]:
        def run() -> None:
            heads[adjoint].zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(heads[adjoint](batch), labels).backward()
        return run

    seconds = median_seconds({adjoint: step(adjoint) for adjoint in heads}, rounds=rounds)
    grads = {adjoint: torch.cat([p.grad.flatten() for p in head.block.dynamics.parameters()])
             for adjoint, head in heads.items()}  # those of the last timed step; the weights never changed
    gap = ((grads[True] - grads[False]).abs().max() / grads[False].abs().max()).item()
    rows = [{"gradients": "adjoint" if adjoint else "backprop through solver", "NFE forward": head.block.nfe_forward,
             "NFE backward": head.block.nfe_backward, "ms (forward + backward)": round(1000 * seconds[adjoint], 1)}
            for adjoint, head in heads.items()]
    return pd.DataFrame(rows), {"grad_gap": gap, "adjoint_time_ratio": seconds[True] / seconds[False]}
