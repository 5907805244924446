"""How the book shows tables and the cost/accuracy plot: no row numbers, no labels drawn over each other."""

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402

from node_transfer.analysis.plots import plot_cost_accuracy  # noqa: E402
from node_transfer.analysis.reporting import show_table  # noqa: E402


def test_show_table_hides_row_numbers_and_keeps_named_indexes():
    frame = pd.DataFrame({"configuration": ["a", "b"], "test %": ["97.1 ± 0.3", "96.8 ± 0.5"]})
    html = show_table(frame)._repr_html_()
    assert "<th>0</th>" not in html and "97.1\u00a0±\u00a00.3" in html and 'class="dataframe"' in html
    assert not repr(show_table(frame)).splitlines()[1].startswith("0")
    named = show_table(frame.set_index("configuration"))._repr_html_()
    assert "<th>a</th>" in named
    assert "<th>x</th>" in show_table(pd.Series({"x": 1.0}, name="value"))._repr_html_()


def test_cost_accuracy_plot_names_configurations_in_a_legend():
    runs = pd.DataFrame({"label": ["euler", "euler", "rk4", "dopri5"], "nfe_forward": [1, 1, 4.0, 26.0],
                         "test_acc": [0.95, 0.96, 0.955, 0.956]})
    ax = plot_cost_accuracy(runs).axes[0]
    assert len(ax.texts) == 0  # labels beside close points overlapped
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["euler", "rk4", "dopri5"]


def test_short_cells_do_not_wrap_and_prose_cells_do():
    frame = pd.DataFrame({"claim": ["the three models reach the same test accuracy on every seed we ran"],
                          "test %": ["97.1 ± 0.3"]})
    html = show_table(frame)._repr_html_()
    assert "97.1\u00a0±\u00a00.3" in html and "the three models reach" in html


def test_an_arm_at_a_larger_learning_rate_is_drawn_like_its_arm_in_its_rates_colour():
    from node_transfer.analysis.plots import ARM_STYLES, arm_style
    from node_transfer.suites.registry import LARGE_STEP_RATES
    from node_transfer.suites.spec import arm_and_rate, rate_label

    for optimizer, (node, control) in {"adam": ("rk", "fc-adam"), "sgd": ("adjoint", "fc-sgd")}.items():
        for lr in LARGE_STEP_RATES[optimizer]:
            assert arm_and_rate(rate_label(node, lr)) == (node, lr)
            node_colour, node_line = arm_style(rate_label(node, lr))
            control_colour, control_line = arm_style(rate_label(control, lr))
            assert node_colour == control_colour and (node_line, control_line) == ("-", "--")  # one pair, one colour
    colours = {arm_style(rate_label("rk", lr))[0] for lr in LARGE_STEP_RATES["adam"]}
    assert len(colours) == len(LARGE_STEP_RATES["adam"])  # each rate its own colour
    assert arm_and_rate("node-adjoint") == ("node-adjoint", None) and arm_and_rate("rk-lrx") == ("rk-lrx", None)
    assert arm_style("rk") == ARM_STYLES["rk"]


def test_the_fine_pairs_plot_draws_each_seed_of_a_pair_and_spans_its_window():
    import numpy as np

    from node_transfer.analysis.plots import plot_fine_pairs

    rows = []
    for label, level in (("rk-lr3e-3", 0.3), ("fc-adam-lr3e-3", 0.35)):
        for seed in (0, 1):
            for epoch in range(1, 5):
                for batch in range(1, 9):
                    step = (epoch - 1) * 8 + batch
                    loss = 5.0 if epoch == 1 else level + 0.01 * np.sin(step + seed)  # a large first epoch
                    rows.append({"epoch": epoch, "batch": batch, "step": step, "train_loss": loss,
                                 "val_loss": loss if batch % 2 == 0 else np.nan, "val_acc": np.nan,
                                 "label": label, "seed": seed})
    figure = plot_fine_pairs(pd.DataFrame(rows), [("rk-lr3e-3", "fc-adam-lr3e-3")])
    ax = figure.axes[0]
    assert len(ax.lines) == 4 and "(2 seeds)" in ax.get_title()  # two arms x two seeds
    assert {line.get_linestyle() for line in ax.lines} == {"-", "--"}
    low, high = ax.get_ylim()
    assert 0.25 < low < 0.29 and 0.36 < high < 0.4  # the window's points (epochs 3-4), not the first epoch's 5.0
    x = ax.lines[0].get_xdata()
    assert x[0] == 0.25 and x[-1] == 4.0  # epochs since the checkpoint, in fractions of an epoch


def test_the_fine_pairs_plot_shades_each_seeds_own_window_as_its_test_reads_it():
    from node_transfer.analysis.fine import fine_window
    from node_transfer.analysis.plots import plot_fine_pairs

    rows = [{"epoch": epoch, "batch": batch, "step": (epoch - 1) * 4 + batch, "val_loss": 0.3 + 0.01 * batch,
             "label": label, "seed": seed}
            for label in ("rk", "fc-adam") for seed, epochs in ((0, 4), (1, 6))
            for epoch in range(1, epochs + (label == "rk") + 1) for batch in range(1, 5)]
    fine = pd.DataFrame(rows)
    assert fine_window([fine[(fine["label"] == label) & (fine["seed"] == 1)] for label in ("rk", "fc-adam")]) == (3, 6)
    ax = plot_fine_pairs(fine, [("rk", "fc-adam")]).axes[0]
    spans = sorted((patch.get_x(), patch.get_x() + patch.get_width()) for patch in ax.patches)
    assert spans == [(2, 4), (3, 6)]  # seed 0: epochs 3-4 of its shorter run (4); seed 1: epochs 4-6 of 6
