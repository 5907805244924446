"""What a suite is: its configurations (`SuiteRun`), and the function that lists them with what its report shows
(`Suite`). The suites themselves are in `registry`."""

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
