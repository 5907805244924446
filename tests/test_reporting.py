"""The paper's tables and the sweep table and cost plot, from synthetic runs whose numbers are known."""


import numpy as np
import pandas as pd

from node_transfer.analysis.reporting import paper_tables


def test_paper_tables_report_seeds_as_mean_and_std():
    rows = []
    for label, acc in (("baseline", [0.80, 0.82]), ("rk", [0.81, 0.81])):
        for seed, a in enumerate(acc):
            rows.append(dict(label=label, seed=seed, group=label, head="fc" if label == "baseline" else "node",
                             solver="dopri5", adjoint=False, rtol=1e-5, atol=1e-5, optimizer="adam", lr=1e-3,
                             train_acc=a, val_acc=a, test_acc=a, epochs=3, seconds=10.0, seconds_per_epoch=3.3,
                             nfe_forward=20.0, nfe_backward=0.0, val_loss_rise=0.01 * (seed + 1), val_acc_drop=0.0,
                             train_loss_rise=0.0,
                             val_acc_worst_drop=0.0, test_nll=0.5, test_ece=0.02))
    tables = paper_tables(pd.DataFrame(rows))
    table1 = tables["Table I: accuracy"]
    assert table1.loc[0, "test %"] == "81.0 ± 1.4" and table1.loc[1, "test %"] == "81.0 ± 0.0"
    assert table1.loc[0, "paper train/val/test %"] == "98.7/84.5/81.0"
    assert tables["Table III: solver parameters"].loc[0, "solver"] == "–"
    assert tables["Table III: solver parameters"].loc[1, "relative tolerance"] == "1e-05"
    stability = tables["Stability"]
    assert stability.loc[0, "val-loss rise (95% CI)"] == "0.0150 ± 0.0635"  # t(0.975, 1) = 12.7
    assert stability.loc[0, "train-loss rise (95% CI)"] == "0.0000 ± 0.0000"
    assert stability.loc[1, "test ECE, %"] == "2.00 ± 0.00"


def test_sweep_table_and_cost_plot_show_each_configuration():
    from node_transfer.analysis.plots import plot_cost_accuracy
    from node_transfer.analysis.reporting import sweep_table

    rows = [dict(label=label, seed=seed, solver=solver, rtol=1e-5, step_size=step, test_acc=0.9 + 0.01 * seed,
                 val_acc=0.9, nfe_forward=nfe, nfe_backward=0.0, seconds_per_epoch=0.5, val_loss_rise=0.01)
            for label, solver, step, nfe in (("dopri5", "dopri5", np.nan, 20.0), ("rk4-h1", "rk4", 1.0, 4.0))
            for seed in range(2)]
    table = sweep_table(pd.DataFrame(rows)).set_index("configuration")
    assert table.loc["dopri5", "rtol"] == 1e-5 and table.loc["dopri5", "step"] == "adaptive"
    assert table.loc["rk4-h1", "rtol"] == "–" and table.loc["rk4-h1", "step"] == 1.0  # rtol does not act
    assert table.loc["rk4-h1", "test %"] == "90.5 ± 0.7" and table.loc["rk4-h1", "NFE fwd"] == "4.0 ± 0.0"
    fig = plot_cost_accuracy(pd.DataFrame(rows))
    ax = fig.axes[0]
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["dopri5", "rk4-h1"]
    assert ax.get_xscale() == "log" and "NFE" in ax.get_xlabel()


def test_every_suite_names_a_table_kind_and_figures_the_report_draws():
    from node_transfer.analysis.reporting import FIGURES, TABLE_KINDS
    from node_transfer.suites.registry import SUITES, UNREGISTERED, suite_of

    for name, suite in SUITES.items():
        assert suite.tables in TABLE_KINDS, name
        assert set(suite.figures) <= set(FIGURES), name
    assert suite_of("paper").tables == "paper" and "tolerance" in suite_of("tolerance").figures
    assert suite_of("a-pilot-no-longer-registered") is UNREGISTERED  # its directory still gets a report
