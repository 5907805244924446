"""What the paper reports and claims: its tables' numbers (`PAPER`) and its claims as the book numbers them.

`claims` declares the tests of these claims; the pages quote the paper's numbers beside ours from here.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The paper's reported numbers (Tables I and II), for side-by-side comparison only.
PAPER = {
    "baseline": {"model": "EfficientNetB0 (+ FC)", "train": 0.987, "val": 0.845, "test": 0.81, "epochs": 200,
                 "hours": 4.5},
    "rk": {"model": "proposed, RK solver", "train": 0.985, "val": 0.847, "test": 0.81, "epochs": 100,
           "hours": 3.75},
    "adjoint": {"model": "proposed, adjoint", "train": 0.992, "val": 0.853, "test": 0.81, "epochs": 160,
                "hours": 3.25},
}


@dataclass(frozen=True)
class PaperClaim:
    """One claim of the paper, as the book numbers them."""

    number: int
    title: str
    paper: str  # what the paper says, in our words (its numbers are added from `PAPER`)
    short: str = ""  # the same in a few words, for the claims table


#: The paper's claims (0: questions of ours the paper does not ask).
PAPER_CLAIMS = {c.number: c for c in (
    PaperClaim(1, "Same accuracy", "a NODE block before the final layer keeps the baseline's test accuracy",
               "the baseline's test accuracy"),
    PaperClaim(2, "More stable", "the NODE block makes the training and validation curves more stable",
               "steadier training and validation curves"),
    PaperClaim(3, "Quicker", "the NODE models reach the target validation accuracy in fewer epochs and less "
                             "time, though each epoch is slower", "the target in fewer epochs and less time"),
    PaperClaim(4, "Adjoint best", "the adjoint model is the most stable, converges fastest and has the best "
                                  "validation accuracy", "the adjoint arm steadiest, quickest, best"),
    PaperClaim(0, "Calibration", "(not in the paper) the NODE head's predictions are better calibrated"),
)}
