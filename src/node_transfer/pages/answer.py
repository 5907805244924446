"""The answer in words: per numbered claim of the paper, what it said, what we measured against the matched
control and how sure we are, and the scope of what was run, all written from a study's tests table.

`answer_facts` is what the intro's first screen glues; `readme_answer` is the README's opening paragraph, the
same answer in short (the README cannot glue: `node-transfer readme` writes it, and a test fails when it differs
from what the committed results give). Sentences are built from the declarations (`claims`) and the table, so a
regime or seeds added later change the numbers and the list, not the page.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..analysis.claims import ANSWER_STUDY, CONFIRMATIONS, STUDIES
from ..analysis.convergence import start_label
from ..analysis.findings import StudyData, declared_study, primary
from ..analysis.paired import MOST_SEEDS_PLANNED, OVERFITS_MORE_SLOWLY
from ..analysis.paper import PAPER, PAPER_CLAIMS
from ..analysis.preregistration import confirmation_status
from ..analysis.statistics import statistic
from ..suites.results import DATASET_NAMES
from .extensions import extensions_brief
from .first_screen import (
    arms_line,
    claim_tests,
    claims_table,
    interval_text,
    labelled_piece,
    paper_comparisons,
    target_reach,
)
from .seeds import cpu_name
from .verdict_grid import verdict_grid

#: How the sentences name a backbone.
BACKBONE_NAMES = {"tf_efficientnet_lite0": "EfficientNet-Lite0", "efficientnet_b0": "EfficientNet-B0"}


def confound_kinds(confound: str) -> str:
    """'more training, another optimizer, another learning rate': what a confounded comparison mixes in."""
    kinds = [kind for key, kind in (("trained further", "more training"), ("starts from", "another start"),
                                    ("optimizer", "another optimizer"), ("learning", "another learning rate"))
             if key in confound]
    return ", ".join(kinds) or "nothing recorded"


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _measured(rows: pd.DataFrame, corrected: bool) -> str:
    """The pieces of one statistic, grouped by regime: 'fine-tune (4 seeds): rk − fc-adam ... (**holds**), ...'."""
    groups = []
    for regime, group in rows.groupby("regime", sort=False):
        seeds = sorted(set(group["n"]))
        count = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"
        groups.append(f"{regime.split(', ')[-1]} ({count} seed{'' if count == '1' else 's'}): " +
                      ", ".join(labelled_piece(row, corrected) for _, row in group.iterrows()))
    return "; ".join(groups)


def _paper_tail(rows: pd.DataFrame) -> str:
    if rows.empty:
        return ""
    return (f" The paper's own comparison mixes in {confound_kinds(' '.join(rows['confound']))}: "
            + ", ".join(f"{row['a']} − {row['b']} {interval_text(row)} ({row['verdict']})"
                        for _, row in rows.iterrows())
            + ".")


def _slower(table: pd.DataFrame, number: int, pairs: set) -> str:
    rows = table[(table["claim"] == number) & (table["verdict"] == OVERFITS_MORE_SLOWLY)]
    text = ""
    for _, row in rows.drop_duplicates(["regime", "a", "b"]).iterrows():
        if (row["regime"], row["a"], row["b"]) in pairs:
            text += (f" By the {row['statistic']}, which also counts steady overfitting, {row['a']} − {row['b']} "
                     f"{interval_text(row)} favours {row['a']}, but {row['note']}: it **{row['verdict']}**.")
    return text


def claim_sentences(table: pd.DataFrame, reach: dict[tuple[str, str], str] | None = None) -> dict[int, str]:
    """Per numbered claim, Markdown: what the paper said, what we measured against the matched control, how sure,
    the paper's own, confounded comparison, and a validation-loss verdict relabelled "overfits more slowly".
    `reach` (`target_reach`) adds the paper's own target to the speed claim."""
    family = int((table["role"] == "primary").sum())
    sentences = {}
    for number, claim in PAPER_CLAIMS.items():
        if number == 0 or not (table["claim"] == number).any():
            continue
        matched, corrected, names, paper_rows = claim_tests(table, number)
        first = statistic(names[0])
        margin = f", equivalence within ±{first.minimum * first.scale:g} {first.unit}" if first.kind == "accuracy" \
            else ""
        sure = (f"95 % intervals{margin}, labels Holm-corrected over {family} primary tests" if corrected else
                f"exploratory: 95 % intervals{margin}, uncorrected")
        text = (f"**{number}. {claim.title}.** The paper: {claim.paper}"
                + (f" ({PAPER['baseline']['test'] * 100:.0f} % for all three models, on CIFAR-10)" if number == 1
                   else "")
                + f". {_capital(first.meaning or first.label)} against the matched control ({sure}): "
                f"{_measured(matched[matched['name'] == names[0]], corrected)}.")
        for name in names[1:]:
            text += f" By the {statistic(name).label}: {_measured(matched[matched['name'] == name], corrected)}."
        text += _paper_tail(paper_rows)
        pairs = {*zip(matched["regime"], matched["a"], matched["b"]),
                 *zip(paper_rows["regime"], paper_rows["a"], paper_rows["b"])}
        text += _slower(table, number, pairs)
        arms = [f"{label} {reach[(regime, label)]}" for regime, label in dict.fromkeys(
            [*zip(matched["regime"], matched["a"]), *zip(matched["regime"], matched["b"])])
            if (regime, label) in (reach or {})]
        if number == 3 and arms:
            text += (f" The paper's own target, the best validation accuracy of the baseline the arms start from, "
                     f"was reached within the budget by {', '.join(arms)} seeds.")
        sentences[number] = text
    return sentences


