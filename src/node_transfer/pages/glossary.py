"""The glossary of the suites' arms: every configuration of every suite, described from the suite registry.

Each arm's regime, starting point, optimizer and learning rate, solver and tolerance, gradients, head width and
head parameters are read from `suites.registry` (and the config's defaults) and the head the config builds, so the
book's glossary page follows the code. `glossary_markdown` writes it as MyST, one target per arm name (`arm_target`),
which other pages link to as `[rk](#arm-rk)`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import pandas as pd

from ..analysis.formats import format_number, format_tolerance
from ..core.config import ExperimentConfig, default
from ..core.solvers import is_fixed_step
from ..suites.profiles import FMNIST_BASE, PROFILE_EPOCHS, PROFILES
from ..suites.registry import SUITES, SuiteRun
from ..suites.results import DATASET_NAMES

#: The profile the results chapters show (their runs are committed), then the others, whose arms are described only
#: where a name exists in no earlier profile.
PROFILE_ORDER = ("fmnist", "cpu", "gpu")
#: The `smoke` suite checks the machinery (two one-epoch runs), so it is no arm of any study.
LEFT_OUT = ("smoke",)
#: Digits, Fashion-MNIST and CIFAR-10 each have ten classes.
NUM_CLASSES = 10
OPTIMIZER_NAMES = {"adam": "Adam", "sgd": "SGD"}
HEAD_NAMES = {"fc": "FC head", "mlp": "MLP head (no ODE)", "node": "NODE head"}
#: The registry's short group names of the head-only sweeps, in words.
GROUP_WORDS = {"option": "one option changed from the paper's NODE recipe", "combination": "a combination of options",
               "control": "control without an ODE", "adaptive": "adaptive solver", "fixed step": "fixed-step solver",
               "dopri5": "dopri5 at one tolerance", "paper": "the paper's NODE recipe"}
#: What each suite studies, in words: the regime its arms share.
REGIMES = {
    "paper": "full fine-tuning, the paper's protocol",
    "overfit": "full fine-tuning in the overfitting regime (a small training set, no augmentation, long training)",
    "heads": "head only, on cached features of the frozen backbone, long curves",
    "tolerance": "head-only sweep of the tolerance",
    "solvers": "head-only sweep of the solver",
    "beyond": "head-only sweep of newer NODE options",
    "overfit-lite2": "full fine-tuning in the overfitting regime, EfficientNet-Lite2 instead of Lite0",
    "maps": "head only at 96 px, on cached 3x3 feature maps of the frozen backbone: convolutional NODE and controls",
    "overfit-small": "full fine-tuning in the overfitting regime on 1,000 training images (the strongest overfitting)",
    "learning-rates": "full fine-tuning continued at larger learning rates, each NODE arm beside its control",
}


def arm_target(name: str) -> str:
    """The MyST target of an arm name: 'arm-' and the name with every character but letters, digits and '-' as '-'."""
    return "arm-" + re.sub(r"[^a-z0-9-]", "-", name.lower())


def arm_link(name: str) -> str:
    """A Markdown link from an arm's name (in code style) to its glossary entry."""
    return f"[`{name}`](#{arm_target(name)})"


@cache
def _num_features(backbone: str) -> int:
    """The width of a backbone's pooled features, read from the timm model (random weights: nothing is loaded)."""
    from ..model.backbones import create_backbone

    return int(create_backbone(backbone, "none")[0].num_features)


def head_parameters(params: dict[str, Any]) -> int:
    """The parameters of the head an arm's configuration builds (its backbone's feature width, ten classes)."""
    from ..model.heads import count_parameters, head_from_config

    config = ExperimentConfig.from_dict({k: v for k, v in params.items() if k in ExperimentConfig.field_names()})
    return count_parameters(head_from_config(config, _num_features(config.backbone), NUM_CLASSES))


def _setting(params: dict[str, Any], name: str) -> Any:
    return params.get(name, default(name))


