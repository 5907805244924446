"""The overfitting regime's facts come from its runs and histories: the baseline's end is averaged over its last
epochs, its validation loss is followed from its minimum to its end, seeds finished count the slowest arm."""

import pandas as pd
import pytest

from node_transfer.pages.overfit_facts import END_EPOCHS, overfit_facts


def tiny_regime() -> tuple[pd.DataFrame, pd.DataFrame]:
    common = {"train_subset": 5000, "val_size": 5000, "fallbacks": 0}
    runs = pd.DataFrame([
        {"label": "baseline", "seed": 0, "epochs": 20, "lr": 1e-3, "test_acc": 0.87, **common},
        {"label": "baseline", "seed": 1, "epochs": 20, "lr": 1e-3, "test_acc": 0.88, **common},
        {"label": "rk", "seed": 0, "epochs": 12, "lr": 3e-4, "test_acc": 0.89, **common},
        {"label": "adjoint", "seed": 0, "epochs": 12, "lr": 1e-2, "test_acc": 0.90, **common},
    ])
    rows = []
    for seed in (0, 1):
        for epoch in range(1, 21):
            rows.append({"label": "baseline", "seed": seed, "epoch": epoch, "train_acc": 0.90 + epoch * 0.004,
                         "val_acc": 0.85, "val_loss": abs(epoch - 5) * 0.01 + 0.40 + seed * 0.1})
    return runs, pd.DataFrame(rows)


def test_the_baseline_end_is_its_last_epochs_and_seeds_done_count_the_slowest_arm():
    runs, histories = tiny_regime()
    facts = overfit_facts(runs, histories, planned_seeds=5)
    last = [0.90 + epoch * 0.004 for epoch in range(21 - END_EPOCHS, 21)]
    assert facts["ov_baseline_train_end"] == pytest.approx(sum(last) / END_EPOCHS * 100)
    assert facts["ov_baseline_gap"] == pytest.approx(facts["ov_baseline_train_end"] - 85.0)
    assert facts["ov_val_loss_min_epoch"] == 5 and facts["ov_val_loss_min"] == pytest.approx(0.45)
    assert facts["ov_seeds_done"] == 1 and facts["ov_planned_seeds"] == 5
    assert facts["ov_seeds_sentence"].startswith("So far 1 of 5 planned seeds")
    assert overfit_facts(runs, histories, planned_seeds=1)["ov_seeds_sentence"].startswith("All 1 planned seeds")
    assert (facts["ov_adam_lr"], facts["ov_sgd_lr"], facts["ov_continued_epochs"]) == (3e-4, 1e-2, 12)
    assert facts["ov_baseline_test"] == pytest.approx(87.5) and facts["ov_train_images"] == "5,000"
