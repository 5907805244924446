"""Suites run end to end (through real papermill or in process), resumed, extended, and refused when a seed's
baseline came from another CPU model."""

import json
import subprocess
import sys

import nbformat
import pandas as pd
import pytest

from node_transfer.analysis.reporting import write_report
from node_transfer.core.errors import ConfigError
from node_transfer.suites.options import SuiteOptions
from node_transfer.suites.registry import SUITES, get_suite
from node_transfer.suites.results import suite_scale
from node_transfer.suites.runner import plan, run_suite

#: Runs in this process, without progress lines (the quick way through a suite in a test).
IN_PROCESS = SuiteOptions(use_papermill=False, progress=False)
NOISY = SuiteOptions(use_papermill=False)  # in process, with its progress lines


def test_tiny_suite_through_papermill(tmp_path):
    out = run_suite("smoke", "cpu", seeds=1, out=tmp_path / "smoke")
    runs = pd.read_csv(out / "runs.csv")
    assert list(runs["label"]) == ["fc", "node"] and (runs["epochs"] == 1).all()
    assert {"test_acc", "nfe_forward", "val_loss_rise", "train_loss_rise", "test_ece", "rtol", "head", "seed"} <= set(
        runs.columns)
    for label in ("fc", "node"):
        notebook = nbformat.read(out / f"{label}-s0.ipynb", as_version=4)
        assert notebook.metadata["papermill"]["parameters"]["head"] == label
        assert any("injected-parameters" in c.metadata.get("tags", []) for c in notebook.cells)
        assert (out / f"{label}-s0" / "metrics.json").is_file()
    assert runs.loc[runs["label"] == "node", "nfe_forward"].item() > 0
    scale = suite_scale(out, runs)  # what a page glues as the sweep's data and budget
    assert scale.startswith("scikit-learn's 8x8 digits at ") and "1 epoch in batches of" in scale
    assert scale.endswith(", 1 seed per configuration")
    assert suite_scale(out, pd.concat([runs, runs.assign(seed=1).iloc[:1]])).endswith(", 1-2 seeds per configuration")
    config = json.loads((out / "fc-s0" / "config.json").read_text())
    assert f"{config['sizes']['train']:,} training images ({config['sizes']['val']:,} validation" in scale
    report = write_report(out)
    assert "Results" in (report / "tables.md").read_text() and (report / "curves-all.png").stat().st_size > 1000


def test_an_interrupted_suite_resumes_without_redoing_or_losing_runs(tmp_path):
    out = run_suite("smoke", "cpu", seeds=2, out=tmp_path / "smoke", options=IN_PROCESS)
    finished = (out / "node-s1" / "metrics.json").read_bytes()
    (out / "node-s0" / "metrics.json").unlink()  # killed after its last checkpoint
    (out / "fc-s1" / "metrics.json").unlink()  # killed before any checkpoint
    (out / "fc-s1" / "last.pt").unlink()
    (out / "runs.csv").unlink()
    with pytest.raises(ConfigError, match="resume"):
        run_suite("smoke", "cpu", seeds=2, out=out, options=NOISY)
    with pytest.raises(ConfigError, match="seeds"):  # fewer seeds would drop finished runs from suite.json
        run_suite("smoke", "cpu", seeds=1, out=out, resume=True, options=NOISY)
    seconds_before = json.loads((out / "suite.json").read_text())["seconds"]
    run_suite("smoke", "cpu", seeds=2, out=out, resume=True, options=IN_PROCESS)
    assert json.loads((out / "suite.json").read_text())["seconds"] > seconds_before > 0  # time adds up
    runs = pd.read_csv(out / "runs.csv")
    assert sorted(runs["run_dir"]) == ["fc-s0", "fc-s1", "node-s0", "node-s1"]
    assert (out / "node-s1" / "metrics.json").read_bytes() == finished  # kept, not rerun
    assert (out / "fc-s1.partial-1" / "config.json").is_file()  # set aside, not deleted
    history = pd.read_csv(out / "node-s0" / "history.csv")
    assert list(history["epoch"]) == [1]  # resumed from last.pt: no epoch trained twice
    with pytest.raises(ConfigError, match="suite.json"):
        run_suite("smoke", "cpu", seeds=1, out=tmp_path / "elsewhere", resume=True,
                  options=NOISY)
    # more seeds extend the suite: a new seed of one configuration now, every earlier run kept
    run_suite("smoke", "cpu", seeds=3, out=out, resume=True, labels=("fc",), only_seeds=(2,), options=IN_PROCESS)
    meta = json.loads((out / "suite.json").read_text())
    assert meta["seeds"] == 3 and ("node", 2) in {(entry["label"], entry["seed"]) for entry in meta["runs"]}
    runs = pd.read_csv(out / "runs.csv")
    assert sorted(runs["run_dir"]) == ["fc-s0", "fc-s1", "fc-s2", "node-s0", "node-s1"]
    assert (out / "node-s1" / "metrics.json").read_bytes() == finished


