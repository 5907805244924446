"""Suites through real papermill, the parameters cell of the experiment page, reports and stability."""

import json
import re
import subprocess
import sys
import typing
from dataclasses import fields

import jupytext
import nbformat
import numpy as np
import pandas as pd
import pytest

from node_transfer.config import ExperimentConfig
from node_transfer.errors import ConfigError
from node_transfer.notebooks import book_dir, execute_page
from node_transfer.reporting import paper_tables, write_report
from node_transfer.suite_results import suite_scale
from node_transfer.suite_runner import plan, run_suite
from node_transfer.suites import SUITES, get_suite


def parameters_cell(notebook) -> str:
    return next(cell.source for cell in notebook.cells if "parameters" in cell.metadata.get("tags", []))


def test_experiment_page_parameters_are_exactly_the_run_options():
    notebook = jupytext.read(book_dir() / "experiment.md")
    namespace: dict = {}
    exec(parameters_cell(notebook), namespace)  # the cell is plain assignments
    names = [name for name in namespace if not name.startswith("__") and name not in ("Optional",)]
    assert names == ExperimentConfig.field_names()
    defaults = ExperimentConfig()
    for name in names:
        assert namespace[name] == getattr(defaults, name), name
    hints = typing.get_type_hints(ExperimentConfig)
    lines = {line.split(":")[0]: line for line in parameters_cell(notebook).splitlines()}
    for f in fields(ExperimentConfig):  # annotations and comments document the types for papermill --help
        assert f"{f.name}: " in lines[f.name], hints[f.name]
        if f.metadata.get("help"):  # the comment is the CLI's help text, so the two cannot drift apart
            assert lines[f.name].split("  # ", 1)[1].startswith(f.metadata["help"]), f.name


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
    out = run_suite("smoke", "cpu", seeds=2, out=tmp_path / "smoke", use_papermill=False, progress=False)
    finished = (out / "node-s1" / "metrics.json").read_bytes()
    (out / "node-s0" / "metrics.json").unlink()  # killed after its last checkpoint
    (out / "fc-s1" / "metrics.json").unlink()  # killed before any checkpoint
    (out / "fc-s1" / "last.pt").unlink()
    (out / "runs.csv").unlink()
    with pytest.raises(ConfigError, match="resume"):
        run_suite("smoke", "cpu", seeds=2, out=out, use_papermill=False)
    with pytest.raises(ConfigError, match="seeds"):  # fewer seeds would drop finished runs from suite.json
        run_suite("smoke", "cpu", seeds=1, out=out, use_papermill=False, resume=True)
    seconds_before = json.loads((out / "suite.json").read_text())["seconds"]
    run_suite("smoke", "cpu", seeds=2, out=out, use_papermill=False, progress=False, resume=True)
    assert json.loads((out / "suite.json").read_text())["seconds"] > seconds_before > 0  # time adds up
    runs = pd.read_csv(out / "runs.csv")
    assert sorted(runs["run_dir"]) == ["fc-s0", "fc-s1", "node-s0", "node-s1"]
    assert (out / "node-s1" / "metrics.json").read_bytes() == finished  # kept, not rerun
    assert (out / "fc-s1.partial-1" / "config.json").is_file()  # set aside, not deleted
    history = pd.read_csv(out / "node-s0" / "history.csv")
    assert list(history["epoch"]) == [1]  # resumed from last.pt: no epoch trained twice
    with pytest.raises(ConfigError, match="suite.json"):
        run_suite("smoke", "cpu", seeds=1, out=tmp_path / "elsewhere", use_papermill=False, resume=True)
    # more seeds extend the suite: a new seed of one configuration now, every earlier run kept
    run_suite("smoke", "cpu", seeds=3, out=out, use_papermill=False, progress=False, resume=True,
              labels=("fc",), only_seeds=(2,))
    meta = json.loads((out / "suite.json").read_text())
    assert meta["seeds"] == 3 and ("node", 2) in {(entry["label"], entry["seed"]) for entry in meta["runs"]}
    runs = pd.read_csv(out / "runs.csv")
    assert sorted(runs["run_dir"]) == ["fc-s0", "fc-s1", "fc-s2", "node-s0", "node-s1"]
    assert (out / "node-s1" / "metrics.json").read_bytes() == finished


