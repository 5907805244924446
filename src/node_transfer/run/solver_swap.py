"""The solver-swap check: does a trained NODE head behave as an ODE, or as a residual network in disguise?

A head trained with a coarse or loose solver can learn dynamics that only work with that solver's few steps (Ott
et al., ICLR 2021, "ResNet after all?"): evaluated with a much finer solver, its accuracy drops. Every run whose
head solves an ODE is evaluated on the test set once more with `REFERENCE` (dopri5, rtol = atol = 1e-7, plain
backprop, a generous step bound), and `metrics.json` records that accuracy beside the training solver's.
`analysis` calls a head whose accuracy moves by more than `claims.SOLVER_SWAP_TOLERANCE` not an ODE.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from torch import nn

from ..core.errors import ODESolveError
from ..model.heads import ode_blocks

#: The reference solve: what the head's dynamics give when solved accurately.
REFERENCE = {"solver": "dopri5", "rtol": 1e-7, "atol": 1e-7, "step_size": None, "adjoint": False,
             "max_num_steps": 100_000}


def describe_reference() -> str:
    """'dopri5, rtol = atol = 1e-07': the reference solve in words, as `metrics.json` records it."""
    return f"{REFERENCE['solver']}, rtol = atol = {REFERENCE['rtol']:g}"


@contextmanager
def reference_solver(model: nn.Module) -> Iterator[int]:
    """Within the block, every ODE block of `model` solves with `REFERENCE`; yields the number of blocks (0: no
    ODE, nothing changed). The training settings (and any fallback in use) are restored afterwards."""
    blocks = ode_blocks(model)
    saved = [block.settings for block in blocks]
    try:
        for block in blocks:
            block.settings = dataclasses.replace(block.settings, **REFERENCE)
        yield len(blocks)
    finally:
        for block, settings in zip(blocks, saved):
            block.settings = settings


def solver_swap(model: nn.Module, evaluate: Callable[[], dict[str, float]], trained_acc: float) -> dict:
    """The test accuracy with the reference solver and its change from the training solver's (`trained_acc`), for
    `metrics.json`; {} for a head without an ODE. `evaluate` runs the test set without falling back (a failed
    reference solve is recorded as `solver_swap_error`, and the run's settings and counters stay as they were)."""
    with reference_solver(model) as count:
        if not count:
            return {}
        try:
            reference = evaluate()
        except ODESolveError as exc:  # the check failed, the run did not: recorded, never a reason to stop
            return {"reference_solver": describe_reference(), "test_acc_reference_solver": None,
                    "solver_swap_error": str(exc)}
    return {"test_acc_reference_solver": reference["acc"], "reference_solver": describe_reference(),
            "nfe_reference_solver": reference["nfe"], "solver_swap_change": reference["acc"] - trained_acc}