def _optimizer(params: dict[str, Any]) -> str:
    text = f"{OPTIMIZER_NAMES[_setting(params, 'optimizer')]}, lr {format_number(_setting(params, 'lr'))}"
    schedule = _setting(params, "schedule")
    if schedule == "step":
        text += f" (divided by 10 at epochs {_setting(params, 'lr_milestones').replace(',', ', ')})"
    elif schedule != "none":
        text += f" ({schedule} schedule)"
    return text


def _solver(params: dict[str, Any]) -> str:
    if params["head"] != "node":
        return "–"
    solver, backend = _setting(params, "solver"), _setting(params, "ode_backend")
    if is_fixed_step(solver, backend):
        steps = round(_setting(params, "t_end") / _setting(params, "step_size"))
        return f"{solver}, {steps} step{'s' if steps != 1 else ''} of {format_number(_setting(params, 'step_size'))}"
    rtol, atol = _setting(params, "rtol"), _setting(params, "atol")
    tolerance = f"rtol = atol = {format_tolerance(rtol)}" if rtol == atol else \
        f"rtol {format_tolerance(rtol)}, atol {format_tolerance(atol)}"
    return f"{solver}, {tolerance}"


def _gradients(params: dict[str, Any]) -> str:
    if params["head"] != "node":
        return "–"
    if not _setting(params, "adjoint"):
        return "backprop"
    return "adjoint, seminorm" if _setting(params, "seminorm") else "adjoint"


def _start(run: SuiteRun) -> str:
    if run.init_from:
        stop = ", until its validation accuracy" if run.target_from else ""
        return f"the seed's trained `{run.init_from}`{stop}"
    frozen = "frozen " if run.params.get("freeze_backbone") else ""
    return f"{frozen}ImageNet weights" if run.params.get("weights") == "imagenet" else str(run.params.get("weights"))


def _data(params: dict[str, Any]) -> str:
    subset = params.get("train_subset", 0)
    images = f"{subset:,} training images" if subset else "all training images"
    return f"{DATASET_NAMES.get(params['dataset'], params['dataset'])} at {params['image_size']} px, {images}"


def _extras(params: dict[str, Any]) -> str:
    """The NODE options an arm turns on (zero init, augmentation, STEER, penalties, another backend)."""
    found = []
    if params.get("zero_init"):
        found.append("zero-initialised last layer")
    if params.get("augment_dim"):
        found.append(f"{params['augment_dim']} augmented dimensions")
    if params.get("steer"):
        found.append(f"STEER b = {format_number(params['steer'])}")
    if params.get("regularization", "none") != "none":
        found.append(f"{params['regularization']} penalty")
    if params.get("ode_backend"):
        found.append(f"{params['ode_backend']} backend")
    if params.get("patience"):
        found.append(f"stops after {params['patience']} epochs without a lower validation loss")
    return "; ".join(found)


@dataclass(frozen=True)
class Arm:
    """One arm of one suite, as the glossary describes it."""

    name: str
    suite: str
    profile: str
    run: SuiteRun


def arms() -> list[Arm]:
    """Every arm of every suite (but `LEFT_OUT`): each suite's arms under the first profile in `PROFILE_ORDER` that
    has them, in the registry's order."""
    found: dict[tuple[str, str], Arm] = {}
    for suite, build in SUITES.items():
        if suite in LEFT_OUT:
            continue
        for profile in PROFILE_ORDER:
            for run in build(profile):
                found.setdefault((suite, run.label), Arm(run.label, suite, profile, run))
    return list(found.values())


def arm_table(selected: list[Arm] | None = None) -> pd.DataFrame:
    """One row per arm: its suite, regime, starting point, optimizer and learning rate, epochs, solver and tolerance,
    gradients, head width and head parameters, what it stands for (the registry's group) and its profile."""
    rows = []
    for arm in selected if selected is not None else arms():
        params = arm.run.params
        node_or_mlp = params["head"] in ("node", "mlp")
        rows.append({
            "arm": arm.name, "suite": arm.suite, "profile": arm.profile, "regime": REGIMES[arm.suite],
            "data": _data(params), "what it is": GROUP_WORDS.get(arm.run.group, arm.run.group) or params["head"],
            "head": params["head"],
            "starts from": _start(arm.run), "optimizer": _optimizer(params), "epochs": params["epochs"],
            "solver": _solver(params), "gradients": _gradients(params),
            "head width": _setting(params, "ode_width") if node_or_mlp else "–",
            "head parameters": head_parameters(params), "options": _extras(params),
        })
    return pd.DataFrame(rows)


