"""Faults that must never lose results: kills at any instant, solver failures outside training, bad resumes,
bad data, file-system errors, non-finite numbers. Each ends with a message naming the cause and the exit code
the README promises, and leaves nothing that blocks the corrected rerun.

The runs train an FC or NODE head on cached features of the frozen backbone, shared through one feature cache.
"""

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from node_transfer import ExperimentConfig
from node_transfer.app.cli import main
from node_transfer.core import rundir
from node_transfer.core.errors import ConfigError, DataError, Interrupted, RunDirError, TrainingError
from node_transfer.run.experiment import prepare

import tiny_runs
from tiny_runs import FAULT_NODE, FAULT_RUN, comparable


def run(tmp_path, name, cache, **params):
    """A tiny run with the fault tests' settings, on the module's shared feature cache."""
    return tiny_runs.run(tmp_path, name, **{**FAULT_RUN, "feature_cache": cache, **params})


TIMINGS = ("seconds", "seconds_per_epoch", "feature_seconds", "images_per_s", "peak_memory_mb")


def same_results(a: Path, b: Path) -> None:
    """Equal to the last bit: every number of the history and of metrics.json but the clocks and the memory."""
    histories = [comparable(pd.read_csv(d / "history.csv")) for d in (a, b)]
    pd.testing.assert_frame_equal(*histories, check_exact=True)
    metrics = [{k: v for k, v in json.loads((d / "metrics.json").read_text()).items() if k not in TIMINGS}
               for d in (a, b)]
    assert metrics[0] == metrics[1]


def strict_json(path: Path) -> dict:
    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def no_temp_files(run_dir: Path) -> bool:
    return not list(run_dir.glob(".*.tmp"))


# -- 1. the checkpoint pair
def test_a_kill_between_last_and_best_is_repaired_on_resume(tmp_path, cache, monkeypatch):
    straight = run(tmp_path, "straight", cache)
    best_writes = []
    original = rundir.atomic_save

    def killed_before_second_best(obj, path):
        if Path(path).name == "best.pt":
            best_writes.append(obj["epoch"])
            if len(best_writes) == 2:
                raise KeyboardInterrupt  # as if killed right after last.pt was replaced
        original(obj, path)

    monkeypatch.setattr(rundir, "atomic_save", killed_before_second_best)
    with pytest.raises(Interrupted, match="SIGINT"):
        run(tmp_path, "killed", cache)
    monkeypatch.setattr(rundir, "atomic_save", original)
    out = tmp_path / "killed"
    last = torch.load(out / "last.pt", weights_only=True)
    assert last["best_epoch"] == last["epoch"] == best_writes[1]
    assert torch.load(out / "best.pt", weights_only=True)["epoch"] == best_writes[0]  # the stale pair
    resumed = run(tmp_path, "killed", cache, resume=True)
    assert torch.load(out / "best.pt", weights_only=True)["epoch"] == json.loads(
        (out / "metrics.json").read_text())["best_epoch"]
    same_results(resumed, straight)


def test_a_pair_that_does_not_belong_together_is_refused(tmp_path, cache):
    out = run(tmp_path, "run", cache, epochs=1)
    last = torch.load(out / "last.pt", weights_only=True)
    torch.save({**last, "epoch": 2}, out / "last.pt")  # epoch 2 did not improve on epoch 1...
    torch.save({**last, "epoch": 7}, out / "best.pt")  # ...but best.pt comes from elsewhere
    with pytest.raises(DataError, match="do not belong together"):
        rundir.load_last(out)
    assert main(["run", "--out", str(out), "--resume", "--epochs", "3", "--quiet"]) == 1