def scope_sentence(data: StudyData) -> str:
    """Backbone, image size, data, budgets and machines of a study's runs, and what has not been run."""
    parts, cpus, unknown = [], set(), 0
    for regime, (runs, _) in data.items():
        node = runs[runs["label"] == regime.primary()[0].a] if regime.primary() else runs
        compared = set(regime.primary_arms())
        compared |= {start for label in compared if (start := start_label(runs, label))}
        runs = runs[runs["label"].isin(compared)] if compared & set(runs["label"]) else runs
        subset = (node if len(node) else runs)["train_subset"].iloc[0]
        images = f"{int(subset):,}" if pd.notna(subset) else "all"
        started = runs["init_from"] if "init_from" in runs else pd.Series(None, index=runs.index, dtype=object)
        continued = started.notna() & (started.astype(str) != "")
        budget = f"{int(runs.loc[~continued, 'epochs'].max())} epochs"
        if continued.any():
            budget += f", then at most {int(runs.loc[continued, 'epochs'].max())} more from that checkpoint"
        parts.append(f"{regime.title.split(', ')[-1]}: {images} training images, {budget}")
        if "cpu" in runs:
            cpus |= set(runs["cpu"].dropna())
            unknown += int(runs["cpu"].isna().sum())
    first = next(iter(data.values()))[0].iloc[0]
    dataset = DATASET_NAMES.get(first["dataset"], first["dataset"])
    backbone = BACKBONE_NAMES.get(first["backbone"], first["backbone"])
    total = sum(len(runs) for runs, _ in data.values())
    ruled = [regime.title.split(", ")[-1] for regime in data if regime.recorded_seeds_only]
    rule = f"; the {' and '.join(ruled)} tests pair only seeds recorded on one model" if ruled and unknown else ""
    names = ", ".join(sorted(cpu_name(cpu) for cpu in cpus))
    unrecorded = f"; {unknown} of the {total} runs predate CPU records{rule}" if unknown else ""
    machines = f" ({names}{unrecorded})" if cpus else ""
    return (f"Scope: {backbone} with ImageNet weights (the paper used EfficientNet-B0), at {first['image_size']} px on "
            f"{dataset} ({'; '.join(parts)}), trained on CPUs{machines}; the paper's own "
            "scale, CIFAR-10 with EfficientNet-B0 on a GPU, has not been run.")


def bottom_line(table: pd.DataFrame) -> str:
    """The answer in one sentence: the primary tests by their Holm label, naming those that decided something and
    counting those that rest on one paired seed so far."""
    rows = primary(table)
    decided = rows[rows["verdict_holm"] != "undecided"]
    named = "; ".join(f"**{label}**: {_tests_by_statistic(group)}" for label, group in decided.groupby("verdict_holm"))
    one_seed = int(((rows["verdict_holm"] == "undecided") & (rows["n"] < 2)).sum())
    undecided = int((rows["verdict_holm"] == "undecided").sum())
    waiting = f", {one_seed} of them on one paired seed so far" if one_seed else ""
    # the paper's claims 2-4 say the NODE is better, so "holds" there is a gain; claim 1 says "the same"
    better = rows[((rows["claim"] != 1) & (rows["verdict_holm"] == "holds"))
                  | ((rows["claim"] == 1) & rows["verdict_holm"].str.startswith("higher"))]
    gains = (f"{len(better)} primary test{'s' if len(better) != 1 else ''} found the NODE block better than its "
             f"matched control" if len(better) else "No primary test found the NODE block better than its matched "
             "control")
    return (f"**In short:** {gains}. Of the {len(rows)} primary tests, {len(decided)} decided something "
            f"({named or 'none'}) and {undecided} {'is' if undecided == 1 else 'are'} undecided{waiting}.")


def _tests_by_statistic(rows: pd.DataFrame) -> str:
    """Tests named by statistic, then pair, then regime: "val-loss fluctuation of adjoint − fc-sgd (fine-tune,
    overfitting) and node − mlp (head-only)"."""
    parts = []
    for name, by_statistic in rows.groupby("statistic", sort=False):
        pairs = [f"{a} − {b} ({', '.join(pair['regime'].str.split(', ').str[-1])})"
                 for (a, b), pair in by_statistic.groupby(["a", "b"], sort=False)]
        listed = pairs[0] if len(pairs) == 1 else f"{', '.join(pairs[:-1])} and {pairs[-1]}"
        parts.append(f"{name} of {listed}")
    return "; ".join(parts)