def _definition(row: pd.Series) -> str:
    """One suite's use of an arm name, as a sentence of the glossary."""
    profile = "" if row["profile"] == PROFILE_ORDER[0] else f" ({row['profile']} profile only)"
    budget = "up to " if "until" in row["starts from"] or row["options"].startswith("stops") else ""
    ode = f"; {row['solver']}, {row['gradients']}" if row["head"] == "node" else ""
    width = f"; width {row['head width']}" if row["head width"] != "–" else ""
    options = f"; {row['options']}" if row["options"] else ""
    return (f": **`{row['suite']}`**{profile}, {row['what it is']}: {HEAD_NAMES[row['head']]} from "
            f"{row['starts from']}; {budget}{row['epochs']} epochs of {row['optimizer']}{ode}{width}{options}; "
            f"{row['head parameters']:,} head parameters.")


def glossary_markdown(table: pd.DataFrame | None = None) -> str:
    """The glossary as MyST: per arm name (alphabetical) a target, the name, and one definition per suite using it."""
    table = arm_table() if table is None else table
    blocks = []
    for name in sorted(table["arm"].unique(), key=str.lower):
        rows = table[table["arm"] == name]
        blocks.append(f"({arm_target(name)})=\n`{name}`\n" + "\n".join(_definition(row) for _, row in rows.iterrows()))
    return "\n\n".join(blocks) + "\n"


def suites_overview(table: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per suite: its regime, data (results profile), how many arms, and their names."""
    table = arm_table() if table is None else table
    rows = []
    for suite, group in table.groupby("suite", sort=False):
        main = group[group["profile"] == PROFILE_ORDER[0]]
        rows.append({"suite": suite, "regime": REGIMES[suite], "data (fmnist profile)": main["data"].iloc[0],
                     "arms": len(group), "names": ", ".join(group["arm"])})
    return pd.DataFrame(rows)


def suites_markdown(table: pd.DataFrame | None = None) -> str:
    """`suites_overview` as a MyST table whose arm names link to their glossary entries."""
    overview = suites_overview(table)
    columns = [column for column in overview.columns if column != "names"] + ["arms, by name"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for _, row in overview.iterrows():
        names = ", ".join(arm_link(name) for name in row["names"].split(", "))
        cells = [f"`{row['suite']}`", row["regime"], row["data (fmnist profile)"], str(row["arms"]), names]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def profiles_table() -> pd.DataFrame:
    """One row per profile: data, image size, backbone, head width and the paper suite's epoch budgets."""
    rows = []
    for profile, base in PROFILES.items():
        epochs = PROFILE_EPOCHS[profile]
        rows.append({"profile": profile, "data": DATASET_NAMES.get(base["dataset"], base["dataset"]),
                     "image size (px)": base["image_size"], "backbone": base["backbone"],
                     "head width": base.get("ode_width", default("ode_width")),
                     "paper suite's epochs (baseline, rk, adjoint)":
                         f"{epochs['baseline']}, {epochs['rk']}, {epochs['adjoint']}"})
    return pd.DataFrame(rows)


def head_widths() -> dict[str, int]:
    """The head width of the teaching chapters (the config's default) and of the results (the `fmnist` profile)."""
    return {"teaching_width": int(default("ode_width")), "results_width": int(FMNIST_BASE["ode_width"])}


def page_facts(results: object = None) -> dict[str, Any]:
    """Every name the glossary glues from its facts loop (`pages.PAGES`): the head widths."""
    return head_widths()
