"""Re-running a recorded configuration: `node-transfer run --config RUN_DIR/config.json` and papermill's
`-f params.yaml` re-run a committed run to its numbers, in a new directory; files that are not a run
configuration, or that name fields this version lacks, are refused with a message naming them."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from node_transfer.app.cli import main
from node_transfer.core.config import ExperimentConfig
from node_transfer.core.rerun import NOT_RERUN, RECORDED_ENTRIES, read_run_config
from node_transfer.core.rundir import read_json
from node_transfer.run.experiment import cpu_description
from node_transfer.run.rebuild import MACHINE_DEPENDENT, first_difference

REPO = Path(__file__).resolve().parents[1]
# A committed tiny run (a head on cached features of digits at 64 px: seconds), executed by `make reproduce` too
COMMITTED = REPO / "results" / "tolerance-cpu" / "control-mlp-s0"
# How closely a committed run's numbers come back on another CPU model: `make reproduce` compares them to three
# decimals (results/nbval-sanitize.cfg); on the CPU that made them, first_difference (the rebuilds' test) is exact.
ACROSS_CPUS = 1e-3
BIN = Path(sys.executable).parent


def recorded_cpu(run_dir: Path) -> dict:
    versions = read_json(run_dir / "config.json")["versions"]
    return {name: versions.get(name) for name in ("cpu", "cpu_capability")}


def difference_beyond(committed: Path, rerun: Path, tolerance: float) -> str | None:
    """The first number of history.csv or metrics.json (clocks and memory excepted) that differs by more than
    `tolerance`, or None."""
    old, new = pd.read_csv(committed / "history.csv"), pd.read_csv(rerun / "history.csv")
    if len(old) != len(new):
        return f"{len(new)} epochs, committed {len(old)}"
    pairs = [(f"history.csv epoch {row} {column}", old.at[row, column], new.at[row, column])
             for row in old.index for column in old.columns if column not in MACHINE_DEPENDENT]
    old_metrics, new_metrics = read_json(committed / "metrics.json"), read_json(rerun / "metrics.json")
    pairs += [(f"metrics.json {key}", value, new_metrics.get(key)) for key, value in old_metrics.items()
              if key not in MACHINE_DEPENDENT]
    for where, a, b in pairs:
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))
        if not (math.isclose(a, b, rel_tol=0, abs_tol=tolerance) if numbers else a == b):
            return f"{where}: committed {a!r}, now {b!r}"
    return None


def assert_reproduces(committed: Path, rerun: Path) -> None:
    """The rebuilds' exact test on the CPU that made the committed run; to three decimals on another."""
    if recorded_cpu(committed) == cpu_description():
        assert first_difference(committed, rerun) is None
    else:
        assert difference_beyond(committed, rerun, ACROSS_CPUS) is None


@pytest.fixture(scope="module")
def rerun(tmp_path_factory, cache):
    """The committed run re-run by `node-transfer run --config`, with a new --out and an overridden option."""
    out = tmp_path_factory.mktemp("rerun") / "again"
    code = main(["run", "--config", str(COMMITTED / "config.json"), "--out", str(out), "--feature-cache", cache,
                 "--quiet"])
    assert code == 0
    return out


def test_run_config_reruns_a_committed_run_to_its_numbers_in_a_new_directory(rerun, cache):
    assert_reproduces(COMMITTED, rerun)
    old, new = read_json(COMMITTED / "config.json"), read_json(rerun / "config.json")
    options, _ = read_run_config(COMMITTED)
    changed = {name for name in ExperimentConfig.field_names() if new[name] != options.get(name, new[name])}
    assert changed == {"feature_cache"} and new["feature_cache"] == cache  # the option given overrides the file
    assert new["out"] == str(rerun) and old["out"] == "results/tolerance-cpu/control-mlp-s0"
    assert (new["memory_format"], new["data_path"]) == ("channels_last_on_cuda", "pil")  # as the run was made
    # what config.json records besides the options is what a re-run knows to leave out (kept in step here)
    assert set(new) - set(ExperimentConfig.field_names()) <= set(RECORDED_ENTRIES)


