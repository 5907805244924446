"""The committed answer: what the intro, the reproducing and beyond chapters and the READMEs state comes from the
committed runs through the package's facts functions, and the committed reports agree with it."""

import re

import jupytext
import pandas as pd
import pytest

from node_transfer.analysis.claims import STUDIES
from node_transfer.analysis.findings import (
    SCENARIOS,
    load_study,
    primary,
    sensitivity_table,
    study_table,
)
from node_transfer.analysis.verdicts import seeds_on_one_cpu_model
from node_transfer.app.readmes import write_readmes
from node_transfer.pages.answer import answer_facts, claim_sentences, readme_answer
from node_transfer.pages.chapter_facts import claims_summary, reproducing_facts
from node_transfer.pages.seeds import (
    adjoint_seed_plan,
    cpu_name,
    seed_spans,
    seed_table,
    seeds_by_configuration,
)
from node_transfer.suites.notebooks import book_dir, results_dir


@pytest.fixture(scope="module")
def fashion():
    data = load_study(results_dir())
    return data, study_table(data)


def glued_names(page: str) -> set[str]:
    text = (book_dir() / page).read_text()
    return set(re.findall(r"\{glue:(?:text|md)\}`(\w+)", text))


def test_no_primary_test_compares_arms_that_differ_in_anything_but_the_head(fashion):
    for key in ("fashion-mnist", "digits"):
        data, table = fashion if key == "fashion-mnist" else (load_study(results_dir(), key), None)
        table = study_table(data) if table is None else table
        declared = sum(len(regime.primary()) for regime in data)  # the regimes with runs
        assert len(primary(table)) == declared >= 6, key  # declared primary tests all present, none demoted
        assert (primary(table)["confound"] == "").all(), key
        paper = table[table["role"] == "paper"]
        assert (paper["confound"] != "").all(), key  # the paper's own comparisons are labelled confounded
        testable = primary(table)[primary(table)["n"] >= 2]  # one paired seed gives no p-value
        assert testable["p_holm"].between(0, 1).all() and (table.loc[table["role"] != "primary",
                                                                     "verdict_holm"] == "").all()


def test_the_committed_reports_carry_the_verdicts_the_package_computes(fashion):
    data, table = fashion
    for regime in data:
        committed = pd.read_csv(results_dir() / regime.directory / "report" / "claims.csv", keep_default_na=False)
        assert {"role", "verdict", "verdict_holm", "p_holm", "minimum_effect", "effect_size", "confound"} <= set(
            committed.columns)
        assert committed["role"].str.match("primary|exploratory").all()
        mine = table[table["regime"] == regime.title]
        senses = committed[committed["name"].isin(["test_acc_spread", "divergence_rate"])]
        assert len(senses) == 2 * len({(t.a, t.b) for t in regime.primary()})  # spread and divergence per pair
        committed = committed.drop(senses.index)
        assert list(committed["test"]) == list(mine["test"])
        assert list(committed["verdict"]) == list(mine["verdict"])
        assert list(committed["verdict_holm"]) == list(mine["verdict_holm"])
        planned = pd.to_numeric(committed["seeds_low"].replace("", None)).fillna(-1)  # the seeds-to-decide plan
        assert list(planned) == list(mine["seeds_low"].fillna(-1))
        stability = committed[committed["name"] == "val_loss_fluctuation"]
        assert pd.to_numeric(stability["difference_pct"]).notna().all() and "correlation" in committed
        assert "val-loss fluctuation" in set(committed["statistic"])
    stability = pd.read_csv(results_dir() / "paper-fmnist" / "report" / "stability.csv")
    assert "val-loss fluctuation (95% CI)" in stability.columns


