"""What the reproducing chapter says of the overfitting regime (`overfit` suite): its recipe, how far the baseline
overfits (the shape the paper's curves have), each arm's accuracy and how many seeds have finished. Every value
comes from the regime's runs and histories; the chapter glues them under these names."""

from __future__ import annotations

from typing import Any

import pandas as pd

#: The epochs at the end of a run over which "at its end" is averaged: the training accuracy of one epoch
#: swings by points at a constant learning rate, so a single last epoch says little.
END_EPOCHS = 10


def _end(histories: pd.DataFrame, label: str, column: str) -> pd.Series:
    """Per seed: the mean of `column` over a run's last `END_EPOCHS` epochs."""
    own = histories[histories["label"] == label].sort_values("epoch")
    return own.groupby("seed")[column].apply(lambda values: values.tail(END_EPOCHS).mean())


def seeds_sentence(done: int, planned: int) -> str:
    """How many seeds have finished every arm, and what that means for the tests below it."""
    if done < planned:
        return (f"So far {done} of {planned} planned seeds have finished every arm: a test that needs more seeds "
                "stays undecided until they are in.")
    return (f"All {planned} planned seeds have finished every arm; where a test is still undecided, the tests table "
            "says how many seeds would decide it at the differences and spreads measured.")


def overfit_facts(runs: pd.DataFrame, histories: pd.DataFrame, planned_seeds: int) -> dict[str, Any]:
    """ov_* facts: the recipe, the baseline's overfitting (training and validation accuracy over its last epochs,
    its validation loss from its minimum to its end), each arm's test accuracy and the seeds finished."""
    baseline = runs[runs["label"] == "baseline"]
    first = baseline.iloc[0]
    continued = runs[runs["label"].isin(["rk", "adjoint"])]
    facts: dict[str, Any] = {
        "ov_train_images": f"{int(first['train_subset']):,}", "ov_val_images": f"{int(first['val_size']):,}",
        "ov_baseline_epochs": int(first["epochs"]), "ov_baseline_lr": float(first["lr"]),
        "ov_continued_epochs": int(continued["epochs"].max()) if len(continued) else 0,
        "ov_end_epochs": END_EPOCHS, "ov_planned_seeds": planned_seeds,
        "ov_seeds_done": int(runs.groupby("label")["seed"].nunique().min()),
    }
    facts["ov_seeds_sentence"] = seeds_sentence(facts["ov_seeds_done"], planned_seeds)
    for label, recipe in (("rk", "adam"), ("adjoint", "sgd")):
        own = runs[runs["label"] == label]
        if len(own):
            facts[f"ov_{recipe}_lr"] = float(own["lr"].iloc[0])
    train, val = _end(histories, "baseline", "train_acc") * 100, _end(histories, "baseline", "val_acc") * 100
    facts.update(ov_baseline_train_end=float(train.mean()), ov_baseline_val_end=float(val.mean()),
                 ov_baseline_gap=float((train - val).mean()))
    losses = histories[histories["label"] == "baseline"].sort_values("epoch").groupby("seed")
    lowest = losses.apply(lambda run: run.loc[run["val_loss"].idxmin()])
    facts.update(ov_val_loss_min=float(lowest["val_loss"].mean()), ov_val_loss_min_epoch=float(lowest["epoch"].mean()),
                 ov_val_loss_min_first=int(lowest["epoch"].min()), ov_val_loss_min_last=int(lowest["epoch"].max()),
                 ov_val_loss_end=float(_end(histories, "baseline", "val_loss").mean()))
    for label, own in runs.groupby("label"):
        facts[f"ov_{label.replace('-', '_')}_test"] = float(own["test_acc"].mean() * 100)
    return facts
