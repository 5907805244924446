"""The valid values of the head's and the optimisation's string options, declared once (no torch: the config
imports them, and the modules that build what they name refuse any other name).

The solver's choices (methods, backends, failure policies) are in `solvers.py`.
"""

from __future__ import annotations

HEADS = ("fc", "mlp", "node")
NODE_STATES = ("vector", "map")
#: Activation name -> the `torch.nn` class that implements it.
ACTIVATIONS = {"softplus": "Softplus", "tanh": "Tanh", "relu": "ReLU"}
REGULARIZATIONS = ("none", "kinetic", "jacobian", "both")
#: Optimizer names; `optim.OPTIMIZER_BUILDERS` has one builder for each.
OPTIMIZERS = ("adam", "sgd")
#: Learning-rate schedule names; `optim.SCHEDULE_BUILDERS` has one builder for each.
SCHEDULES = ("none", "cosine", "step")
