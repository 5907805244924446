"""The valid values of the head's and the optimisation's string options, declared once (no torch: the config
imports them, and the modules that build what they name refuse any other name).

The solver's choices (methods, backends, failure policies) are in `solvers.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class HeadKind:
    """A head's name and what the code around it needs to know without building it."""

    name: str
    solves: bool  # whether it integrates an ODE (has a solver, NFE, a solver-swap check)
    takes_maps: bool = False  # whether `node_state=map` gives it the feature map (the others get pooled features)

    def run_label(self, config: Any) -> str:
        """The head's part of a new run directory's name: 'fc', 'mlp', 'node-dopri5', 'node-rk4-adjoint'."""
        if not self.solves:
            return self.name
        return f"{self.name}-{config.solver}{'-adjoint' if config.adjoint else ''}"


#: The heads, by the name `--head` takes; `model.heads.HEAD_BUILDERS` builds each (a new head: an entry here and
#: its builder there).
HEAD_KINDS = {kind.name: kind for kind in (HeadKind("fc", False), HeadKind("mlp", False),
                                           HeadKind("node", True, takes_maps=True))}
HEADS = tuple(HEAD_KINDS)
NODE_STATES = ("vector", "map")
#: Activation name -> the `torch.nn` class that implements it.
ACTIVATIONS = {"softplus": "Softplus", "tanh": "Tanh", "relu": "ReLU"}
REGULARIZATIONS = ("none", "kinetic", "jacobian", "both")
#: Optimizer names; `optim.OPTIMIZER_BUILDERS` has one builder for each.
OPTIMIZERS = ("adam", "sgd")
#: Learning-rate schedule names; `optim.SCHEDULE_BUILDERS` has one builder for each.
SCHEDULES = ("none", "cosine", "step")