def test_a_bad_parameter_fails_in_the_executed_notebook_with_a_clear_message(tmp_path):
    import papermill

    output = tmp_path / "bad.ipynb"
    with pytest.raises(papermill.PapermillExecutionError) as info:
        execute_page(book_dir() / "experiment.md", output, {"epochs": "3"}, cwd=tmp_path)
    assert "invalid parameter epochs='3'" in str(info.value)
    saved = output.read_text()
    assert "invalid parameter epochs='3'" in saved and not (tmp_path / "runs").exists()


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


def test_paper_suite_follows_the_paper_protocol():
    suite = {run.label: run for run in get_suite("paper", "gpu")}
    baseline, rk, adjoint = suite["baseline"], suite["rk"], suite["adjoint"]
    assert (baseline.params["head"], baseline.params["optimizer"], baseline.params["epochs"]) == ("fc", "adam", 200)
    assert rk.init_from == "baseline" and rk.params["solver"] == "dopri5" and rk.params["rtol"] == 1e-5
    assert rk.params["optimizer"] == "adam" and rk.params["epochs"] == 100
    assert adjoint.params["adjoint"] and adjoint.params["optimizer"] == "sgd" and adjoint.params["epochs"] == 160
    # torchdiffeq's odenet_mnist reading: tol 1e-3, SGD 0.1 with momentum, lr decays at 60/100/140 of 160
    assert (adjoint.params["rtol"], adjoint.params["atol"], adjoint.params["lr"]) == (1e-3, 1e-3, 0.1)
    assert adjoint.params["lr_milestones"] == "60,100,140" and adjoint.params["momentum"] == 0.9
    assert (suite["adjoint-libtol"].params["rtol"], suite["adjoint-libtol"].params["atol"]) == (1e-7, 1e-9)
    # the NODE arms and their controls stop at the baseline's own validation accuracy, not the paper's
    assert all(run.target_from == "baseline" for label, run in suite.items() if label != "baseline")
    assert "target_val_acc" not in rk.params
    assert baseline.params["backbone"] == "efficientnet_b0" and baseline.params["dataset"] == "cifar10"
    with pytest.raises(ConfigError, match="profile"):
        get_suite("paper", "tpu")


@pytest.mark.parametrize("profile", ["cpu", "gpu", "fmnist"])
def test_every_node_arm_has_its_controls_with_the_same_recipe(profile):
    suite = {run.label: run.params for run in get_suite("paper", profile)}
    recipe = ("optimizer", "lr", "momentum", "schedule", "lr_milestones", "epochs")
    for node, control in (("rk", "fc-adam"), ("rk", "mlp"), ("rk", "euler"), ("adjoint", "fc-sgd"),
                          ("adjoint", "node-sgd-backprop")):
        assert {k: suite[node].get(k) for k in recipe} == {k: suite[control].get(k) for k in recipe}, control
    assert suite["fc-adam"]["head"] == "fc" and suite["mlp"]["head"] == "mlp"
    assert (suite["euler"]["solver"], suite["euler"]["step_size"]) == ("euler", 1.0)
    assert suite["node-sgd-backprop"]["adjoint"] is False and suite["node-adam-adjoint"]["adjoint"] is True
    assert suite["node-adam-adjoint"]["optimizer"] == "adam"
    heads = {run.label: run.params for run in get_suite("heads", profile)}
    assert list(heads)[:5] == ["fc", "mlp", "euler", "node", "node-adjoint"]
    converged = heads.pop("fc-converged")  # the linear probe trained until its val loss stops falling
    assert converged["patience"] > 0 and converged["epochs"] > heads["fc"]["epochs"]
    assert {k: v for k, v in converged.items() if k not in ("epochs", "patience")} == {
        k: v for k, v in heads["fc"].items() if k != "epochs"}
    assert len({(p["lr"], p["epochs"], p["optimizer"], p["batch_size"]) for p in heads.values()}) == 1
    paired = {(p.get("train_subset"), p.get("ode_width")) for label, p in heads.items() if not label.endswith("-all")}
    assert len(paired) == 1  # the NODE heads and the controls they are compared with see the same data
    if profile == "fmnist":
        assert paired == {(20000, 64)} and "train_subset" not in heads["fc-all"]


