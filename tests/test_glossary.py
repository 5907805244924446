"""The glossary of the suites' arms, the model and protocol diagrams, the teaching chapter's timings, and the
number formats of the pages: generated from the registry, linked from the pages, no NaN or 1e-07 in a table."""

import re

import matplotlib
import pandas as pd
import pytest
import torch

from node_transfer.analysis.formats import MISSING, format_number, format_tolerance, readable_table
from node_transfer.core.config import default
from node_transfer.core.suitedir import read_runs_table
from node_transfer.pages.glossary import LEFT_OUT, arm_link, arm_table, arm_target, glossary_markdown, head_widths
from node_transfer.suites.notebooks import book_dir, results_dir
from node_transfer.suites.profiles import FMNIST_BASE, PROFILES
from node_transfer.suites.registry import SUITES, get_suite

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def arms() -> pd.DataFrame:
    return arm_table()


def test_numbers_are_written_as_a_reader_writes_them():
    assert [format_tolerance(x) for x in (1e-1, 1e-3, 1e-5, 1e-7, 1e-9)] == ["1e-1", "1e-3", "1e-5", "1e-7", "1e-9"]
    assert [format_number(x) for x in (1e-3, 3e-4, 0.01, 0.1, 0.25, 1.0)] == ["1e-3", "3e-4", "0.01", "0.1", "0.25",
                                                                             "1"]


def test_a_readable_table_has_no_nan_and_writes_tolerances_out():
    frame = pd.DataFrame({"rtol": [1e-7, float("nan"), "–"], "steps": [1.0, float("nan"), 4.0],
                          "time": [0.5, 0.25, float("nan")], "name": ["a", None, "c"]})
    table = readable_table(frame)
    assert list(table["rtol"]) == ["1e-7", MISSING, "–"]
    assert list(table["steps"]) == [1, MISSING, 4] and list(table["time"]) == [0.5, 0.25, MISSING]
    assert list(table["name"]) == ["a", MISSING, "c"] and not table.isna().any().any()
    assert "0.0" not in table.to_html() and list(readable_table(frame, ["time"]).columns) == ["time"]


def test_the_glossary_names_every_arm_of_every_suite_in_every_profile(arms):
    named = set(zip(arms["suite"], arms["arm"]))
    expected = {(suite, run.label) for suite in SUITES if suite not in LEFT_OUT for profile in PROFILES
                for run in get_suite(suite, profile)}
    assert named == expected and len(arms) == len(named)
    assert (arms[arms["profile"] == "fmnist"]["head width"].replace("–", 64) == 64).all()
    columns = ("regime", "starts from", "optimizer", "epochs", "solver", "gradients", "head width", "head parameters")
    assert not arms[list(columns)].isna().any().any()


def test_each_arm_name_has_one_target_and_one_line_per_suite(arms):
    text = glossary_markdown(arms)
    targets = re.findall(r"^\((arm-[a-z0-9-]+)\)=$", text, flags=re.M)
    assert sorted(targets) == sorted({arm_target(name) for name in arms["arm"]}) and len(set(targets)) == len(targets)
    assert text.count("\n: **`") == len(arms)
    assert arm_target("rk4-h0.25") == "arm-rk4-h0-25" and arm_target("adaptive_heun") == "arm-adaptive-heun"
    assert arm_link("rk") == "[`rk`](#arm-rk)"
    rk = [line for line in text.splitlines() if line.startswith(": **`paper`**") and "NODE, RK solver" in line][0]
    assert "from the seed's trained `baseline`" in rk and "Adam, lr 3e-4" in rk and "rtol = atol = 1e-5" in rk
    assert "backprop" in rk and "width 64" in rk
    libtol = arms[arms["arm"] == "adjoint-libtol"].iloc[0]
    assert libtol["solver"] == "dopri5, rtol 1e-7, atol 1e-9" and libtol["gradients"] == "adjoint"


