"""The experiment engine end to end on real offline data (digits) and real ImageNet weights (Lite0).

Most runs train the head on cached features of the frozen backbone (seconds each); one fine-tunes fully.
"""

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import torch

from node_transfer import ExperimentConfig
from node_transfer.core.errors import ConfigError, TrainingError
from node_transfer.core.rundir import HISTORY_COLUMNS
from node_transfer.run.experiment import prepare
from node_transfer.run.resume import early_stop_reason

from tiny_runs import LEARNING_NODE, LEARNING_RUN, comparable, run

METRIC_KEYS = {"train_acc", "val_acc", "test_acc", "train_loss", "val_loss", "test_loss", "epochs", "seconds",
               "params_total", "params_head", "nfe_forward", "nfe_backward"}
REPO = Path(__file__).resolve().parents[1]


def cli(*args, timeout=600):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1"}
    return subprocess.run([sys.executable, "-m", "node_transfer", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.parametrize("head", ["fc", "node"])
def test_each_head_learns_far_above_chance_and_writes_a_run_directory(tmp_path, head):
    run_dir = run(tmp_path, head, **{**LEARNING_RUN, **(LEARNING_NODE if head == "node" else {}), "head": head})
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert METRIC_KEYS <= set(metrics)
    assert metrics["test_acc"] > 0.6  # ten classes: chance is 0.1
    history = pd.read_csv(run_dir / "history.csv")
    assert list(history.columns) == HISTORY_COLUMNS and len(history) == 3
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    config = json.loads((run_dir / "config.json").read_text())
    assert set(ExperimentConfig.field_names()) <= set(config) and "torch" in config["versions"]
    # the CPU a run was made on: a rebuild reproduces it bit for bit only on the same model and instruction set
    assert config["versions"]["cpu"] and config["versions"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert config["sizes"] == {"train": 1293, "val": 144, "test": 360}
    assert datetime.fromisoformat(config["started_at"]).tzinfo is not None  # when it started, for preregistration
    if head == "node":
        assert metrics["nfe_forward"] >= 8 and metrics["nfe_backward"] == 0 and metrics["params_head"] > 650
        # the solver-swap check: the head solved accurately (dopri5, 1e-7) takes more steps and keeps its accuracy
        assert metrics["reference_solver"] == "dopri5, rtol = atol = 1e-07"
        assert metrics["nfe_reference_solver"] > metrics["nfe_eval"]
        swapped = metrics["test_acc_reference_solver"]
        assert metrics["solver_swap_change"] == pytest.approx(swapped - metrics["test_acc"])
        assert abs(metrics["solver_swap_change"]) < 0.02
    else:
        assert metrics["nfe_forward"] == 0 and metrics["params_head"] == 1280 * 10 + 10
        assert "test_acc_reference_solver" not in metrics  # no ODE, nothing to swap
    assert (run_dir / "best.pt").is_file() and (run_dir / "last.pt").is_file()
    fine = pd.read_csv(run_dir / "fine.csv")  # fine curves: every batch, and the validation subset 8 times an epoch
    assert len(fine) == 3 * 21 and list(fine["step"]) == list(range(1, 64))
    evaluated = fine[fine["val_loss"].notna()]
    assert len(evaluated) == 3 * 8 and evaluated.groupby("epoch")["batch"].max().tolist() == [21] * 3


def test_fine_curves_leave_the_run_unchanged(tmp_path):
    plain = run(tmp_path, "plain", **{**LEARNING_RUN, **LEARNING_NODE, "epochs": 2, "fine_evals": 0})
    fine = run(tmp_path, "fine", **{**LEARNING_RUN, **LEARNING_NODE, "epochs": 2, "fine_evals": 8})
    assert not (plain / "fine.csv").exists() and (fine / "fine.csv").is_file()
    assert comparable(pd.read_csv(plain / "history.csv")).equals(comparable(pd.read_csv(fine / "history.csv")))


def test_adjoint_run_counts_backward_evaluations(tmp_path):
    run_dir = run(tmp_path, "adjoint", **{**LEARNING_RUN, **LEARNING_NODE, "adjoint": True, "optimizer": "sgd",
                                          "lr": 0.05, "epochs": 1})
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["nfe_backward"] > 0 and metrics["test_acc"] > 0.3


def test_full_fine_tune_improves_on_chance(tmp_path):
    run_dir = run(tmp_path, "finetune", dataset="digits", image_size=48, head="fc", epochs=2, train_subset=400,
                  batch_size=32)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # seeds 0-2 reach 0.68-0.82 test accuracy here; chance is 0.1
    assert metrics["test_acc"] > 0.4 and metrics["params_trainable"] == metrics["params_total"]


def test_init_from_a_trained_baseline_starts_the_node_model_where_the_baseline_ended(tmp_path):
    baseline = run(tmp_path, "baseline", head="fc", **{**LEARNING_RUN, "epochs": 2})
    node_config = ExperimentConfig(**LEARNING_RUN, **LEARNING_NODE, zero_init=True, init_from=str(baseline))
    prepared = prepare(node_config)
    assert prepared.resolved["init_from_head_tensors"] == ["head.fc.weight", "head.fc.bias"]
    base_prepared = prepare(ExperimentConfig(**LEARNING_RUN, head="fc", init_from=str(baseline)))
    images = torch.stack([prepared.splits.test[i][0] for i in range(8)])
    prepared.model.eval()
    base_prepared.model.eval()
    with torch.no_grad():  # a zero-initialised ODE block is the identity: same logits as the baseline
        torch.testing.assert_close(prepared.model(images), base_prepared.model(images), rtol=1e-5, atol=1e-5)


def test_init_from_a_different_backbone_is_refused(tmp_path):
    other = run(tmp_path, "other", **{**LEARNING_RUN, "epochs": 1}, head="fc", backbone="test_efficientnet",
                weights="none")
    with pytest.raises(ConfigError, match="init_from"):
        prepare(ExperimentConfig(**LEARNING_RUN, head="fc", init_from=str(other)))


def test_target_val_acc_stops_early(tmp_path):
    run_dir = run(tmp_path, "target", head="fc", **{**LEARNING_RUN, "epochs": 6}, target_val_acc=0.2)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and metrics["stopped_early"] is True
    assert "target_val_acc=0.2" in metrics["stop_reason"]


def test_solver_failure_stops_with_context_and_keeps_what_was_done(tmp_path):
    with pytest.raises(TrainingError) as info:
        run(tmp_path, "stiff", **LEARNING_RUN, **{**LEARNING_NODE, "rtol": 1e-9, "atol": 1e-9}, max_num_steps=2)
    message = str(info.value)
    for fragment in ("epoch 1, batch 1", "dopri5", "rtol=1e-09", "function evaluations", "fallback"):
        assert fragment in message
    assert "epoch 1, batch 1" in (tmp_path / "stiff" / "error.txt").read_text()


def test_solver_failure_can_fall_back_to_a_fixed_step_solver(tmp_path):
    with pytest.warns(UserWarning, match="falling back to rk4"):
        run_dir = run(tmp_path, "fallback", **LEARNING_RUN, **{**LEARNING_NODE, "rtol": 1e-9, "atol": 1e-9},
                      max_num_steps=2, on_solver_failure="fallback", fallback_solver="rk4", fallback_step_size=0.25)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    history = pd.read_csv(run_dir / "history.csv")
    assert metrics["fallbacks"] == 1 and set(history["solver"]) == {"rk4"}
    assert metrics["nfe_forward"] == 16 and metrics["test_acc"] > 0.6  # rk4, 4 steps of 4 evaluations


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    from node_transfer.run import training

    original = training.Trainer.train_epoch

    def poison_second_epoch(self, epoch):
        if epoch == 1:
            with torch.no_grad():
                self.model.head.fc.weight.fill_(float("inf"))
        return original(self, epoch)

    monkeypatch.setattr(training.Trainer, "train_epoch", poison_second_epoch)
    with pytest.raises(TrainingError, match=r"non-finite loss .* epoch 2, batch 1"):
        run(tmp_path, "nan", head="fc", **LEARNING_RUN)
    checkpoint = torch.load(tmp_path / "nan" / "last.pt", weights_only=True)
    assert checkpoint["epoch"] == 1 and torch.isfinite(checkpoint["model"]["head.fc.weight"]).all()
    assert len(pd.read_csv(tmp_path / "nan" / "history.csv")) == 1


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkill_mid_run_then_resume_equals_an_uninterrupted_run(tmp_path):
    args = ["run", "--dataset", "digits", "--image-size", "32", "--head", "fc", "--epochs", "4",
            "--train-subset", "300", "--batch-size", "16", "--dropout", "0.3", "--quiet"]
    straight = cli(*args, "--out", str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr
    out = tmp_path / "killed"
    env = {**os.environ, "TQDM_DISABLE": "1"}
    process = subprocess.Popen([sys.executable, "-m", "node_transfer", *args, "--out", str(out)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not (out / "history.csv").exists():
        time.sleep(0.05)
    time.sleep(0.5)  # into the next epoch
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = len(pd.read_csv(out / "history.csv"))
    assert 1 <= done < 4 and not (out / "metrics.json").exists()
    resumed = cli("run", "--out", str(out), "--resume", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    expected = pd.read_csv(tmp_path / "straight" / "history.csv")
    pd.testing.assert_frame_equal(comparable(pd.read_csv(out / "history.csv")), comparable(expected))
    metrics = [json.loads((d / "metrics.json").read_text()) for d in (out, tmp_path / "straight")]
    for key in ("test_acc", "test_loss", "val_acc", "train_loss", "best_epoch"):
        assert metrics[0][key] == metrics[1][key]


def test_a_kill_while_writing_a_checkpoint_leaves_the_previous_one_loadable(tmp_path):
    path = tmp_path / "last.pt"
    torch.save({"epoch": 1, "model": {"w": torch.ones(3)}}, path)
    code = (
        "import os, sys, time, torch\n"
        "from node_transfer.core.checkpoints import atomic_save\n"
        "def slow_fsync(fd):\n"
        "    print('writing', flush=True); time.sleep(60)\n"
        "os.fsync = slow_fsync\n"
        f"atomic_save({{'epoch': 2, 'model': {{'w': torch.zeros(1_000_000)}}}}, {str(path)!r})\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "writing"  # the new file is written, not yet renamed
    process.send_signal(signal.SIGKILL)
    process.wait()
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["epoch"] == 1 and torch.equal(checkpoint["model"]["w"], torch.ones(3))


def test_a_second_run_never_overwrites_the_first(tmp_path):
    first = run(tmp_path, "same", head="fc", **{**LEARNING_RUN, "epochs": 1})
    before = (first / "metrics.json").read_text()
    result = cli("run", "--out", str(first), "--head", "fc", "--epochs", "1")
    assert result.returncode == 2 and "invalid parameter out=" in result.stderr
    assert (first / "metrics.json").read_text() == before


def test_checkpoints_refuse_pickled_code(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo hacked",))

    bad = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": Payload()}, bad)
    with pytest.raises(ConfigError, match="init_from"):
        prepare(ExperimentConfig(**LEARNING_RUN, head="fc", init_from=str(bad)))


def test_torchrun_two_process_gloo_run(tmp_path):
    out = tmp_path / "ddp"
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "node_transfer", "run",
                             "--dataset", "digits", "--image-size", "32", "--head", "node", "--ode-width", "32",
                             "--rtol", "1e-3", "--atol", "1e-3", "--freeze-backbone", "--cache-features",
                             "--no-augment", "--epochs", "2", "--device", "cpu", "--out", str(out), "--quiet"],
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads((out / "config.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert config["world_size"] == 2 and metrics["test_acc"] > 0.5
    assert len(pd.read_csv(out / "history.csv")) == 2


def test_feature_cache_is_reused_and_changes_nothing(tmp_path):
    cache = tmp_path / "features"
    first = run(tmp_path, "first", head="fc", **{**LEARNING_RUN, "epochs": 2}, feature_cache=str(cache))
    files = list(cache.glob("*.pt"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    second = run(tmp_path, "second", head="fc", **{**LEARNING_RUN, "epochs": 2}, feature_cache=str(cache))
    assert files[0].stat().st_mtime_ns == stamp  # read, not rewritten
    pd.testing.assert_frame_equal(comparable(pd.read_csv(first / "history.csv")),
                                  comparable(pd.read_csv(second / "history.csv")))
    other_seed = run(tmp_path, "third", head="fc", **{**LEARNING_RUN, "epochs": 1}, feature_cache=str(cache), seed=1)
    assert len(list(cache.glob("*.pt"))) == 2 and (other_seed / "metrics.json").is_file()  # another split


class _TinyBackbone(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 5, 3, padding=1)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.conv(images)


def test_extract_features_in_order_batch_independent_and_usable_for_training():
    from torch.utils.data import TensorDataset

    from node_transfer.model.transfer import TransferModel
    from node_transfer.run.features import extract_features

    torch.manual_seed(0)
    images = TensorDataset(torch.randn(23, 3, 8, 8), torch.arange(23) % 4)
    model = TransferModel(_TinyBackbone(), torch.nn.Identity())
    cpu = torch.device("cpu")
    pooled = extract_features(model, images, 7, cpu, pool=True, progress=False)
    features, labels = pooled.tensors
    assert features.shape == (23, 5) and torch.equal(labels, torch.arange(23) % 4)
    with torch.no_grad():
        expected = model.features(images.tensors[0]).mean(dim=(2, 3))
    torch.testing.assert_close(features, expected)
    other = extract_features(model, images, 7, cpu, pool=True, progress=False, num_workers=1).tensors[0]
    assert torch.equal(other, features)  # workers do not change the values
    maps = extract_features(model, images, 5, cpu, pool=False, progress=False).tensors[0]
    assert maps.shape == (23, 5, 8, 8)
    assert not features.is_inference()  # computed under inference_mode, yet a head can train on them
    head = torch.nn.Linear(5, 4)
    torch.nn.functional.cross_entropy(head(features), labels).backward()
    assert head.weight.grad is not None


def _history(val_losses: list[float], val_acc: float = 0.5) -> list[dict]:
    return [{"epoch": e, "val_loss": loss, "val_acc": val_acc} for e, loss in enumerate(val_losses, 1)]


def test_patience_stops_once_the_val_loss_has_not_improved_for_that_many_epochs():
    config = ExperimentConfig(patience=2)
    assert early_stop_reason(_history([1.0, 0.8, 0.9]), config) is None  # one epoch without a new lowest
    reason = early_stop_reason(_history([1.0, 0.8, 0.9, 0.85]), config)
    assert reason is not None and "after epoch 2" in reason and "stopped at epoch 4" in reason
    assert early_stop_reason(_history([1.0, 0.8, float("nan"), float("inf")]), config) is not None  # never best
    assert early_stop_reason(_history([1.0, 0.8, 0.9, 0.85]), ExperimentConfig(patience=0)) is None
    target = early_stop_reason(_history([1.0], val_acc=0.9), ExperimentConfig(target_val_acc=0.9, patience=5))
    assert target == "reached target_val_acc=0.9 at epoch 1"


def test_patience_stops_a_run_early(tmp_path):
    # lr so large the val loss cannot keep falling on the tiny fixture: stops after `patience` epochs
    run_dir = run(tmp_path, "patient", head="fc", **{**LEARNING_RUN, "epochs": 8, "lr": 5.0}, patience=1)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["stopped_early"] is True and metrics["epochs"] < 8
    assert "patience=1" in metrics["stop_reason"]
    history = pd.read_csv(run_dir / "history.csv")
    best = int(history["val_loss"].idxmin())
    assert len(history) - 1 - best == 1