# -- 8. signals
def test_sigterm_while_a_checkpoint_is_written_stops_after_the_write(tmp_path, monkeypatch):
    from node_transfer.core.checkpoints import atomic_save
    from node_transfer.run.experiment import signals_as_errors

    original = torch.save

    def save_and_get_terminated(obj, handle, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives in the middle of the write
        original(obj, handle, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_and_get_terminated)
    with pytest.raises(Interrupted, match="SIGTERM"), signals_as_errors():
        atomic_save({"epoch": 2, "model": {"w": torch.ones(3)}}, tmp_path / "last.pt")
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 2 and no_temp_files(tmp_path)


def test_init_from_a_run_killed_between_the_two_writes_takes_its_best_epoch(tmp_path, cache):
    out = run(tmp_path, "run", cache, epochs=1)
    last = torch.load(out / "last.pt", weights_only=True)
    newer = {**last["model"], "head.fc.bias": torch.full((10,), 5.0)}
    torch.save({**last, "epoch": 2, "best_epoch": 2, "model": newer}, out / "last.pt")  # best.pt still epoch 1
    prepared = prepare(ExperimentConfig(**FAULT_RUN, init_from=str(out)))
    torch.testing.assert_close(prepared.model.head.fc.bias, torch.full((10,), 5.0))


# -- 2. solver failures outside training
def fail_in_evaluation(monkeypatch):
    """The default backend's adaptive solves fail outside training, as a step bound would (fixed-grid ones run)."""
    from node_transfer.numerics import lean_backend
    from node_transfer.numerics.lean_rk import SolveFailure

    original = lean_backend.integrate

    def integrate(func, *args, **kwargs):
        if not func.training:
            raise SolveFailure("more than max_num_steps=1000 steps")
        return original(func, *args, **kwargs)

    monkeypatch.setattr(lean_backend, "integrate", integrate)


def test_a_solver_failure_in_validation_stops_with_context(tmp_path, cache, monkeypatch, capsys):
    fail_in_evaluation(monkeypatch)
    out = tmp_path / "stiff"
    code = main(["run", "--dataset", "digits", "--image-size", "32", "--freeze-backbone", "--cache-features",
                 "--feature-cache", cache, "--head", "node", "--ode-width", "32", "--epochs", "1", "--out", str(out),
                 "--fine-evals", "0", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    for fragment in ("epoch 1, batch 1 of validation", "max_num_steps", "dopri5", "on_solver_failure='fallback'",
                     "No epoch was complete"):
        assert fragment in err
    assert "last good checkpoint" not in err  # there is none yet
    assert "batch 1 of validation" in (out / "error.txt").read_text()
    assert main(["run", "--dataset", "digits", "--out", str(out), "--epochs", "1", "--quiet", "--head", "fc",
                 "--image-size", "32", "--freeze-backbone", "--cache-features", "--feature-cache", cache]) == 0


def test_a_solver_failure_in_validation_falls_back_when_asked(tmp_path, cache, monkeypatch):
    fail_in_evaluation(monkeypatch)
    with pytest.warns(UserWarning, match="of validation.*falling back to rk4"):
        out = run(tmp_path, "fallback", cache, **FAULT_NODE, epochs=1, on_solver_failure="fallback")
    metrics = strict_json(out / "metrics.json")
    assert metrics["fallbacks"] == 1 and metrics["nfe_eval"] == 16  # rk4 over 4 steps in the test too
    # the solver-swap check failed too (every adaptive solve outside training fails here): recorded, the run kept
    assert metrics["test_acc_reference_solver"] is None and "max_num_steps" in metrics["solver_swap_error"]
    assert list(pd.read_csv(out / "history.csv")["solver"]) == ["rk4"]


# -- 9. non-finite numbers
def test_an_infinite_validation_loss_never_becomes_best_and_metrics_stay_json(tmp_path, cache, monkeypatch):
    from node_transfer.run import training

    original = training.Trainer.evaluate

    def evaluate(self, loader, epoch=None, stage="validation"):
        result = original(self, loader, epoch, stage)
        if epoch == 1:
            return {**result, "loss": float("inf"), "acc": 1.0}
        if epoch is None:
            return {**result, "loss": float("nan")}
        return result

    monkeypatch.setattr(training.Trainer, "evaluate", evaluate)
    out = run(tmp_path, "inf", cache)
    metrics = strict_json(out / "metrics.json")
    assert metrics["best_epoch"] != 2 and metrics["test_loss"] is None
    assert pd.read_csv(out / "history.csv")["val_loss"].iloc[1] == float("inf")


# -- 3 and 10. what resume accepts
def test_resume_checks_what_it_is_given_against_the_saved_run(tmp_path, cache, capsys):
    out = run(tmp_path, "run", cache, epochs=1)
    metrics = (out / "metrics.json").read_bytes()
    for option, value in (("--head", "node"), ("--seed", "1"), ("--image-size", "64")):
        assert main(["run", "--out", str(out), "--resume", option, value, "--quiet"]) == 2
        err = capsys.readouterr().err
        assert f"invalid parameter {option[2:].replace('-', '_')}=" in err and "as saved in" in err
    assert main(["run", "--out", str(out), "--resume", "--quiet"]) == 0  # finished: nothing to do
    assert "finished" in capsys.readouterr().err and (out / "metrics.json").read_bytes() == metrics
    (out / "config.json").unlink()  # the configuration is read from last.pt
    assert main(["run", "--out", str(out), "--resume", "--epochs", "2", "--quiet"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["image_size"], config["batch_size"], config["epochs"]) == (32, 32, 2)  # written back
    umask = os.umask(0)
    os.umask(umask)
    assert (out / "config.json").stat().st_mode & 0o777 == 0o666 & ~umask  # readable as before, not private
    (out / "config.json").write_text("{not json")
    assert main(["run", "--out", str(out), "--resume", "--epochs", "3", "--quiet"]) == 0
    assert len(pd.read_csv(out / "history.csv")) == 3 and strict_json(out / "metrics.json")["epochs"] == 3
    same_results(out, run(tmp_path, "straight", cache))
    assert main(["run", "--out", str(out), "--resume", "--epochs", "2", "--quiet"]) == 2  # cannot shrink


def test_a_run_stopped_at_its_target_can_be_extended(tmp_path, cache):
    out = run(tmp_path, "target", cache, epochs=3, target_val_acc=0.2)
    assert strict_json(out / "metrics.json")["epochs"] == 1
    assert main(["run", "--out", str(out), "--resume", "--target-val-acc", "none", "--quiet"]) == 0
    metrics = strict_json(out / "metrics.json")
    assert metrics["epochs"] == 3 and metrics["stopped_early"] is False
    same_results(out, run(tmp_path, "straight", cache))


# -- 4. bad data found late
@pytest.mark.parametrize("data_path", ["pil", "tensor"])
def test_bad_images_name_the_file_and_leave_a_reusable_directory(tmp_path, cache, capsys, data_path):
    from fixtures_data import image_folder

    data = image_folder(tmp_path / "images")
    (data / "train" / "cats" / "text.jpg").write_text("not an image")
    (data / "train" / "dogs" / "empty.png").write_bytes(b"")
    out = tmp_path / "run"
    args = ["run", "--dataset", "imagefolder", "--data-dir", str(data), "--backbone", "test_efficientnet",
            "--weights", "none", "--image-size", "32", "--head", "fc", "--freeze-backbone", "--cache-features",
            "--epochs", "1", "--val-size", "2", "--out", str(out), "--quiet", "--data-path", data_path]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "cannot read image" in err and ("text.jpg" in err or "empty.png" in err) and "Traceback" not in err
    if data_path == "tensor":  # every image is decoded while the run is built: nothing is written
        assert not out.exists()
    else:  # found while features are extracted, after the run directory was made
        assert rundir.is_restartable(out) and "cannot read image" in (out / "error.txt").read_text()
        assert main([*args, "--resume"]) == 1  # --resume is not blocked either: it starts again, and fails the same
    (data / "train" / "cats" / "text.jpg").unlink()
    (data / "train" / "dogs" / "empty.png").unlink()
    assert main(args) == 0 and (out / "metrics.json").is_file() and not (out / "error.txt").exists()


def test_feature_cache_faults(tmp_path, cache):
    with pytest.raises(ConfigError, match="feature_cache"):
        ExperimentConfig(**FAULT_RUN, feature_cache=str(Path(__file__))).validate()
    folder = tmp_path / "cache"
    first = run(tmp_path, "first", str(folder), epochs=1)
    [path] = folder.glob("*.pt")
    path.write_bytes(b"torn")
    with pytest.warns(UserWarning, match="feature cache .* unreadable"):
        second = run(tmp_path, "second", str(folder), epochs=1)
    same_results(first, second)
    torch.load(path, weights_only=True)  # replaced by a good one


# -- 7. file-system errors
def test_an_out_that_cannot_be_created_fails_before_any_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="out"):
        ExperimentConfig(**FAULT_RUN, out=str(blocker / "run")).validate()


def test_the_loser_of_two_runs_on_one_out_is_refused(tmp_path, cache):
    out = tmp_path / "run"
    out.mkdir()
    holder = rundir.lock(out)  # another run, alive, holds the directory
    try:
        with pytest.raises(ConfigError, match="another run holds its lock"):
            run(tmp_path, "run", cache, epochs=1)
    finally:
        holder.close()
    assert not (out / "config.json").exists()


def test_a_full_disk_stops_cleanly_and_the_run_resumes(tmp_path, cache, monkeypatch, capsys):
    original = torch.save

    def full_on_epoch_2(obj, handle, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("epoch") == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(obj, handle, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_on_epoch_2)
    out = tmp_path / "full"
    with pytest.raises(RunDirError, match="No space left on device.*epoch is kept"):
        run(tmp_path, "full", cache)
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 1 and (out / "best.pt").is_file()
    assert len(pd.read_csv(out / "history.csv")) == 1 and no_temp_files(out)
    assert "No space left" in (out / "error.txt").read_text()
    monkeypatch.setattr(torch, "save", original)
    same_results(run(tmp_path, "full", cache, resume=True), run(tmp_path, "straight", cache))


# -- 6. init_from
def test_init_from_an_augmented_run_or_a_checkpoint_with_a_non_tensor(tmp_path, cache):
    base = run(tmp_path, "base", cache, epochs=1)
    checkpoint = torch.load(base / "best.pt", weights_only=True)
    checkpoint["model"]["head.fc.weight"] = torch.zeros(10, 1288)  # trained with augment_dim=8
    torch.save(checkpoint, tmp_path / "augmented.pt")
    prepared = prepare(ExperimentConfig(**{**FAULT_RUN, "cache_features": False},
                                        init_from=str(tmp_path / "augmented.pt")))
    assert prepared.resolved["init_from_head_tensors"] == ["head.fc.bias"]
    checkpoint["model"]["head.fc.weight"] = "not a tensor"
    torch.save(checkpoint, tmp_path / "odd.pt")
    with pytest.raises(ConfigError, match="not a tensor"):
        prepare(ExperimentConfig(**FAULT_RUN, init_from=str(tmp_path / "odd.pt")))


# -- 11. messages
def test_a_refused_checkpoint_says_why_without_advising_to_drop_the_protection(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo hacked",))

    torch.save({"model": {}, "payload": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(ConfigError) as info:
        prepare(ExperimentConfig(**FAULT_RUN, init_from=str(tmp_path / "evil.pt")))
    message = str(info.value)
    assert "refused because" in message and "could run code" in message and "weights_only" not in message


def test_a_failing_fallback_solver_does_not_suggest_the_fallback(tmp_path, cache, monkeypatch):
    from node_transfer.numerics import lean_backend, torchdiffeq_backend
    from node_transfer.numerics.lean_rk import SolveFailure

    def fail(*args, **kwargs):
        raise SolveFailure("step size underflow")

    def fail_as_torchdiffeq(*args, **kwargs):
        raise AssertionError("underflow in dt")  # torchdiffeq's bare assert, which its backend translates

    monkeypatch.setattr(lean_backend, "integrate", fail)  # dopri5 in the lean loop
    monkeypatch.setattr(torchdiffeq_backend, "odeint", fail_as_torchdiffeq)  # the rk4 fallback: torchdiffeq's grid
    with pytest.raises(TrainingError) as info:
        run(tmp_path, "stiff", cache, **FAULT_NODE, epochs=1, on_solver_failure="fallback")
    assert "cannot help" in str(info.value) and "switches to a fixed-step solver" not in str(info.value)


# -- 13. smaller
def test_a_seed_beyond_63_bits_and_a_one_class_data_set_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="seed"):
        ExperimentConfig(seed=2**64).validate()
    from fixtures_data import image_folder

    data = image_folder(tmp_path / "one", classes=("cats",))
    with pytest.raises(DataError, match="at least 2"):
        prepare(ExperimentConfig(dataset="imagefolder", data_dir=str(data), backbone="test_efficientnet",
                                 weights="none", image_size=32, head="fc", val_size=2))


# -- 5. suites, 12. report
def test_suites_check_inputs_and_refuse_what_they_set_themselves(tmp_path, capsys):
    out = tmp_path / "suite"
    for items, name in (([f"weights={tmp_path / 'missing.pt'}"], "weights"),
                        (["dataset=imagefolder", f"data_dir={tmp_path / 'missing'}"], "data_dir"),
                        (["seed=3"], "set"), (["out=elsewhere"], "set"), (["resume=true"], "set")):
        assert main(["suite", "smoke", "--out", str(out), "--in-process", *(f"--set={i}" for i in items)]) == 2
        assert f"invalid parameter {name}=" in capsys.readouterr().err
        assert not out.exists()


def test_report_of_one_run_and_of_broken_suites(tmp_path, cache, capsys):
    out = run(tmp_path, "run", cache, epochs=2)
    assert main(["report", str(out)]) == 0
    assert (out / "report" / "curves.png").stat().st_size > 1000
    assert "test_acc" in (out / "report" / "tables.md").read_text()
    suite = tmp_path / "suite"
    suite.mkdir()
    capsys.readouterr()
    assert main(["report", str(suite)]) == 1 and "suite.json" in capsys.readouterr().err
    (suite / "suite.json").write_text("{broken")
    assert main(["report", str(suite)]) == 1 and "not JSON" in capsys.readouterr().err
    (suite / "suite.json").write_text(json.dumps({"suite": "smoke", "profile": "cpu", "seeds": 1,
                                                  "runs": [{"label": "fc", "seed": 0, "group": ""}]}))
    shutil.copytree(out, suite / "fc-s0")
    (suite / "runs.csv").write_text("garbage\n\x00\x01")
    assert main(["report", str(suite)]) == 0 and "runs.csv was missing, unreadable" in capsys.readouterr().err
    assert list(pd.read_csv(suite / "runs.csv")["run_dir"]) == ["fc-s0"]
    (suite / "fc-s0" / "metrics.json").write_text("{")
    assert main(["report", str(suite)]) == 1 and "metrics.json" in capsys.readouterr().err


# -- SIGKILL and SIGTERM at random instants
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_random_kills_then_resume_equal_an_uninterrupted_run(tmp_path, cache):
    args = ["run", "--dataset", "digits", "--image-size", "32", "--head", "fc", "--freeze-backbone",
            "--cache-features", "--no-augment", "--feature-cache", cache, "--train-subset", "200", "--epochs", "40",
            "--batch-size", "16", "--dropout", "0.3", "--lr", "3e-3", "--quiet"]
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    # the straight run in a process like the killed ones; the resumes alternate 2 and 1 threads: each computes with
    # the count its run was started with (1), or the results would differ in the last bits
    subprocess.run([sys.executable, "-m", "node_transfer", *args, "--out", str(tmp_path / "straight")], env=env,
                   check=True, stdout=subprocess.DEVNULL)
    out = tmp_path / "killed"
    rng = random.Random(0)
    kills = clean_sigterms = 0
    command = [*args, "--out", str(out)]
    def saved() -> tuple:  # which last.pt (not when it was last read)
        return ((out / "last.pt").stat().st_ino, (out / "last.pt").stat().st_mtime_ns) if (out / "last.pt").exists() \
            else ()

    for _ in range(40):
        before, how = saved(), None
        threads = "2" if "--resume" in command and kills % 2 == 0 else "1"  # every other resume: 2 threads
        process = subprocess.Popen([sys.executable, "-m", "node_transfer", *command],
                                   env={**env, "OMP_NUM_THREADS": threads},
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while time.time() < deadline and process.poll() is None and saved() == before:
            time.sleep(0.01)  # until this process has written an epoch: then kill it at a random instant
        time.sleep(rng.uniform(0.0, 0.15))
        if process.poll() is None and kills < 10:
            how = signal.SIGTERM if kills % 2 else signal.SIGKILL
            process.send_signal(how)
            kills += 1
        _, err = process.communicate(timeout=120)
        if process.returncode == 0:
            break
        assert process.returncode in (-signal.SIGKILL, -signal.SIGTERM, 128 + signal.SIGTERM), err
        if process.returncode == 128 + signal.SIGTERM:
            assert "SIGTERM" in err and "--resume" in err and "Traceback" not in err, err
            assert "SIGTERM" in (out / "error.txt").read_text()
            assert no_temp_files(out)
            clean_sigterms += 1
        assert not (out / "metrics.json").exists()
        command = ["run", "--out", str(out), "--resume", "--quiet"]
    assert process.returncode == 0 and kills >= 10 and clean_sigterms >= 3, (kills, clean_sigterms, err)
    assert no_temp_files(out) and not (out / "error.txt").exists()
    same_results(out, tmp_path / "straight")
    shutil.rmtree(out)
