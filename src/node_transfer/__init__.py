"""node-transfer: transfer learning with Neural ODE heads on pretrained backbones."""

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
