"""node-transfer: transfer learning with Neural ODE heads on pretrained backbones.

The package is layered, one subpackage a layer, lowest first; a module imports only from its own layer or a lower
one (tests/test_architecture.py): `core` (errors, config, run and suite files), `numerics` (the ODE block and its
solvers), `model` (backbones, heads, data), `run` (one run), `suites` (many runs), `analysis` (statistics, claims,
tables, figures), `app` (the command line) and `gpucheck` (the prepared GPU check).

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
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the module that defines it. Resolved on first use (PEP 562), so `import node_transfer.core.config`
#: or `node_transfer.core.errors` loads no torch: the CLI's parser, suite listings and config checks stay light.
_EXPORTS = {
    "ExperimentConfig": "core.config", "ConvDynamics": "numerics.dynamics", "MLPDynamics": "numerics.dynamics",
    "BackboneError": "core.errors", "ConfigError": "core.errors", "DataError": "core.errors",
    "ODESolveError": "core.errors", "TrainingError": "core.errors", "FCHead": "model.heads",
    "NODEHead": "model.heads", "build_head": "model.heads", "count_parameters": "model.heads",
    "ODEBlock": "numerics.ode", "solver_names": "core.solvers",
}
__all__ = [
    "BackboneError", "ConfigError", "ConvDynamics", "DataError", "ExperimentConfig", "FCHead", "MLPDynamics",
    "NODEHead", "ODEBlock", "ODESolveError", "TrainingError", "build_head", "count_parameters", "solver_names",
]

#: Old module path -> its home since the package was split into layers, for the old paths that files written
#: outside the source tree name: the committed executed notebooks in results/ import these four (`make reproduce`
#: re-runs them unchanged under strict nbval). `import node_transfer.experiment` gives the module
#: `node_transfer.run.experiment` itself (one module object, not a copy). New code imports the new paths.
MOVED = {
    "experiment": "run.experiment", "notebooks": "suites.notebooks", "plots": "analysis.plots",
    "reporting": "analysis.reporting",
}

if TYPE_CHECKING:
    from .core.config import ExperimentConfig
    from .core.errors import BackboneError, ConfigError, DataError, ODESolveError, TrainingError
    from .core.solvers import solver_names
    from .model.heads import FCHead, NODEHead, build_head, count_parameters
    from .numerics.dynamics import ConvDynamics, MLPDynamics
    from .numerics.ode import ODEBlock


class _MovedModule(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds `node_transfer.OLD` for an old path in MOVED and loads it as the module at its new home."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        package, _, old = fullname.rpartition(".")
        if package != __name__ or old not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None  # a placeholder: exec_module puts the real module in its place

    def exec_module(self, module: ModuleType) -> None:
        old = module.__name__.rpartition(".")[2]
        sys.modules[module.__name__] = importlib.import_module(f".{MOVED[old]}", __name__)  # the import returns it


if not any(isinstance(finder, _MovedModule) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModule())


def __getattr__(name: str) -> Any:
    """`node_transfer.NAME` for a public name: import its module now (and keep the value for next time)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