def test_the_readmes_say_what_the_committed_results_give():
    assert write_readmes(book_dir().parent, check=True) == [], "run `node-transfer readme` and commit the READMEs"
    answer = readme_answer(results_dir())
    readme = (book_dir().parent / "README.md").read_text()
    assert answer in readme and readme.index(answer) < readme.index("make demo")  # the answer opens the README
    bottom = answer.split("\n\n")[0]
    assert bottom.startswith("**In short:**") and len(re.findall(r"[.!?](?:\s|$)", bottom)) <= 3  # short
    assert "\n| 1. Same accuracy |" in answer and "**The arms** ([glossary](book/glossary.md))" in answer
    # the studies where a NODE could help, each by name, with its runs counted (interim while some are missing)
    from node_transfer.analysis.claims import STUDIES
    from node_transfer.pages.extensions import EXTENSIONS
    from node_transfer.pages.first_screen import regime_short

    extensions = answer.split("**Where a NODE head has more room to help**", 1)[1].split("\n\n", 1)[0]
    for key in EXTENSIONS:
        name = regime_short(STUDIES[key].regimes[0].title)
        assert re.search(re.escape(name) + r"(: no runs yet| \((all|interim,) \d+ of \d+ runs in)", extensions), name


def test_the_readme_lists_the_suites_that_suite_list_prints_and_results_readme_regenerates_each(capsys):
    from node_transfer.app.cli import main
    from node_transfer.app.readmes import SUITE_LIST, section_text
    from node_transfer.core.suitedir import SUITE_META

    assert main(["suite", "--list"]) == 0
    listed = re.findall(r"^([a-z0-9-]+): ", capsys.readouterr().out, flags=re.M)
    readme = section_text((book_dir().parent / "README.md").read_text(), SUITE_LIST)
    assert re.findall(r"^\| `([a-z0-9-]+)` ", readme, flags=re.M) == listed and "overfit" in listed
    commands = (results_dir() / "README.md").read_text()
    for suite_dir in sorted(path.parent for path in results_dir().glob(f"*/{SUITE_META}")):
        assert f"--out results/{suite_dir.name} --resume" in commands
    assert "2026-12-0" not in commands.split("## Compute plans")[0]  # the dated log lives in LOG.md


def test_the_intro_states_one_sentence_per_claim_with_its_numbers(fashion):
    facts = answer_facts(results_dir())
    assert glued_names("intro.md") <= set(facts)
    sentences = claim_sentences(fashion[1])
    assert sorted(sentences) == [1, 2, 3, 4]
    for number, sentence in sentences.items():
        assert sentence.startswith(f"**{number}. ") and "The paper:" in sentence and "**" in sentence[8:]
        # a difference and its interval (none from one paired seed, and the sentence says so)
        assert re.search(r"[+-]\d+\.\d+ (\[[+-]\d+\.\d+, [+-]\d+\.\d+\]|(\w+ )?\(one seed, no interval\))", sentence)
    claim_3_primary = (primary(fashion[1])["claim"] == 3).any()  # the overfitting regime's convergence test
    assert "Holm" in sentences[1] and ("exploratory" in sentences[3]) != claim_3_primary
    assert "overfits more slowly" in sentences[2]  # the head-only NODE's lower validation-loss rise, relabelled
    assert "CIFAR-10" in facts["scope"] and "has not been run" in facts["scope"]
    line = facts["bottom_line"]  # the answer in one sentence, first: primary tests counted by their Holm label
    assert line.startswith("**In short:**") and f"Of the {facts['primary_tests']} primary tests" in line
    assert f"{facts['primary_undecided']} are undecided" in line
    outlook = re.search(r"the (\d+) undecided primary tests would need from (\d+) to (\d+) paired seeds each",
                        facts["seeds_outlook"])  # a plan for the next runs, from the measured spreads
    plannable = primary(fashion[1]).query("verdict_holm == 'undecided' and n >= 2")
    assert outlook and int(outlook[1]) == len(plannable) and int(outlook[2]) <= int(outlook[3])
    assert int(outlook[2]) == plannable["seeds_low"].min()
    assert "planning estimate, not a result" in facts["seeds_outlook"]
    rows = facts["claims_table"].splitlines()  # the first screen's table: one row per claim after the header
    assert rows[0].startswith("| claim | the paper said | we found against the matched control") and len(rows) == 6
    for number, row in zip(sentences, rows[2:]):
        assert row.startswith(f"| {number}. ") and re.search(r"\*\*(holds|does not hold|undecided|[a-z]+, [a-z ]+ "
                                                             r"not shown)\*\*", row)
        assert re.search(r"[+-]\d+(\.\d+)? (%|points)? ?\[", row)  # a difference with its interval
    assert re.search(r"\(% of the control's\): rk − fc-adam, fine-tune: [+-]\d+ % \[", rows[3])  # stability in %
    assert "before Holm's correction" in rows[2]  # a label Holm changed says both
    assert all(f"*{arm}*:" in facts["arms"] for arm in ("rk", "fc-adam", "adjoint", "fc-sgd", "rk-imagenet"))
    assert "93 epochs" not in facts["scope"] and "head-only: 20,000 training images, 30 epochs" in facts["scope"]