def seeds_outlook(table: pd.DataFrame) -> str:
    """How many paired seeds would settle the undecided primary tests, were their measured means and spreads to
    stay (`verdicts.planned_seeds`), against the seeds they have."""
    rows = primary(table)
    rows = rows[(rows["verdict_holm"] == "undecided") & rows["seeds_low"].notna()]
    if rows.empty:
        return ""
    finite = rows[rows["seeds_high"] < float("inf")]
    beyond = len(rows) - len(finite)
    span = (f"from {int(finite['seeds_low'].min())} to {int(finite['seeds_high'].max())} paired seeds each"
            if len(finite) else f"more than {MOST_SEEDS_PLANNED} paired seeds each")
    tail = f" ({beyond} more than {MOST_SEEDS_PLANNED})" if beyond and len(finite) else ""
    return (f"**How many seeds would settle them.** If each kept the mean difference and spread measured so far, "
            f"the {len(rows)} undecided primary tests would need {span}{tail}, against the {int(rows['n'].min())} "
            f"to {int(rows['n'].max())} they have (the range runs from Holm's last step to its first). This is a "
            "planning estimate, not a result: new seeds move both the mean and the spread. The reproducing chapter "
            "gives each test's.")


def confirmation_brief(results: str | Path, study: str = ANSWER_STUDY) -> str:
    """The pre-registered confirmations of the answer's study in one paragraph each: what was declared and when, and
    its own family's labels (Holm over its tests alone), kept apart from the exploratory seeds; the reproducing
    chapter gives the full account (`preregistration.confirmation_markdown`)."""
    regimes = {regime.key: regime for regime in STUDIES[study].regimes}
    parts = []
    for confirmation in (c for c in CONFIRMATIONS.values() if c.regime in regimes):
        status = confirmation_status(results, confirmation)
        table = status["table"]
        tests = table[table["role"] == "primary"] if len(table) else table
        when = f"{status['declared']:%Y-%m-%d}" if status["declared"] else "a date git cannot show"
        seeds = f"seeds {confirmation.seeds[0]}-{confirmation.seeds[-1]}"
        text = (f"**The pre-registered confirmation** ({regimes[confirmation.regime].title.split(', ', 1)[-1]}, "
                f"{seeds}, judged by rules committed in `{status['commit']}` on {when} before its runs; "
                f"{status['finished']} of {status['planned']} runs in)")
        if len(tests) and (tests["n"] >= 2).any():
            decided = tests[tests["verdict_holm"] != "undecided"]
            text += (f": {len(decided)} of its {len(tests)} tests decided something. "
                     + "; ".join(f"{statistic(row['name']).label}: {labelled_piece(row, corrected=True)}"
                                 for _, row in tests.iterrows()) + ".")
        else:
            text += ": fewer than two paired seeds yet."
        parts.append(text)
    return "\n\n".join(parts)


def answer_facts(results: str | Path) -> dict[str, str | int]:
    """What the intro states, by the name it glues it under: the bottom line, the claims table and the arms for the
    first screen, the claims x regimes grid (`verdict_grid`), per numbered claim the full account (`detail_1`...),
    the claims as a numbered list (`claims_list`), the scope, the paper's own comparisons and the primary tests by
    label."""
    data, table = declared_study(str(results))
    reach = target_reach(data)
    details = claim_sentences(table, reach)
    facts: dict[str, str | int] = {f"detail_{n}": text for n, text in details.items()}
    facts["claims_list"] = "\n".join(f"{n}. **{c.title}**: {c.paper}." for n, c in PAPER_CLAIMS.items() if n)
    labels = primary(table)["verdict_holm"]
    facts["bottom_line"] = bottom_line(table)
    facts["claims_table"] = claims_table(table)
    facts["arms"] = arms_line(data, table)
    facts["paper_comparisons"] = paper_comparisons(reach, table)
    facts["seeds_outlook"] = seeds_outlook(table)
    facts["confirmation"] = confirmation_brief(results)
    facts["verdict_grid"] = verdict_grid(results).to_markdown(index=False)
    facts.update(scope=scope_sentence(data), primary_tests=len(labels), primary_hold=int((labels == "holds").sum()),
                 primary_fail=int((labels == "does not hold").sum()),
                 primary_undecided=int((labels == "undecided").sum()),
                 primary_differ=int(labels.str.contains("not shown").sum()), regimes=len(data),
                 tests_total=len(table))
    return facts


def readme_answer(results: str | Path) -> str:
    """The README's answer, as the intro's first screen gives it: the bottom line, the claims table, the arms, the
    confirmation, the studies where a NODE could help (the intro's grid has them), the paper's own comparisons and
    the scope, from the same facts."""
    facts = answer_facts(results)
    return "\n\n".join([
        f"{facts['bottom_line']} Each claim was tested against its *matched control*: the same training from the "
        "same checkpoint, without the ODE.", str(facts["claims_table"]),
        str(facts["arms"]).replace("](glossary.md)", "](book/glossary.md)"), str(facts["confirmation"]),
        extensions_brief(results), str(facts["paper_comparisons"]),
        f"{facts['scope']} The book's introduction says what each label means."])


def page_facts(results: str | Path) -> dict[str, str | int]:
    """Every name the intro glues from this module (`pages.PAGES`)."""
    return answer_facts(results)
