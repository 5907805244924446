"""node-transfer: transfer learning with Neural ODE heads on pretrained backbones.

How the paper's claims are tested (each module's docstring has the details):

- `statistics`: the registry of compared statistics (direction, display, minimum effect of interest) and the
  stability statistics of a curve, among them the fluctuation around the trend that steady overfitting cannot fake.
- `paired`: seed-paired differences, effect sizes, the four labels ("holds", "does not hold", "lower / higher,
  equivalence (or minimum effect) not shown", "undecided") and Holm's correction.
- `claims`: the paper's numbered claims and, per regime (a suite directory), the declared tests: primary (one
  accuracy and one stability test per NODE model against its matched control, Holm over a study), the paper's own
  confounded comparisons, exploratory ones. A regime or seeds are added by one declaration.
- `verdicts` computes them (windows from the paired seeds only, the learning rate per epoch from history.csv,
  "overfits more slowly"), `convergence` the censored time to a target both arms can reach, `findings` a study with
  its sensitivity checks and seed filters (e.g. one recorded CPU model), `answer` the sentences the intro and the
  README state, `chapter_facts` and `sweeps` what the results chapters glue.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the module that defines it. Resolved on first use (PEP 562), so `import node_transfer.config`
#: or `node_transfer.errors` loads no torch: the CLI's parser, suite listings and config checks stay light.
_EXPORTS = {
    "ExperimentConfig": "config", "ConvDynamics": "dynamics", "MLPDynamics": "dynamics",
    "BackboneError": "errors", "ConfigError": "errors", "DataError": "errors", "ODESolveError": "errors",
    "TrainingError": "errors", "FCHead": "heads", "NODEHead": "heads", "build_head": "heads",
    "count_parameters": "heads", "ODEBlock": "ode", "solver_names": "solvers",
}
__all__ = [
    "BackboneError", "ConfigError", "ConvDynamics", "DataError", "ExperimentConfig", "FCHead", "MLPDynamics",
    "NODEHead", "ODEBlock", "ODESolveError", "TrainingError", "build_head", "count_parameters", "solver_names",
]

if TYPE_CHECKING:
    from .config import ExperimentConfig
    from .dynamics import ConvDynamics, MLPDynamics
    from .errors import BackboneError, ConfigError, DataError, ODESolveError, TrainingError
    from .heads import FCHead, NODEHead, build_head, count_parameters
    from .ode import ODEBlock
    from .solvers import solver_names


def __getattr__(name: str) -> Any:
    """`node_transfer.NAME` for a public name: import its module now (and keep the value for next time)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