def test_the_chapters_glue_only_what_their_facts_functions_return(fashion):
    from node_transfer.pages.sweeps import beyond_facts

    data, table = fashion
    facts = reproducing_facts(data, table, results_dir())
    page_cells = {"flipping", "confirmation", "solver_swap"}  # glued by the page's own cells, each one call
    assert glued_names("reproducing.md") - page_cells <= set(facts)
    assert glued_names("beyond.md") <= set(beyond_facts(results_dir())[0])
    assert facts["hd_node_rises_min"] >= 1  # the head-only NODE's training loss does not keep falling


@pytest.mark.parametrize("page", ["reproducing.md", "beyond.md", "intro.md"])
def test_pages_load_call_and_show_in_short_cells(page):
    notebook = jupytext.read(book_dir() / page)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert len(cell.source.splitlines()) <= 12, f"{page}: a code cell of {len(cell.source.splitlines())} lines"


def test_the_reproducing_chapter_puts_the_claims_and_real_data_before_the_digits():
    text = (book_dir() / "reproducing.md").read_text()
    headings = re.findall(r"^## (.+)$", text, flags=re.M)
    assert headings[0].startswith("The claims")
    assert headings.index("Fashion-MNIST, fine-tune") < headings.index("Fashion-MNIST, head-only") < \
        headings.index("Smoke scale: the digits") == len(headings) - 1
    assert "suite_progress" not in text and "seeds planned" not in text  # progress lives in results/README.md


def test_sensitivity_flags_what_flips_and_the_cpu_filter_keeps_one_model_per_seed(fashion):
    data, _ = fashion
    finetune = next(runs for regime, (runs, _) in data.items() if regime.suite == "paper")
    seeds = seeds_on_one_cpu_model(finetune)
    assert seeds and finetune.loc[finetune["seed"].isin(seeds), "cpu"].notna().all()
    by_seed = finetune.groupby("seed")["cpu"]
    assert seeds == {seed for seed, cpus in by_seed if cpus.notna().all() and cpus.nunique() == 1}
    mixed = pd.DataFrame({"seed": [0, 0, 1, 1, 2, 2], "cpu": ["A", "A", "B", "B", "A", None]})
    assert seeds_on_one_cpu_model(mixed) == {0, 1}  # seeds on different models both count; an unknown run does not
    table = sensitivity_table(data, SCENARIOS[:2])
    assert list(table.columns) == ["as declared", "other statistic", "flips under"]
    for test, row in table.iterrows():
        assert (row["flips under"] == "none") == (row["as declared"] == row["other statistic"]), test


def test_claims_summary_has_one_row_per_claim(fashion):
    summary = claims_summary(fashion[1])
    assert list(summary["claim"].str[:2]) == ["1.", "2.", "3.", "4.", "0."]
    assert summary.loc[0, "reading"].endswith("(primary, Holm-corrected)")
    assert all(regime.primary() for study in STUDIES.values() for regime in study.regimes)


def test_the_readme_command_checks_and_writes(tmp_path, monkeypatch, capsys):
    from node_transfer.app.cli import main

    assert main(["readme", "--check"]) == 0  # the committed READMEs are up to date
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- answer: written by `node-transfer readme` from the committed results; do not edit "
                      "-->\nold\n<!-- /answer -->\n")
    from node_transfer.app import readmes

    monkeypatch.setattr(readmes, "sections", lambda root: {readme: {"answer": "new"}})
    assert readmes.write_readmes(tmp_path, check=True) == [f"{readme}: answer"] and "old" in readme.read_text()
    assert readmes.write_readmes(tmp_path) == [f"{readme}: answer"] and "\nnew\n" in readme.read_text()
    readme.write_text("# no markers\n")
    with pytest.raises(ValueError, match="no answer section"):
        readmes.write_readmes(tmp_path)


