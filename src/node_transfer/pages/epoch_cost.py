"""What an epoch of each suite arm costs, measured in one session: the pairs priced, their ratios, the facts.

The suites' own seconds per epoch come from runs made in several sessions, on CPU models that were not equally
fast and under different loads (`results/LOG.md`), so a ratio of two of them mixes the head's cost with the
machine's. `bench/arm_cost.py` times a slice of a training epoch and of a validation pass of every arm of a
suite alternately in one process and writes one row per arm and round (`arm_cost-rounds.csv`). This module
scales each row to a whole epoch of the suite (`epoch_seconds`) and divides each NODE arm by the arm it is priced
against within every round (`pair_ratios`): the ratios the performance and reproducing chapters state.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

#: (arm, the arm it is priced against): each NODE arm over its matched control (the same checkpoint, optimizer,
#: schedule and epochs without the ODE; `claims.FINETUNE_TESTS`), the cross arms and the adjoint at the library's
#: tolerances over the FC control of their recipe, and the NODE arms over the baseline (the paper's comparison).
#: A pair is priced in every suite that has both arms.
COST_PAIRS: tuple[tuple[str, str], ...] = (
    ("rk", "fc-adam"), ("adjoint", "fc-sgd"), ("rk", "mlp"), ("rk", "euler"),
    ("node-sgd-backprop", "fc-sgd"), ("node-adam-adjoint", "fc-adam"), ("adjoint-libtol", "fc-sgd"),
    ("rk", "baseline"), ("adjoint", "baseline"), ("rk-imagenet", "baseline"),
)
#: The benchmark's name: bench/arm_cost.py writes results/bench/arm_cost.csv, arm_cost-ratios.csv, arm_cost.json.
BENCH = "arm_cost"
#: The clocks a round records: process CPU time (one thread: the time spent computing) and wall time (which on a
#: shared machine also holds the time spent waiting for a core). Ratios are stated on the first.
CLOCKS = {"cpu": "cpu_s", "wall": "s"}
ROUND_COLUMNS = ("suite", "arm", "round", "train_images", "val_images", "epoch_train_images", "epoch_val_images",
                 *(f"{stage}_{column}" for stage in ("train", "val") for column in CLOCKS.values()))


def epoch_seconds(rounds: pd.DataFrame) -> pd.DataFrame:
    """`rounds` with `epoch_cpu_s` and `epoch_s`: a whole epoch of the suite (its training images, then its validation
    images) at the rate each slice ran in that round, by each clock."""
    missing = [column for column in ROUND_COLUMNS if column not in rounds]
    if missing:
        raise ValueError(f"a rounds table needs the columns {list(ROUND_COLUMNS)}; missing: {missing}")
    out = rounds.copy()
    for column in CLOCKS.values():
        out[f"epoch_{column}"] = (out[f"train_{column}"] / out["train_images"] * out["epoch_train_images"]
                                  + out[f"val_{column}"] / out["val_images"] * out["epoch_val_images"])
    return out


def pair_ratios(rounds: pd.DataFrame, pairs: tuple[tuple[str, str], ...] = COST_PAIRS) -> pd.DataFrame:
    """One row per suite and pair present: the arm's epoch seconds over the other's, round by round (the two were
    timed in the same round), as the median and the lowest and highest round, by each clock."""
    timed = epoch_seconds(rounds)
    rows = []
    for suite, own in timed.groupby("suite", sort=False):
        by_round = {clock: own.pivot_table(index="round", columns="arm", values=f"epoch_{column}")
                    for clock, column in CLOCKS.items()}
        for arm, control in pairs:
            if arm not in set(own["arm"]) or control not in set(own["arm"]):
                continue
            row: dict[str, Any] = {"suite": suite, "arm": arm, "control": control}
            for clock, seconds in by_round.items():
                ratio = (seconds[arm] / seconds[control]).dropna()
                row.update({f"ratio_{clock}": float(ratio.median()), f"low_{clock}": float(ratio.min()),
                            f"high_{clock}": float(ratio.max()), "rounds": int(len(ratio))})
            rows.append(row)
    return pd.DataFrame(rows)


def round_table(rounds: pd.DataFrame, suite: str) -> pd.DataFrame:
    """One row per arm of `suite`, one column per timed round: the epoch's CPU seconds and the NFE per training
    batch, forward/backward ('61.6 s (26/0)'), to show how a ratio's rounds moved and why."""
    own = epoch_seconds(rounds[rounds["suite"] == suite])
    cells = own.assign(cell=[f"{r.epoch_cpu_s:.1f} s ({r.nfe_forward:.0f}/{r.nfe_backward:.0f})"
                             for r in own.itertuples()])
    table = cells.pivot(index="arm", columns="round", values="cell").reindex(list(dict.fromkeys(own["arm"])))
    return table.rename(columns=lambda number: f"round {number + 1}").rename_axis(columns=None)