@pytest.mark.parametrize("profile", ["cpu", "gpu", "fmnist"])
def test_overfit_suite_pairs_each_node_arm_with_matched_controls_over_long_windows(profile):
    suite = {run.label: run for run in get_suite("overfit", profile)}
    params = {label: run.params for label, run in suite.items()}
    recipe = ("optimizer", "lr", "momentum", "schedule", "lr_milestones", "epochs")
    for node, control in (("rk", "fc-adam"), ("rk", "mlp"), ("rk", "euler"), ("adjoint", "fc-sgd"),
                          ("rk-imagenet", "baseline")):
        assert {k: params[node].get(k) for k in recipe} == {k: params[control].get(k) for k in recipe}, control
    data = ("dataset", "train_subset", "val_size", "image_size", "augment", "batch_size", "backbone")
    assert len({tuple(p.get(k) for k in data) for p in params.values()}) == 1  # one data set, no augmentation
    assert all(p["augment"] is False and p.get("schedule", "none") != "cosine" for p in params.values())
    continued = [run for label, run in suite.items() if label not in ("baseline", "rk-imagenet")]
    assert all(run.init_from == "baseline" and run.target_from is None for run in continued)
    assert suite["rk-imagenet"].init_from is None and params["rk-imagenet"]["head"] == "node"
    if profile == "fmnist":  # the paper's shape: 5,000 training images, windows of 20 epochs or more
        assert params["baseline"]["train_subset"] == 5000 and params["baseline"]["epochs"] >= 60
        assert all(run.params["epochs"] >= 40 for run in continued)


@pytest.mark.parametrize("name", ["tolerance", "solvers", "beyond"])
def test_head_sweeps_compare_configurations_on_the_same_data_and_budget(name):
    sweep = [run.params for run in get_suite(name, "fmnist")]
    shared = ("train_subset", "batch_size", "epochs", "lr", "freeze_backbone", "cache_features")
    assert len({tuple(p.get(k) for k in shared) for p in sweep}) == 1  # only the head or its solver differs
    # Fashion-MNIST's sweeps are cut to 10,000 images x 10 epochs; digits keep every training image
    assert (sweep[0]["train_subset"], sweep[0]["epochs"], sweep[0]["batch_size"]) == (10000, 10, 256)
    assert "train_subset" not in get_suite(name, "cpu")[0].params


def test_runs_continued_from_the_baseline_stop_at_its_validation_accuracy(tmp_path, monkeypatch):
    from node_transfer import suite_runner

    seen = []
    monkeypatch.setattr("node_transfer.experiment.run_experiment",
                        lambda config, progress=True: seen.append((config.head, config.target_val_acc)))
    baseline = tmp_path / "s" / "baseline-s0"
    baseline.mkdir(parents=True)
    (baseline / "metrics.json").write_text(json.dumps({"val_acc": 0.875}))
    (baseline / "last.pt").touch()  # its checkpoints are here: nothing to rebuild
    (tmp_path / "s" / "suite.json").write_text(json.dumps({"suite": "paper", "profile": "fmnist", "seeds": 1,
                                                           "overrides": {}}))
    monkeypatch.setattr(suite_runner, "collect_runs", lambda out: pd.DataFrame())
    suite_runner.run_suite("paper", "fmnist", 1, tmp_path / "s", use_papermill=False, resume=True,
                           labels=("rk", "fc-adam"))
    assert seen == [("node", 0.875), ("fc", 0.875)]
    with pytest.raises(ConfigError, match="labels"):
        suite_runner.plan("paper", "fmnist", 1, tmp_path / "t", labels=("nope",))


def test_a_seed_with_runs_from_another_cpu_model_gets_no_new_runs(tmp_path, monkeypatch):
    from node_transfer import suite_runner

    monkeypatch.setattr("node_transfer.experiment.run_experiment", lambda config, progress=True: None)
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
        suite_runner.run_suite("paper", "fmnist", 2, suite, use_papermill=False, resume=True, labels=("rk",))
    assert not (suite / "rk-s0").exists() and not (suite / "rk-s1").exists()  # nothing ran, nothing written
    suite_runner.run_suite("paper", "fmnist", 2, suite, use_papermill=False, resume=True, labels=("rk",),
                           only_seeds=(1,))  # the seed made on this machine's CPU goes on


def test_step_milestones_scale_the_odenet_mnist_schedule():
    from node_transfer.suites import step_milestones

    assert step_milestones(160) == "60,100,140"
    assert step_milestones(8) == "3,5,7"
    assert step_milestones(3) == "1,2,3"


