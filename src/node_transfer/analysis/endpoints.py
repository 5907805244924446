"""A declared test (an *endpoint*): two configurations of a suite compared on one statistic, with a role.

`claims` declares the tests of each regime with these; `Endpoint` checks its statistic, role and claim on creation,
so a misspelt name fails where it is declared.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.errors import ConfigError
from .paper import PAPER_CLAIMS
from .statistics import statistic

ROLES = ("primary", "paper", "exploratory")
#: The stability statistic of the primary tests: the paper's "more stable" is about how much the curves wobble.
PRIMARY_STABILITY = "val_loss_fluctuation"
#: Every "more stable" question is asked of both curves, by fluctuation and by rise, and of the fine curves where
#: the runs have them (`run.fine_curves`; a regime whose runs have none leaves that test out).
STABILITY = ("val_loss_fluctuation", "train_loss_fluctuation", "val_loss_rise", "train_loss_rise",
             "fine_val_loss_fluctuation")


@dataclass(frozen=True)
class Endpoint:
    """a against b on one statistic; `kind` "same" (equivalence) or "better" (superiority), by default "same"
    for accuracy and "better" for everything else."""

    claim: int
    a: str
    b: str
    statistic: str
    role: str = "exploratory"
    kind: str = ""

    def __post_init__(self) -> None:
        statistic(self.statistic)  # a name outside the registry is refused here
        if self.role not in ROLES:
            raise ConfigError("role", self.role, f"one of {ROLES}")
        if self.claim not in PAPER_CLAIMS:
            raise ConfigError("claim", self.claim, f"one of {sorted(PAPER_CLAIMS)}")
        if not self.kind:
            object.__setattr__(self, "kind", "same" if statistic(self.statistic).kind == "accuracy" else "better")

    def wording(self) -> str:
        """'rk: same test accuracy as fc-adam', 'node: steadier than mlp (val-loss fluctuation)'."""
        s = statistic(self.statistic)
        if self.kind == "same":
            return f"{self.a}: same {s.label} as {self.b}"
        phrase = {"stability": f"steadier than {self.b} ({s.label})", "speed": f"quicker to the target than {self.b}",
                  "cost": f"cheaper per epoch than {self.b}"}.get(s.kind, f"better {s.label} than {self.b}")
        return f"{self.a}: {phrase}"


def stability_tests(claim: int, a: str, b: str, role: str = "exploratory",
                    primary: str = PRIMARY_STABILITY) -> tuple[Endpoint, ...]:
    """Every stability statistic for one pair; with role "primary" only `primary` (by default `PRIMARY_STABILITY`)
    is primary."""
    return tuple(Endpoint(claim, a, b, name, "exploratory" if role == "primary" and name != primary else role)
                 for name in STABILITY)