def test_a_difference_from_one_paired_seed_is_shown_without_an_interval():
    from node_transfer.pages.first_screen import interval_text as _interval

    row = {"name": "test_acc", "unit": "points", "difference": 0.01, "ci_low": float("nan"),
           "ci_high": float("nan"), "n": 1}
    assert _interval(pd.Series(row)) == "+0.01 points (one seed, no interval)"
    row.update(n=3, ci_low=-0.2, ci_high=0.25)
    assert _interval(pd.Series(row)) == "+0.01 [-0.20, +0.25] points"


def test_missing_seeds_read_as_spans():
    assert seed_spans([12, 1, 2, 8, 9, 10, 11]) == "seeds 1, 2, 8-12"
    assert seed_spans([3]) == "seed 3" and seed_spans([0, 1, 2, 4]) == "seeds 0-2, 4"


def test_the_bottom_line_names_decided_tests_by_label_then_statistic_then_pair():
    from node_transfer.pages.answer import bottom_line

    def row(a, b, regime, statistic, label, claim=2):
        return {"role": "primary", "a": a, "b": b, "regime": f"Fashion-MNIST, {regime}", "statistic": statistic,
                "verdict_holm": label, "claim": claim, "n": 5}
    table = pd.DataFrame([row("adjoint", "fc-sgd", "fine-tune", "fluctuation", "does not hold"),
                          row("adjoint", "fc-sgd", "overfitting", "fluctuation", "does not hold"),
                          row("node", "mlp", "head-only", "fluctuation", "does not hold"),
                          row("rk", "fc-adam", "fine-tune", "fluctuation", "does not hold"),
                          row("rk", "fc-adam", "fine-tune", "accuracy", "holds", claim=1),
                          row("rk", "fc-adam", "overfitting", "accuracy", "undecided", claim=1)])
    line = bottom_line(table)
    assert ("5 decided something (**does not hold**: fluctuation of adjoint − fc-sgd (fine-tune, overfitting), "
            "node − mlp (head-only) and rk − fc-adam (fine-tune); **holds**: accuracy of rk − fc-adam (fine-tune)) "
            "and 1 is undecided") in line
    assert line.startswith("**In short:** No primary test found the NODE block better")


def test_configurations_with_the_same_recorded_seeds_are_named_together():
    runs = pd.DataFrame({"label": ["baseline"] * 4 + ["rk"] * 4 + ["cross"] * 2,
                         "seed": [0, 1, 2, 3, 0, 1, 2, 3, 1, 2]})
    assert seeds_by_configuration(runs, {1, 2, 3}) == "baseline, rk: seeds 1-3; cross: seeds 1, 2"
    assert seeds_by_configuration(runs, {5}) == "none"


def test_the_seed_table_shows_seed_spans_and_cpu_models_without_trademark_marks(fashion):
    data = fashion[0]
    table = seed_table(data)
    for (runs, _), (_, rows) in zip(data.values(), table.groupby("regime", sort=False)):
        for label, text in zip(rows["configuration"], rows["seeds"]):  # "0-2, 4" names seeds 0, 1, 2 and 4
            named = [range(int(a), int(b or a) + 1) for a, b in re.findall(r"(\d+)(?:-(\d+))?", text)]
            assert sorted(s for span in named for s in span) == sorted(runs.loc[runs["label"] == label, "seed"])
    assert not table["CPU model (runs)"].str.contains(r"\(R\)|Processor").any()
    assert cpu_name("Intel(R) Xeon(R) Processor") == "Intel Xeon" and cpu_name("AMD EPYC") == "AMD EPYC"
    assert cpu_name("Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz") == "Intel Core i7-8700 @ 3.20GHz"


def test_the_adjoint_seed_plan_says_whether_the_test_decided_or_reached_its_cap():
    regime = STUDIES["fashion-mnist"].regimes[0]
    row = {"regime": regime.title, "role": "primary", "a": "adjoint", "b": "fc-sgd", "name": "test_acc"}
    table = pd.DataFrame([row | {"verdict_holm": "undecided", "n": 8}])
    assert adjoint_seed_plan(table, regime) == "undecided at 8 paired seeds, short of the cap of 10"
    assert adjoint_seed_plan(table.assign(n=10), regime) == "still undecided at 10 paired seeds, the cap"
    assert adjoint_seed_plan(table.assign(verdict_holm="holds"), regime) == "decided (holds) at 8 paired seeds"