def test_paper_tables_report_seeds_as_mean_and_std():
    rows = []
    for label, acc in (("baseline", [0.80, 0.82]), ("rk", [0.81, 0.81])):
        for seed, a in enumerate(acc):
            rows.append(dict(label=label, seed=seed, group=label, head="fc" if label == "baseline" else "node",
                             solver="dopri5", adjoint=False, rtol=1e-5, atol=1e-5, optimizer="adam", lr=1e-3,
                             train_acc=a, val_acc=a, test_acc=a, epochs=3, seconds=10.0, seconds_per_epoch=3.3,
                             nfe_forward=20.0, nfe_backward=0.0, val_loss_rise=0.01 * (seed + 1), val_acc_drop=0.0,
                             train_loss_rise=0.0,
                             val_acc_worst_drop=0.0, test_nll=0.5, test_ece=0.02))
    tables = paper_tables(pd.DataFrame(rows))
    table1 = tables["Table I: accuracy"]
    assert table1.loc[0, "test %"] == "81.0 ± 1.4" and table1.loc[1, "test %"] == "81.0 ± 0.0"
    assert table1.loc[0, "paper train/val/test %"] == "98.7/84.5/81.0"
    assert tables["Table III: solver parameters"].loc[0, "solver"] == "–"
    assert tables["Table III: solver parameters"].loc[1, "relative tolerance"] == "1e-05"
    stability = tables["Stability"]
    assert stability.loc[0, "val-loss rise (95% CI)"] == "0.0150 ± 0.0635"  # t(0.975, 1) = 12.7
    assert stability.loc[0, "train-loss rise (95% CI)"] == "0.0000 ± 0.0000"
    assert stability.loc[1, "test ECE, %"] == "2.00 ± 0.00"


def test_sweep_table_and_cost_plot_show_each_configuration():
    from node_transfer.plots import plot_cost_accuracy
    from node_transfer.reporting import sweep_table

    rows = [dict(label=label, seed=seed, solver=solver, rtol=1e-5, step_size=step, test_acc=0.9 + 0.01 * seed,
                 val_acc=0.9, nfe_forward=nfe, nfe_backward=0.0, seconds_per_epoch=0.5, val_loss_rise=0.01)
            for label, solver, step, nfe in (("dopri5", "dopri5", np.nan, 20.0), ("rk4-h1", "rk4", 1.0, 4.0))
            for seed in range(2)]
    table = sweep_table(pd.DataFrame(rows)).set_index("configuration")
    assert table.loc["dopri5", "rtol"] == 1e-5 and table.loc["dopri5", "step"] == "adaptive"
    assert table.loc["rk4-h1", "rtol"] == "–" and table.loc["rk4-h1", "step"] == 1.0  # rtol does not act
    assert table.loc["rk4-h1", "test %"] == "90.5 ± 0.7" and table.loc["rk4-h1", "NFE fwd"] == "4.0 ± 0.0"
    fig = plot_cost_accuracy(pd.DataFrame(rows))
    ax = fig.axes[0]
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["dopri5", "rk4-h1"]
    assert ax.get_xscale() == "log" and "NFE" in ax.get_xlabel()


def test_strip_images_keeps_text_outputs(tmp_path):
    from node_transfer.notebooks import strip_images

    cell = nbformat.v4.new_code_cell("fig")
    cell.outputs = [nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=",
                                                                 "text/plain": "<Figure size 640x480>"})]
    path = tmp_path / "run.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), str(path))
    assert strip_images(path) == 1
    assert nbformat.read(str(path), as_version=4).cells[0].outputs[0]["data"] == {"text/plain": "<Figure size 640x480>"}


def test_book_scripts_hold_the_code_cells_of_every_notebook_page(tmp_path):
    from node_transfer.notebooks import book_scripts

    paths = book_scripts(tmp_path)
    pages = [page for page in sorted(book_dir().glob("*.md")) if "kernelspec" in jupytext.read(page).metadata]
    assert [path.stem for path in paths] == [page.stem for page in pages] and "experiment" in {p.stem for p in paths}
    script = (tmp_path / "experiment.py").read_text()
    assert "# %%" in script and "run_experiment(" in script  # code, as percent-format cells
    assert "{glue:text}" not in "".join(path.read_text() for path in paths)  # no prose


