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

from .config import ExperimentConfig
from .dynamics import ConvDynamics, MLPDynamics
from .errors import BackboneError, ConfigError, DataError, ODESolveError, TrainingError
from .heads import FCHead, NODEHead, build_head, count_parameters
from .ode import ODEBlock
from .solvers import solver_names

__version__ = "0.1.0"
__all__ = [
    "BackboneError", "ConfigError", "ConvDynamics", "DataError", "ExperimentConfig", "FCHead", "MLPDynamics",
    "NODEHead", "ODEBlock", "ODESolveError", "TrainingError", "build_head", "count_parameters", "solver_names",
]
