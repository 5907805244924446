"""optim.py: every optimizer and schedule name the config offers is built, and any other name fails there."""

import dataclasses

import pytest
import torch

from node_transfer.core.choices import OPTIMIZERS, SCHEDULES
from node_transfer.core.config import ExperimentConfig
from node_transfer.core.errors import ConfigError
from node_transfer.run.optim import OPTIMIZER_BUILDERS, SCHEDULE_BUILDERS, make_optimizer, make_scheduler


def _choices(name: str) -> tuple[str, ...]:
    return next(f.metadata["choices"] for f in dataclasses.fields(ExperimentConfig) if f.name == name)


def test_the_config_offers_exactly_the_names_optim_builds():
    assert _choices("optimizer") == OPTIMIZERS and set(OPTIMIZER_BUILDERS) == set(OPTIMIZERS)
    assert _choices("schedule") == SCHEDULES and set(SCHEDULE_BUILDERS) == set(SCHEDULES)


@pytest.mark.parametrize("optimizer, kind", [("adam", torch.optim.Adam), ("sgd", torch.optim.SGD)])
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_every_offered_name_is_built(optimizer, kind, schedule):
    config = ExperimentConfig(optimizer=optimizer, schedule=schedule, lr_milestones="2", epochs=4, lr=0.5)
    weight = torch.nn.Parameter(torch.ones(2))
    frozen = torch.nn.Parameter(torch.ones(2), requires_grad=False)
    built = make_optimizer(config, [weight, frozen])
    assert isinstance(built, kind) and built.param_groups[0]["params"] == [weight]
    rates = []
    scheduler = make_scheduler(config, built)
    for _ in range(3):
        rates.append(built.param_groups[0]["lr"])
        built.step()
        scheduler.step()
    expected = {"none": [0.5, 0.5, 0.5], "step": [0.5, 0.5, 0.05]}.get(schedule)
    if expected is not None:
        assert rates == pytest.approx(expected)
    else:  # cosine over 4 epochs
        assert rates[0] == 0.5 and rates[1] < rates[0] and rates[2] < rates[1]


@pytest.mark.parametrize("parameter, value, build", [
    ("optimizer", "lion", lambda config: make_optimizer(config, [torch.nn.Parameter(torch.ones(1))])),
    ("schedule", "onecycle", lambda config: make_scheduler(
        config, torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1))),
])
def test_an_unknown_name_fails_in_optim_naming_the_parameter_value_and_choices(parameter, value, build):
    config = ExperimentConfig(**{parameter: value})  # not validated: optim must not fall through to a default
    with pytest.raises(ConfigError) as info:
        build(config)
    message = str(info.value)
    assert f"{parameter}={value!r}" in message
    assert all(name in message for name in (OPTIMIZERS if parameter == "optimizer" else SCHEDULES))


def test_a_declared_name_without_a_builder_fails_too(monkeypatch):
    monkeypatch.delitem(SCHEDULE_BUILDERS, "cosine")
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1)
    with pytest.raises(ConfigError, match="schedule='cosine'.*\\['none', 'step'\\]"):
        make_scheduler(ExperimentConfig(schedule="cosine"), optimizer)