def ratio_facts(ratios: pd.DataFrame, suite: str, prefix: str) -> dict[str, float]:
    """`{prefix}_{arm}_{control}` (the median CPU-time ratio), with `_low` and `_high` (the extreme rounds), for
    every pair priced in `suite`; dashes become underscores: `cost_rk_fc_adam`, `cost_rk_fc_adam_low`, ..."""
    facts: dict[str, float] = {}
    for row in ratios[ratios["suite"] == suite].itertuples():
        key = f"{prefix}_{row.arm}_{row.control}".replace("-", "_")
        facts.update({key: row.ratio_cpu, f"{key}_low": row.low_cpu, f"{key}_high": row.high_cpu})
    return facts


def load_arm_cost(directory: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """The per-arm table, the ratios and the summary that `bench/arm_cost.py` wrote into `directory`."""
    directory = Path(directory)
    paths = [directory / name for name in (f"{BENCH}.csv", f"{BENCH}-ratios.csv", f"{BENCH}.json")]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"no one-session cost results ({', '.join(missing)}): run bench/{BENCH}.py")
    return pd.read_csv(paths[0]), pd.read_csv(paths[1]), json.loads(paths[2].read_text())


def machine_line(summary: dict[str, Any]) -> str:
    """'AMD EPYC, torch CPU capability AVX512, 1 thread, 2026-12-04': where and when the benchmark ran."""
    machine = summary["machine"]
    threads = machine["torch_threads"]
    cpu, capability = machine.get("cpu", "CPU model not recorded"), machine.get("cpu_capability", "not recorded")
    return (f"{cpu}, torch CPU capability {capability}, {threads} thread{'s' if threads != 1 else ''}, "
            f"{summary['date'][:10]}")


def arm_cost_facts(table: pd.DataFrame, ratios: pd.DataFrame, rounds: pd.DataFrame,
                   summary: dict[str, Any]) -> dict[str, Any]:
    """What the performance chapter states of the one-session benchmark, by the name it glues it under (`ac_`)."""
    facts: dict[str, Any] = {**ratio_facts(ratios, "paper", "ac"), **ratio_facts(ratios, "overfit", "ac_overfit")}
    paper = table[table["suite"] == "paper"].set_index("arm")
    adjoint = rounds[(rounds["suite"] == "paper") & (rounds["arm"] == "adjoint")].sort_values("round")
    facts["ac_adjoint_nfe_backward_first"] = float(adjoint["nfe_backward"].iloc[0])  # SGD at lr 0.1 moves the
    facts["ac_adjoint_nfe_backward_last"] = float(adjoint["nfe_backward"].iloc[-1])  # dynamics within the rounds
    for arm in ("baseline", "fc-adam", "rk", "adjoint", "adjoint-libtol"):
        key = arm.replace("-", "_")
        facts[f"ac_{key}_batch_s"] = float(paper.loc[arm, "train_cpu_s_per_batch"])
        facts[f"ac_{key}_nfe_forward"] = float(paper.loc[arm, "nfe_forward"])
        facts[f"ac_{key}_nfe_backward"] = float(paper.loc[arm, "nfe_backward"])
    headline = ratios[(ratios["suite"] == "paper") & (ratios["arm"] == "rk") & (ratios["control"] == "fc-adam")]
    setting = summary["setting"]
    facts.update(ac_target=summary["target"], ac_verdict="meets" if summary["pass"] else "misses",
                 ac_worst=summary["worst_round_deviation"] * 100,
                 ac_rk_fc_adam_wall=float(headline["ratio_wall"].iloc[0]),
                 ac_batches=setting["batches"], ac_val_batches=setting["val_batches"], ac_reps=setting["reps"],
                 ac_machine=machine_line(summary), ac_arms=len(table),
                 ac_paper_epoch_images=f"{int(paper['epoch_train_images'].iloc[0]):,}")
    return facts


def chapter_cost_facts(directory: str | Path) -> dict[str, Any]:
    """What the results chapter states of a NODE epoch's cost (`cost_`, `cost_overfit_`), from the benchmark's
    files in `directory`: measured in one session, unlike the suites' own seconds."""
    _, ratios, summary = load_arm_cost(directory)
    return {**ratio_facts(ratios, "paper", "cost"), **ratio_facts(ratios, "overfit", "cost_overfit"),
            "cost_machine": machine_line(summary)}
