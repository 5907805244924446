"""What a suite is: its configurations (`SuiteRun`), the function that lists them with what its report shows
(`Suite`), and how a configuration's label names a learning rate (`rate_label`). The suites themselves are in
`registry`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SuiteRun:
    """One configuration of a suite.

    `init_from` names another run of the same seed to start from; with `target_from` the run stops once its
    validation accuracy reaches that run's (of the same seed), read when the run starts.
    """

    label: str
    params: dict[str, Any]
    init_from: str | None = None
    group: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    target_from: str | None = None


@dataclass(frozen=True)
class Suite:
    """A suite: the function that lists its runs for a profile (its docstring says what it runs), and what its report
    shows: a table kind (`analysis.reporting.TABLE_KINDS`) and figures beside every arm's curves (`FIGURES`)."""

    build: Callable[[str], list[SuiteRun]]
    tables: str = "sweep"
    figures: tuple[str, ...] = ("cost-accuracy",)

    def __call__(self, profile: str) -> list[SuiteRun]:
        return self.build(profile)

    @property
    def description(self) -> str:
        """What it runs, in one line (`suite --list`, the README's suite list)."""
        return " ".join((self.build.__doc__ or "").split())


def rate_label(arm: str, lr: float) -> str:
    """An arm's label at a learning rate, e.g. 'rk-lr3e-3', 'fc-sgd-lr1e-1'."""
    return f"{arm}-lr{lr:.0e}".replace("e-0", "e-")


def arm_and_rate(label: str) -> tuple[str, float | None]:
    """The arm and learning rate a `rate_label` names ('rk-lr3e-3' -> ('rk', 0.003)); (label, None) otherwise."""
    arm, _, rate = label.rpartition("-lr")
    lr = float(rate) if rate.replace("e-", "", 1).isdigit() else None
    return (arm, lr) if lr is not None and rate_label(arm, lr) == label else (label, None)