def test_the_glossary_counts_the_parameters_the_committed_runs_recorded(arms):
    for suite in ("paper", "overfit", "heads", "beyond"):
        runs = read_runs_table(results_dir() / f"{suite}-fmnist").groupby("label")["params_head"].first()
        mine = arms[(arms["suite"] == suite) & (arms["profile"] == "fmnist")].set_index("arm")["head parameters"]
        shared = runs.index.intersection(mine.index)
        assert len(shared) >= 5, suite
        assert (runs[shared].astype(int) == mine[shared]).all(), suite


def test_head_widths_come_from_the_config_and_the_results_profile():
    assert head_widths() == {"teaching_width": default("ode_width"), "results_width": FMNIST_BASE["ode_width"]}


def test_every_arm_link_in_the_book_names_a_glossary_target(arms):
    targets = {arm_target(name) for name in arms["arm"]}
    linked = {target for page in book_dir().glob("*.md")
              for target in re.findall(r"\]\(#(arm-[^)]+)\)", page.read_text())}
    assert linked and linked <= targets, sorted(linked - targets)


def test_the_model_diagram_reads_its_sizes_from_a_built_model():
    from node_transfer.pages.diagrams import model_sizes, plot_model

    sizes = model_sizes(FMNIST_BASE)
    assert (sizes.image, sizes.feature_map, sizes.pooled, sizes.width) == ((3, 32, 32), (1280, 1, 1), 1280, 64)
    assert sizes.block_params + sizes.fc_params == arm_table_row_params("rk")
    texts = " ".join(text.get_text() for text in plot_model(sizes).axes[0].texts)
    assert "1280 × 1 × 1" in texts and "Linear(1280 + t → 64)" in texts and "10 logits" in texts


def arm_table_row_params(name: str) -> int:
    from node_transfer.pages.glossary import head_parameters

    return head_parameters(next(run for run in get_suite("paper", "fmnist") if run.label == name).params)


def test_the_protocol_reads_its_budgets_from_the_registry():
    from node_transfer.pages.diagrams import plot_protocol, protocol

    plan = protocol("fmnist")
    assert (plan.paper_baseline, plan.paper_continued, plan.overfit_baseline, plan.overfit_continued) == (12, 8, 60, 40)
    assert plan.side_by_side == ("rk-imagenet",) and "rk" in plan.paper_arms and plan.paper_stops_at_target
    assert len(plan.overfit_arms) == len(get_suite("overfit", "fmnist")) - 2 and plan.overfit_images == 5000
    texts = " ".join(t.get_text() for ax in plot_protocol(plan).axes for t in ax.texts)
    assert "rk-imagenet" in texts and "checkpoint" in texts


def test_timings_warm_up_then_alternate_the_tasks():
    from node_transfer.pages.head_timing import median_seconds

    calls = []
    seconds = median_seconds({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=3, warmup=2)
    assert calls == ["a", "a", "b", "b", "a", "b", "b", "a", "a", "b"] and set(seconds) == {"a", "b"}


def test_the_teaching_chapter_timings_count_and_compare():
    from node_transfer.pages.head_timing import gradient_timings, tolerance_timings

    torch.manual_seed(0)
    x, y = torch.randn(32, 40), torch.randint(0, 10, (32,))
    tolerance = tolerance_timings(x, (1e-1, 1e-5), width=8, rounds=2)
    assert list(tolerance["rtol = atol"]) == ["1e-1", "1e-5"] and tolerance["NFE"].is_monotonic_increasing
    table, facts = gradient_timings(x, y, width=8, rounds=2)
    assert list(table["NFE backward"] > 0) == [False, True]
    assert facts["grad_gap"] < 1e-2 and facts["adjoint_time_ratio"] > 0


def test_the_suites_table_links_every_arm_name(arms):
    from node_transfer.pages.glossary import suites_markdown

    text = suites_markdown(arms)
    rows = [line for line in text.splitlines()[2:] if line]
    assert len(rows) == arms["suite"].nunique()
    assert text.count("](#arm-") == len(arms) and "| `paper` |" in text
