"""The valid values of the head's string options, declared once (no torch: the config imports them).

The solver's choices (methods, backends, failure policies) are in `solvers.py`.
"""

from __future__ import annotations

HEADS = ("fc", "mlp", "node")
NODE_STATES = ("vector", "map")
#: Activation name -> the `torch.nn` class that implements it.
ACTIVATIONS = {"softplus": "Softplus", "tanh": "Tanh", "relu": "ReLU"}
REGULARIZATIONS = ("none", "kinetic", "jacobian", "both")
