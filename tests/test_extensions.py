"""The chapter on regimes where a NODE could help: each study declared and dated, its tests shown as far as run."""

import pandas as pd

from node_transfer.analysis.claims import STUDIES
from node_transfer.analysis.endpoints import Endpoint
from node_transfer.pages.compact import compact_tests
from node_transfer.pages.extensions import (
    EXTENSIONS,
    declaration_of,
    extension_facts,
    extension_section,
)
from node_transfer.suites.notebooks import results_dir


def test_every_extension_is_a_declared_study_of_its_own():
    for key in EXTENSIONS:
        declaration = declaration_of(key)
        assert declaration.regime in {regime.key for regime in STUDIES[key].regimes}
        assert len(STUDIES[key].regimes) == 1  # its own Holm family, apart from the paper's regimes


def test_the_compact_table_shows_a_found_test_and_says_when_one_has_no_seed_yet():
    found = Endpoint(1, "rk", "fc-adam", "test_acc", "primary")
    missing = Endpoint(2, "rk", "fc-adam", "val_loss_fluctuation", "primary")
    table = pd.DataFrame([{"regime": "R", "a": "rk", "b": "fc-adam", "name": "test_acc", "n": 5, "difference": 0.12,
                           "ci_low": -0.2, "ci_high": 0.44, "unit": "points", "verdict": "holds",
                           "verdict_holm": "undecided", "difference_pct": float("nan")}])
    frame = compact_tests(table, (("R", found), ("R", missing)))
    assert list(frame["test"]) == [found.wording(), missing.wording()] and "regime" not in frame
    assert frame.loc[0, "difference [95 % interval]"] == "+0.12 [-0.20, +0.44] points"
    assert (frame.loc[0, "label"], frame.loc[0, "label after Holm"], frame.loc[0, "seeds"]) == ("holds", "undecided", 5)
    assert frame.loc[1, "difference [95 % interval]"] == "no paired seed yet" and frame.loc[1, "seeds"] == 0
    assert "regime" in compact_tests(table, (("R", found), ("S", found)))  # several regimes: a column


def test_each_section_reads_the_committed_results_as_far_as_they_go():
    facts = extension_facts()
    assert facts["steps_adam_rates"] == "3e-4, 1e-3 and 3e-3" and facts["small_images"] == "1,000"
    assert facts["lite2"] == "tf_efficientnet_lite2" and facts["maps_image_size"] == 96
    for key in EXTENSIONS:
        section = extension_section(results_dir(), key)
        assert len(section.tests) == len(STUDIES[key].regimes[0].primary())
        assert section.status.startswith("Declared in commit") and declaration_of(key).rules in section.status
        assert (section.figure is None) == (section.tests["seeds"] < 2).all() == (section.flips is None)


def test_each_regime_of_the_answer_has_its_primary_tests_at_a_glance():
    from node_transfer.analysis.findings import declared_study
    from node_transfer.pages.compact import regime_compact

    data, table = declared_study(str(results_dir()))
    for regime in data:
        compact = regime_compact(table, regime)
        assert list(compact["test"]) == [test.wording() for test in regime.primary()]
        assert (compact["seeds"] >= 2).all() and not compact["difference [95 % interval]"].str.contains("nan").any()


def test_the_curves_show_the_primary_arms_continued_arms_on_epochs_since_their_checkpoint():
    from node_transfer.analysis.findings import declared_study
    from node_transfer.pages.extensions import curves_figure

    data, _ = declared_study(str(results_dir()))
    overfit = next(regime for regime in data if regime.suite == "overfit")
    figure = curves_figure(data[overfit][1], overfit)
    legend = figure.axes[2].get_legend()
    assert [text.get_text() for text in legend.get_texts()] == ["rk", "fc-adam", "adjoint", "fc-sgd"]
    assert figure.axes[0].get_xlabel() == "epochs since the baseline checkpoint"
    assert curves_figure(data[overfit][1].iloc[:0], overfit) is None  # no run in: no figure
