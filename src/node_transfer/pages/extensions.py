"""Where a NODE head has room to help: the studies declared beyond the paper's regimes, read as far as they have run.

Each study of `EXTENSIONS` is a `claims.STUDIES` entry declared (and dated by `claims.CONFIRMATIONS`) before its first
run. `extension_status` says what was declared, when, and how many of its runs are in; `extension_section` adds its
primary family as a reader scans it (`compact.compact_tests`) and its forest plot once a test has two paired seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..analysis.claims import CONFIRMATIONS, STUDIES, Confirmation, Regime
from ..analysis.findings import declared_study, primary, sensitivity_table
from ..analysis.plots import plot_curves, plot_fine_pairs
from ..analysis.preregistration import confirmation_status, declaration_sentence
from ..analysis.statistics import statistic
from ..core.config import default
from ..suites.profiles import OVERFIT_SCALE, PROFILE_EPOCHS
from ..suites.registry import LARGE_STEP_RATES, LITE2, MAPS_IMAGE_SIZE, SMALL_SCALE, get_suite
from ..suites.results import fine_curves_of
from .compact import compact_tests
from .first_screen import labelled_piece, regime_short
from .forest import plot_forest

#: The studies of the chapter "Where a NODE could help", in its order: a new one is a `claims.STUDIES` entry, its
#: `claims.CONFIRMATIONS` declaration, and a line here.
EXTENSIONS = ("fashion-mnist-steps", "fashion-mnist-small", "fashion-mnist-lite2", "fashion-mnist-maps")


@dataclass(frozen=True)
class Section:
    """One study as the chapter shows it: its status in words, its primary tests, and its forest plot (None until a
    test has two paired seeds)."""

    status: str
    tests: pd.DataFrame
    figure: plt.Figure | None
    curves: plt.Figure | None = None  # the primary arms' curves (continued arms on epochs since their checkpoint)
    flips: pd.DataFrame | None = None  # each primary test's declared label and the checks under which it flips
    fine: plt.Figure | None = None  # the fine curves of the pairs whose stability test reads them


def declaration_of(key: str) -> Confirmation:
    """The declaration (`claims.CONFIRMATIONS`) that dates a study's regimes."""
    regimes = {regime.key for regime in STUDIES[key].regimes}
    return next(c for c in CONFIRMATIONS.values() if c.regime in regimes)


def extension_status(results: str | Path, key: str) -> str:
    """'Declared in commit 5b46889 (2026-12-07 06:12 UTC): RULES. 12 of its 30 runs are in: until all are, its
    labels are interim readings, not its verdicts.'"""
    declaration = declaration_of(key)
    sentence = declaration_sentence(declaration, confirmation_status(results, declaration))
    return sentence[0].upper() + sentence[1:] + "."


def curves_figure(histories: pd.DataFrame, regime: Regime) -> plt.Figure | None:
    """The curves of a regime's primary arms: those continued from a checkpoint, on epochs since it, or (where no
    arm continues) every primary arm on its epochs; None before any of them has a run."""
    runs = {run.label: run for run in get_suite(regime.suite, regime.profile)}
    arms = regime.primary_arms()
    continued = [label for label in arms if runs[label].init_from]
    shown = [label for label in (continued or arms) if label in set(histories["label"])]
    if not shown:
        return None
    return plot_curves(histories, shown, "continued from the baseline" if continued else "",
                       xlabel="epochs since the baseline checkpoint" if continued else "epoch")


def fine_figure(histories: pd.DataFrame, regime: Regime) -> plt.Figure | None:
    """The fine curves of each primary pair whose stability statistic reads them (`fine_...`); None for a regime
    without such a test, or before its runs have fine curves."""
    pairs = list(dict.fromkeys((test.a, test.b) for test in regime.primary() if test.statistic.startswith("fine_")))
    fine = fine_curves_of(histories)
    pairs = [pair for pair in pairs if set(pair) <= set(fine["label"])]
    return plot_fine_pairs(fine, pairs) if pairs else None


def extension_section(results: str | Path, key: str) -> Section:
    """One study of `EXTENSIONS`, read from the committed runs as far as they go."""
    data, table = declared_study(str(results), key)
    tests = primary(table) if len(table) else table
    decided = len(tests) and np.isfinite(tests["ci_low"].astype(float)).any()
    figure = plot_forest(table) if decided else None
    declared = tuple((regime.title, test) for regime in STUDIES[key].regimes for test in regime.primary())
    regime = STUDIES[key].regimes[0]
    curves = curves_figure(data[regime][1], regime) if regime in data else None
    flips = None
    if decided:
        sensitivity = sensitivity_table(data)
        flips = sensitivity[["as declared", "flips under"]].set_axis(
            [name.split(": ", 1)[-1] for name in sensitivity.index]).rename_axis("primary test").reset_index()
    fine = fine_figure(data[regime][1], regime) if regime in data else None
    return Section(extension_status(results, key), compact_tests(tests, declared), figure, curves, flips, fine)


def _rates(rates: tuple[float, ...]) -> str:
    """'3e-4, 1e-3 and 3e-3' (the rates as the suite labels write them)."""
    words = [f"{lr:.0e}".replace("e-0", "e-") if lr < 0.01 else f"{lr:g}" for lr in rates]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def extension_facts(profile: str = "fmnist") -> dict[str, str | int]:
    """The settings the chapter's prose states, read from the suites' definitions and the config's defaults."""
    return {"steps_adam_rates": _rates(LARGE_STEP_RATES["adam"]), "steps_sgd_rates": _rates(LARGE_STEP_RATES["sgd"]),
            "steps_epochs": PROFILE_EPOCHS[profile]["rk"], "fine_evals": default("fine_evals"),
            "fine_val_size": default("fine_val_size"), "small_images": f"{SMALL_SCALE[profile]['train_subset']:,}",
            "overfit_images": f"{OVERFIT_SCALE[profile]['train_subset']:,}", "lite2": LITE2,
            "maps_image_size": MAPS_IMAGE_SIZE}


def page_facts(results: str | Path) -> dict[str, str | int]:
    """Every name the harder-regimes chapter glues from its facts loop (`pages.PAGES`)."""
    return extension_facts()


def extensions_brief(results: str | Path) -> str:
    """The studies declared where a NODE head has more room to help (`extensions.EXTENSIONS`), one clause each: how
    many of its runs are in, and its decided tests (Holm over its own family), interim while runs are missing."""
    parts = []
    for key in EXTENSIONS:
        declaration = declaration_of(key)
        status = confirmation_status(results, declaration)
        table = status["table"]
        tests = table[table["role"] == "primary"] if len(table) else table
        name = regime_short(STUDIES[key].regimes[0].title)
        if not status["finished"]:
            parts.append(f"{name}: no runs yet")
            continue
        state = "all" if status["finished"] == status["planned"] else "interim,"
        decided = tests[(tests["verdict_holm"] != "undecided") & (tests["n"] >= 2)] if len(tests) else tests
        found = "; ".join(f"{statistic(row['name']).label}: {labelled_piece(row, corrected=True)}"
                          for _, row in decided.iterrows())
        parts.append(f"{name} ({state} {status['finished']} of {status['planned']} runs in; declared in "
                     f"`{status['commit']}`): {len(decided)} of its {len(tests)} tests decided"
                     + (f" ({found})" if found else ""))
    return ("**Where a NODE head has more room to help**, studies declared before their runs, each its own Holm "
            "family ([chapter](book/harder.md)): " + "; ".join(parts) + ".")