def test_papermill_reruns_it_from_a_parameters_file(rerun, cache, tmp_path, capsys):
    params = tmp_path / "params.yaml"
    assert main(["run", "--config", str(COMMITTED), "--feature-cache", cache, "--write-params", str(params)]) == 0
    assert capsys.readouterr().out.strip() == str(params)
    written = yaml.safe_load(params.read_text())
    assert written["out"] is None and written["resume"] is False
    assert ExperimentConfig.from_dict(written) == ExperimentConfig.from_dict({**read_run_config(COMMITTED)[0],
                                                                               "feature_cache": cache})
    out = tmp_path / "by-papermill"
    command = (f"{BIN / 'jupytext'} --to ipynb -o - {REPO / 'book' / 'experiment.md'} | {BIN / 'papermill'} - "
               f"{tmp_path / 'out.ipynb'} -f {params} -p out {out} --log-level ERROR")
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()), "MPLBACKEND": "Agg"}
    done = subprocess.run(["bash", "-o", "pipefail", "-c", command], env=env, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert first_difference(rerun, out) is None  # the same machine: bit for bit the CLI's re-run
    assert_reproduces(COMMITTED, out)


def test_every_committed_run_configuration_is_read_as_options_without_where_it_was_written():
    files = sorted((REPO / "results").glob("**/config.json"))
    assert len(files) > 100
    for file in files:
        options, recorded = read_run_config(file)
        assert not set(options) & set(NOT_RERUN) and recorded["versions"]
        config = ExperimentConfig.from_dict(options)
        assert config.out is None and config.resume is False and config.seed == recorded["seed"]


# ---------------------------------------------------------------- refusals
def refusal(argv: list[str], capsys) -> str:
    """The error a refused `node-transfer run` prints (exit status 2, as for every bad parameter)."""
    assert main(["run", *argv]) == 2
    return capsys.readouterr().err


def test_a_file_that_is_not_a_run_configuration_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = refusal(["--config", str(COMMITTED / "metrics.json")], capsys)
    assert "invalid parameter config=" in err
    assert "is not a run configuration (it lacks dataset, backbone, head, seed, versions)" in err
    err = refusal(["--config", str(COMMITTED / "history.csv")], capsys)
    assert "is not readable JSON" in err
    (tmp_path / "list.json").write_text("[1, 2]")
    assert "holds a JSON list, not a run configuration" in refusal(["--config", "list.json"], capsys)
    assert "does not exist" in refusal(["--config", "no/such/config.json"], capsys)
    assert not (tmp_path / "runs").exists()  # nothing was started


def test_fields_this_version_lacks_are_refused_and_listed(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    newer = {**read_json(COMMITTED / "config.json"), "ema_decay": 0.999, "mixup_alpha": 0.2}
    newer["versions"] = {**newer["versions"], "node_transfer": "0.9.0"}
    (tmp_path / "config.json").write_text(json.dumps(newer))
    err = refusal(["--config", str(tmp_path / "config.json")], capsys)
    assert "written by node-transfer 0.9.0" in err and "names field(s) this version lacks: ema_decay, mixup_alpha" \
        in err
    assert not (tmp_path / "runs").exists()


def test_a_recorded_value_this_machine_cannot_run_names_the_option_that_overrides_it(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    on_gpu = {**read_json(COMMITTED / "config.json"), "device": "cuda", "device_resolved": "cuda:0"}
    (tmp_path / "config.json").write_text(json.dumps(on_gpu))
    err = refusal(["--config", str(tmp_path / "config.json")], capsys)
    assert "invalid parameter device='cuda'" in err and "config.json records; give --device to override it" in err
    assert not (tmp_path / "runs").exists()


def test_a_rerun_never_writes_into_an_existing_run_nor_resumes(tmp_path, capsys):
    before = {path.name: path.read_bytes() for path in COMMITTED.iterdir()}
    err = refusal(["--config", str(COMMITTED), "--out", str(COMMITTED)], capsys)
    assert "invalid parameter out=" in err and "a directory that does not exist yet" in err
    assert {path.name: path.read_bytes() for path in COMMITTED.iterdir()} == before
    err = refusal(["--config", str(COMMITTED), "--out", str(tmp_path / "new"), "--resume"], capsys)
    assert "invalid parameter resume=True: expected False with --config" in err


def test_where_this_machine_differs_from_the_recorded_run_is_noted(tmp_path, capsys):
    older = read_json(COMMITTED / "config.json")
    older["versions"] = {**older["versions"], "torch": "2.9.0", **cpu_description()}
    older["torch_threads"] = torch.get_num_threads() + 1
    older["device_resolved"] = "cuda:0"  # its device option was `auto`, on a machine with a GPU
    (tmp_path / "config.json").write_text(json.dumps(older))
    params = tmp_path / "params.yaml"
    argv = ["run", "--config", str(tmp_path / "config.json"), "--device", "cpu", "--write-params", str(params)]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert f"torch {torch.__version__} here, 2.9.0 in the run" in err and "torch threads" in err
    assert "device cpu here, cuda:0 in the run" in err
    assert f"cpu {cpu_description()['cpu']} here" not in err  # the same CPU model: not a difference
