"""The one-session cost of the suite arms (`node_transfer.pages.epoch_cost`): epochs scaled from slices, ratios taken
round by round, the facts the chapters glue."""

import json

import pandas as pd
import pytest

from node_transfer.pages.epoch_cost import (
    chapter_cost_facts,
    epoch_seconds,
    load_arm_cost,
    pair_ratios,
    ratio_facts,
    round_table,
)


def rounds_table() -> pd.DataFrame:
    """Two suites, three rounds: rk's slice takes 1.5x fc-adam's CPU time in training and 2x in validation, except
    in round 2, where both arms ran slower in wall time only (a busy machine)."""
    rows = []
    for suite, epoch_train in (("paper", 20000), ("overfit", 5000)):
        for number in range(3):
            for arm, train, val in (("fc-adam", 2.0, 0.5), ("rk", 3.0, 1.0), ("baseline", 2.0 + number, 0.5)):
                wall = 2.0 if number == 2 else 1.0
                rows.append({"suite": suite, "arm": arm, "round": number, "train_images": 1000, "val_images": 500,
                             "epoch_train_images": epoch_train, "epoch_val_images": 5000, "train_cpu_s": train,
                             "val_cpu_s": val, "train_s": train * wall, "val_s": val * wall,
                             "nfe_forward": 26.0 if arm == "rk" else 0.0, "nfe_backward": 0.0})
    return pd.DataFrame(rows)


def test_an_epoch_is_its_training_images_then_its_validation_images_at_the_rate_of_the_slices():
    timed = epoch_seconds(rounds_table()).set_index(["suite", "arm", "round"])
    assert timed.loc[("paper", "rk", 0), "epoch_cpu_s"] == pytest.approx(3.0 * 20 + 1.0 * 10)
    assert timed.loc[("overfit", "fc-adam", 1), "epoch_cpu_s"] == pytest.approx(2.0 * 5 + 0.5 * 10)
    assert timed.loc[("paper", "rk", 2), "epoch_s"] == pytest.approx(2 * 70)


def test_ratios_are_taken_within_each_round_and_summarised_by_median_and_extremes():
    ratios = pair_ratios(rounds_table()).set_index(["suite", "arm", "control"])
    assert list(ratios.index) == [("paper", "rk", "fc-adam"), ("paper", "rk", "baseline"),
                                  ("overfit", "rk", "fc-adam"), ("overfit", "rk", "baseline")]  # pairs present only
    paper = ratios.loc[("paper", "rk", "fc-adam")]
    assert paper["ratio_cpu"] == pytest.approx(70 / 45) and paper["low_cpu"] == paper["high_cpu"] == paper["ratio_cpu"]
    assert paper["ratio_wall"] == pytest.approx(70 / 45)  # a slow round slows both arms: the ratio stays
    assert ratios.loc[("overfit", "rk", "fc-adam"), "ratio_cpu"] == pytest.approx(25 / 15)
    baseline = ratios.loc[("paper", "rk", "baseline")]  # the baseline's epochs: 45, 65 and 85 s of CPU
    assert (baseline["ratio_cpu"], baseline["low_cpu"], baseline["high_cpu"]) == pytest.approx((70 / 65, 70 / 85,
                                                                                              70 / 45))
    assert baseline["rounds"] == 3


def test_the_round_table_shows_each_arms_epochs_in_the_order_timed():
    table = round_table(rounds_table(), "overfit")
    assert list(table.index) == ["fc-adam", "rk", "baseline"] and list(table.columns) == ["round 1", "round 2",
                                                                                          "round 3"]
    assert table.loc["rk", "round 2"] == "25.0 s (26/0)" and table.loc["baseline", "round 3"] == "25.0 s (0/0)"


def test_facts_are_named_by_suite_arm_and_control():
    facts = ratio_facts(pair_ratios(rounds_table()), "paper", "cost")
    assert set(facts) == {f"cost_rk_{control}{end}" for control in ("fc_adam", "baseline") for end in ("", "_low",
                                                                                                      "_high")}
    assert facts["cost_rk_fc_adam"] == pytest.approx(70 / 45)


def test_missing_columns_and_missing_results_are_named(tmp_path):
    with pytest.raises(ValueError, match="val_cpu_s"):
        epoch_seconds(rounds_table().drop(columns="val_cpu_s"))
    with pytest.raises(FileNotFoundError, match="bench/arm_cost.py"):
        load_arm_cost(tmp_path)


def test_the_chapter_reads_the_files_the_benchmark_writes(tmp_path):
    ratios = pair_ratios(rounds_table())
    ratios.to_csv(tmp_path / "arm_cost-ratios.csv", index=False)
    pd.DataFrame({"suite": ["paper"], "arm": ["rk"]}).to_csv(tmp_path / "arm_cost.csv", index=False)
    machine = {"cpu": "AMD EPYC", "cpu_capability": "AVX512", "torch_threads": 1}
    (tmp_path / "arm_cost.json").write_text(json.dumps({"machine": machine, "date": "2026-12-05T10:00:00+00:00"}))
    facts = chapter_cost_facts(tmp_path)
    assert facts["cost_rk_fc_adam"] == pytest.approx(70 / 45)
    assert facts["cost_overfit_rk_fc_adam"] == pytest.approx(25 / 15)
    assert facts["cost_machine"] == "AMD EPYC, torch CPU capability AVX512, 1 thread, 2026-12-05"
