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