def test_bench_results_load_into_an_overview(tmp_path):
    from node_transfer.bench_results import bench_overview, load_bench

    with pytest.raises(FileNotFoundError, match="make bench"):
        load_bench(tmp_path)
    machine = {"load_average_at_start": [1.2, 1.0, 0.9], "load_average_at_end": [1.9, 1.1, 1.0]}
    (tmp_path / "memory.json").write_text(json.dumps({"headline": "adjoint peak growth", "value": 0.012,
                                                      "target": "<= 0.10", "pass": True, "seconds": 90,
                                                      "machine": machine}))
    pd.DataFrame({"nfe": [4, 8]}).to_csv(tmp_path / "memory.csv", index=False)
    tables, summaries = load_bench(tmp_path)
    assert list(tables["memory"]["nfe"]) == [4, 8]
    row = bench_overview(summaries).iloc[0]
    assert (row["benchmark"], row["met"], row["minutes"], row["load average at end"]) == ("memory", True, 1.5, 1.9)


def test_performance_facts_name_every_number_the_performance_page_states():
    from node_transfer.bench_results import DEFAULT_HEAD, at_paper_size, load_bench, performance_facts
    from node_transfer.notebooks import results_dir

    tables, summary = load_bench(results_dir() / "bench")
    facts = performance_facts(tables, summary)
    page = (book_dir() / "performance.md").read_text()
    named = set(re.findall(r"\{glue:text\}`(\w+)", page))
    glued_on_page = set(re.findall(r'"(\w+)": ', page.split("## GPU plan", 1)[1]))  # the page's own arithmetic
    assert named - glued_on_page <= set(facts) and named & set(facts)
    assert page.count("glue(") == 2 and DEFAULT_HEAD not in page  # one loop over the facts, no hard-coded labels
    head = tables["head_cost"].set_index("head")
    assert facts["hc_nfe_default"] == head.loc[DEFAULT_HEAD, "nfe_forward"]
    assert facts["hc_224_default"] == pytest.approx(1 + (head.loc[DEFAULT_HEAD, "ratio_vs_fc"] - 1) / 12.25)
    assert at_paper_size(1.0) == 1.0 and facts["hc_verdict"] in ("meets", "misses")
    loop = summary["loop_overhead"]  # the training loop against the old settings, the bare loop and the ceiling
    assert facts["loop_vs_old"] == loop["value"] and facts["loop_vs_bare"] == loop["fast_vs_bare"]
    ceiling = loop["matmul_peak_gflop_per_s"] * 1e3 / loop["mflop_per_image_step"]  # images/s at the matmul peak
    assert facts["loop_ceiling_ips"] == pytest.approx(ceiling)
    assert loop["settings"]["fast"] == {"memory_format": "channels_last", "data_path": "tensor"}
    for name in ("loop_overhead", "feature_cache", "arm_cost"):  # these record the CPU model and torch's kernels
        assert summary[name]["machine"]["cpu"] and summary[name]["machine"]["cpu_capability"]
    cost = summary["arm_cost"]  # every arm timed as a new run is configured today, the ratios from one session
    assert all(settings == {"memory_format": "channels_last", "data_path": "tensor", "ode_backend": "lean"}
               for settings in cost["settings"].values())
    assert facts["ac_rk_fc_adam"] == pytest.approx(cost["value"], abs=1e-3) and cost["value"] == \
        cost["ratios"]["paper: rk / fc-adam"]["cpu"]


def test_strict_reproduction_ignores_where_the_checkout_lives():
    """The committed notebooks must compare equal under nbval wherever CI clones the repository."""
    from nbval.plugin import get_sanitize_patterns

    repo = book_dir().parent
    patterns = get_sanitize_patterns((repo / "results" / "nbval-sanitize.cfg").read_text())
    assert patterns, "nbval-sanitize.cfg holds no regex/replace pair"

    def sanitize(text: str) -> str:
        for regex, replace in patterns:
            text = re.sub(regex, replace, text)
        return text

    warning = ("{root}/.venv/lib/python3.11/site-packages/tqdm/auto.py:21: TqdmWarning: IProgress not found. "
               "See https://ipywidgets.readthedocs.io/en/stable/user_install.html\n")
    roots = ["/work/main", "/tmp/fresh", "/check", "/srv/ci/node-transfer", "/home/runner/work/x"]
    assert len({sanitize(warning.format(root=root)) for root in roots}) == 1
    # URLs, relative paths and ratios are content, not machine paths: they stay.
    kept = "see https://example.org/a/b, results/bench/x.csv, 3/4 and val/test"
    assert sanitize(kept) == kept