def test_suite_command_exits_non_zero_on_a_bad_override(tmp_path):
    result = subprocess.run([sys.executable, "-m", "node_transfer", "suite", "smoke", "--set", "rtol=-1",
                             "--out", str(tmp_path / "s")], capture_output=True, text=True)
    assert result.returncode == 2 and "invalid parameter rtol=-1" in result.stderr
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("name", sorted(SUITES))
@pytest.mark.parametrize("profile", ["cpu", "gpu", "fmnist"])
def test_every_suite_plans_valid_configurations(name, profile, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the gpu profile asks for device=cuda
    planned = plan(name, profile, 2, tmp_path)
    assert len(planned) == 2 * len(get_suite(name, profile))
    assert len({str(config.out) for _, _, config in planned}) == len(planned)


def test_runs_continued_from_the_baseline_stop_at_its_validation_accuracy(tmp_path, monkeypatch):
    from node_transfer.suites import runner as suite_runner

    seen = []
    monkeypatch.setattr("node_transfer.run.experiment.run_experiment",
                        lambda config, progress=True: seen.append((config.head, config.target_val_acc)))
    baseline = tmp_path / "s" / "baseline-s0"
    baseline.mkdir(parents=True)
    (baseline / "metrics.json").write_text(json.dumps({"val_acc": 0.875}))
    (baseline / "last.pt").touch()  # its checkpoints are here: nothing to rebuild
    (tmp_path / "s" / "suite.json").write_text(json.dumps({"suite": "paper", "profile": "fmnist", "seeds": 1,
                                                           "overrides": {}}))
    monkeypatch.setattr(suite_runner, "collect_runs", lambda out: pd.DataFrame())
    suite_runner.run_suite("paper", "fmnist", 1, tmp_path / "s", resume=True, labels=("rk", "fc-adam"), options=NOISY)
    assert seen == [("node", 0.875), ("fc", 0.875)]
    with pytest.raises(ConfigError, match="labels"):
        suite_runner.plan("paper", "fmnist", 1, tmp_path / "t", labels=("nope",))


def test_a_seed_with_runs_from_another_cpu_model_gets_no_new_runs(tmp_path, monkeypatch):
    from node_transfer.suites import runner as suite_runner

    monkeypatch.setattr("node_transfer.run.experiment.run_experiment", lambda config, progress=True: None)
    monkeypatch.setattr(suite_runner, "collect_runs", lambda out: pd.DataFrame())
    monkeypatch.setattr(suite_runner, "cpu_description", lambda: {"cpu": "AMD EPYC", "cpu_capability": "AVX512"})
    suite = tmp_path / "s"
    for seed, cpu in ((0, "Intel Xeon"), (1, "AMD EPYC")):
        baseline = suite / f"baseline-s{seed}"
        baseline.mkdir(parents=True)
        (baseline / "metrics.json").write_text(json.dumps({"val_acc": 0.875}))
        (baseline / "last.pt").touch()
        (baseline / "config.json").write_text(json.dumps({"versions": {"cpu": cpu, "cpu_capability": "AVX512"}}))
    (suite / "suite.json").write_text(json.dumps({"suite": "paper", "profile": "fmnist", "seeds": 2,
                                                  "overrides": {}}))
    with pytest.raises(ConfigError, match=r"baseline-s0 was made on Intel Xeon \(AVX512\)"):
        suite_runner.run_suite("paper", "fmnist", 2, suite, resume=True, labels=("rk",), options=NOISY)
    assert not (suite / "rk-s0").exists() and not (suite / "rk-s1").exists()  # nothing ran, nothing written
    suite_runner.run_suite("paper", "fmnist", 2, suite, resume=True, labels=("rk",), only_seeds=(1,), options=NOISY)
    # the seed made on this machine's CPU goes on


def test_a_diverged_run_is_kept_as_a_result_and_never_trained_again(tmp_path, monkeypatch, capsys):
    """A non-finite loss stops the run with DivergedError and marks it (`diverged.txt`); `--resume` keeps the mark
    instead of retrying the run until it passes, and `dispersion` counts it as a divergence."""
    from node_transfer.analysis.dispersion import failed_seeds
    from node_transfer.core.errors import SuiteRunError
    from node_transfer.run import training

    original = training.Trainer._loss

    def diverging(self, inputs, labels):
        loss, logits = original(self, inputs, labels)
        return (loss * float("nan"), logits) if self.config.head == "node" else (loss, logits)

    monkeypatch.setattr(training.Trainer, "_loss", diverging)
    out = tmp_path / "smoke"
    with pytest.raises(SuiteRunError, match="node"):
        run_suite("smoke", "cpu", seeds=1, out=out,
                  options=SuiteOptions(use_papermill=False, progress=False, keep_going=True))
    marker = out / "node-s0" / "diverged.txt"
    assert "non-finite loss" in marker.read_text() and not (out / "node-s0" / "metrics.json").exists()
    monkeypatch.setattr(training.Trainer, "_loss", original)  # the fault is gone: a retry would now pass
    capsys.readouterr()
    run_suite("smoke", "cpu", seeds=1, out=out, resume=True, options=IN_PROCESS)
    assert "node seed 0 diverged, kept as a result" in capsys.readouterr().err
    assert not (out / "node-s0" / "metrics.json").exists() and marker.is_file()
    assert list(pd.read_csv(out / "runs.csv")["label"]) == ["fc"] and failed_seeds(out, "node") == {0}
