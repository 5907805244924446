"""The optimizer and learning-rate schedule a configuration names: one builder per name that `choices` declares
(and `config` offers), and a ConfigError naming the parameter for any other name, never a silent default."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..core.choices import OPTIMIZERS, SCHEDULES
from ..core.config import ExperimentConfig
from ..core.errors import ConfigError

Scheduler = torch.optim.lr_scheduler.LRScheduler

#: Optimizer name (`choices.OPTIMIZERS`) -> its builder from the trainable parameters and the config.
OPTIMIZER_BUILDERS: dict[str, Callable[[list[torch.nn.Parameter], ExperimentConfig], torch.optim.Optimizer]] = {
    "adam": lambda params, config: torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay),
    "sgd": lambda params, config: torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                                                  weight_decay=config.weight_decay),
}
#: Schedule name (`choices.SCHEDULES`) -> its builder from the optimizer and the config.
SCHEDULE_BUILDERS: dict[str, Callable[[torch.optim.Optimizer, ExperimentConfig], Scheduler]] = {
    "none": lambda optimizer, config: torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0),
    "cosine": lambda optimizer, config: torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs),
    "step": lambda optimizer, config: torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=config.milestones(), gamma=config.lr_gamma),
}


def _builder(builders: dict[str, Callable], declared: Sequence[str], parameter: str, name: str) -> Callable:
    """The builder of `name`; ConfigError naming the parameter, the value and the names that can be built."""
    if name not in declared or name not in builders:
        raise ConfigError(parameter, name, f"one of {[n for n in declared if n in builders]}")
    return builders[name]


def make_optimizer(config: ExperimentConfig, parameters) -> torch.optim.Optimizer:
    """The configured optimizer over the parameters that train."""
    params = [p for p in parameters if p.requires_grad]
    return _builder(OPTIMIZER_BUILDERS, OPTIMIZERS, "optimizer", config.optimizer)(params, config)


def make_scheduler(config: ExperimentConfig, optimizer: torch.optim.Optimizer) -> Scheduler:
    """The configured learning-rate schedule (stepped once per epoch)."""
    return _builder(SCHEDULE_BUILDERS, SCHEDULES, "schedule", config.schedule)(optimizer, config)
