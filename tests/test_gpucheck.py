"""The device check's CPU side: its arguments, the exit without CUDA, its report, the section runner (with fake
sections that pass, fail, raise, hang and crash), the carried Fashion-MNIST subset and its command lines."""

import argparse
import importlib
import json
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from node_transfer.app.cli import build_parser, config_options
from node_transfer.core.config import ExperimentConfig
from node_transfer.gpucheck import driver as gpucheck
from node_transfer.gpucheck.driver import SECTIONS, Section, main, run_check
from node_transfer.gpucheck.report import Findings, Report, markdown_table
from node_transfer.gpucheck.sections import HEAD_PATHS, Observer, check_config, cli_arguments
from node_transfer.gpucheck.speed import timed_rounds

TESTS = Path(__file__).resolve().parent


def test_without_cuda_it_stops_at_once_with_exit_2_and_says_what_it_needs(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["run", "--out", str(tmp_path / "report")]) == 2
    message = capsys.readouterr().err
    assert "needs a CUDA GPU" in message and "--device cpu" in message
    assert not (tmp_path / "report").exists()  # nothing written


@pytest.mark.parametrize("arguments, named", [
    (["--budget", "0"], "--budget 0"),
    (["--only", "heads", "speed"], "--only speed: one of ['environment', 'heads'"),
    (["--carry", "no-such-folder"], "--carry no-such-folder"),
])
def test_bad_arguments_are_refused_naming_the_argument_and_what_is_valid(tmp_path, capsys, arguments, named):
    assert main(["run", "--out", str(tmp_path / "out"), *arguments]) == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_folder_holding_a_report_is_not_overwritten(tmp_path, capsys):
    (tmp_path / "report.md").write_text("an earlier report")
    assert main(["run", "--out", str(tmp_path)]) == 2
    assert "holds one already" in capsys.readouterr().err
    assert (tmp_path / "report.md").read_text() == "an earlier report"


def test_out_is_required(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["run"])
    assert stopped.value.code == 2 and "--out" in capsys.readouterr().err


def test_findings_are_saved_after_every_change_and_a_guard_keeps_the_section_going(tmp_path):
    path = tmp_path / "findings.json"
    findings = Findings(path)
    findings.fact("GPU", "a GPU")
    assert json.loads(path.read_text())["facts"] == {"GPU": "a GPU"}
    with findings.guard("a part"):
        raise ValueError("broke here")
    findings.check("the next part", True)
    findings.row("steps", ms=1.5, ratio=float("inf"))
    saved = Findings.load(path)
    assert [(c["check"], c["ok"]) for c in saved["checks"]] == [("a part", False), ("the next part", True)]
    assert "ValueError: broke here" in saved["checks"][0]["detail"] and "Traceback" in saved["notes"][0]
    assert saved["tables"]["steps"] == [{"ms": 1.5, "ratio": "inf"}]
    (tmp_path / "broken.json").write_text('{"facts": ')
    assert Findings.load(tmp_path / "broken.json") is None and Findings.load(tmp_path / "absent.json") is None


def test_the_report_grows_section_by_section_and_ends_with_a_summary(tmp_path):
    report = Report(tmp_path, {"device": "cuda", "budget": "420 s"})
    found = {"facts": {"GPU": "H200"}, "checks": [{"check": "bf16", "ok": True, "detail": ""}],
             "tables": {"steps": [{"head": "fc", "ms": 12.345678}, {"head": "node", "ratio": 1.2}]},
             "notes": ["a note"], "error": None}
    report.add("environment", "the machine", "ok", 3.21, found)
    markdown = (tmp_path / "report.md").read_text()
    assert "## environment: the machine" in markdown and "- GPU: H200" in markdown and "| fc | 12.35 |" in markdown
    report.add("heads", "the heads", "timeout", 150.0, None, log_tail="last line of its log")
    summary = report.finish()
    data = json.loads((tmp_path / "report.json").read_text())
    assert [(s["name"], s["status"]) for s in data["sections"]] == [("environment", "ok"), ("heads", "timeout")]
    assert data["sections"][1]["log_tail"] == "last line of its log" and data["finished"]
    assert "| heads | timeout | 150 | 0/0 |" in summary and summary in (tmp_path / "report.md").read_text()


def test_markdown_tables_escape_pipes_and_take_every_column():
    table = markdown_table([{"a": "x|y"}, {"b": None, "a": 1}])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| x\\|y |  |", "| 1 |  |"]


def fake(name: str, function: str, budget: float = 30) -> Section:
    return Section(name, f"gpucheck_fakes:{function}", budget, f"fake: {function}")


def test_the_section_runner_records_each_outcome_and_goes_on(tmp_path, monkeypatch, capsys):
    """Each section in its own process: a pass, a guarded part that fails, an exception, a hang stopped at its
    budget (what it found before is kept), a crash; the check goes on after each."""
    monkeypatch.setenv("PYTHONPATH", str(TESTS))  # the child processes import the fakes from tests/
    monkeypatch.setattr(gpucheck, "MIN_SECTION_SECONDS", 1.0)
    monkeypatch.setattr(gpucheck, "STOP_GRACE_SECONDS", 1.0)
    sections = (fake("pass", "passes"), fake("guard", "guards_a_part"), fake("raise", "raises"),
                fake("hang", "hangs", budget=4), fake("crash", "crashes"))
    args = argparse.Namespace(out=str(tmp_path / "out"), carry=None, work=str(tmp_path / "work"), budget=60.0,
                              device="cpu")
    assert run_check(args, sections) == 1
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    status = {s["name"]: s for s in data["sections"]}
    assert {name: s["status"] for name, s in status.items()} == {
        "pass": "ok", "guard": "problems", "raise": "error", "hang": "timeout", "crash": "crashed (exit code 3)"}
    assert status["pass"]["facts"]["device"] == "cpu" and status["pass"]["tables"]["table"] == [{"a": 1, "b": "nan"}]
    assert status["guard"]["checks"][-1] == {"check": "second part", "ok": True, "detail": ""}
    assert "RuntimeError: the section broke" in status["raise"]["error"]
    assert status["hang"]["facts"]["found before hanging"] == 42 and 4 <= status["hang"]["seconds"] < 30
    assert status["crash"]["facts"]["found before crashing"] is True
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert markdown.index("## pass") < markdown.index("## crash") < markdown.index("## Summary")
    log = (tmp_path / "out" / "sections.log").read_text()
    assert "===== pass" in log and "ok   one and one: two" in log
    assert "[pass] ok   one and one: two" in capsys.readouterr().out  # progress, live


def test_a_section_is_skipped_when_the_budget_is_spent(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    args = argparse.Namespace(out=str(tmp_path / "out"), carry=None, work=str(tmp_path / "work"), budget=5.0,
                              device="cpu")
    assert run_check(args, (fake("late", "passes"),)) == 1  # 5 s left: under MIN_SECTION_SECONDS
    section = json.loads((tmp_path / "out" / "report.json").read_text())["sections"][0]
    assert section["status"] == "skipped" and "budget left" in section["notes"][0]


def test_the_check_runs_what_the_command_line_runs():
    """The options the check passes to `node-transfer run` give back the configuration it meant."""
    context = gpucheck.Context("cuda", "/tmp/work", "/tmp/data", {})
    for label, changes in HEAD_PATHS:
        config = check_config(context, label, changes)
        args = build_parser().parse_args(["run", *cli_arguments(config)])
        assert ExperimentConfig.from_dict(config_options(args)) == ExperimentConfig.from_dict(config)
        assert config["device"] == "cuda" and config["batch_size"] == 128 and config.get("amp", True) is True


class _Images:
    """What `TensorBatches` reads of an `ImageTensors` split: images, labels and a transform without augmentation."""

    def __init__(self, count: int) -> None:
        self.images, self.labels = torch.randn(count, 3, 4, 4), torch.zeros(count, dtype=torch.int64)
        self.transform = type("NoAugmentation", (), {"augment": "none", "__call__": lambda self, x, g=None: x})()

    def __len__(self) -> int:
        return len(self.labels)


def test_the_observer_sees_dtypes_memory_format_and_loader_batches():
    """Backbone (timm) weights are checked for channels_last, the package's heads' are not; batches are seen from
    torch's DataLoader and from `TensorBatches`, not from the DataLoader of positions inside it."""
    from timm.layers import Conv2dSame

    from node_transfer.model.heads import build_head
    from node_transfer.model.tensor_images import TensorBatches

    head = build_head("node", 8, 3, ode_width=4, rtol=1e-3, atol=1e-3)
    backbone_conv = Conv2dSame(3, 8, 3).to(memory_format=torch.channels_last)
    head_conv = torch.nn.Conv2d(3, 8, 3)  # NCHW, as a map head's convolutions stay
    loader = DataLoader(TensorDataset(torch.randn(6, 8), torch.zeros(6)), batch_size=4)
    batches = TensorBatches(_Images(5), 2, shuffle=False, sampler=None, generator=None, pin_memory=False)
    original = DataLoader.__iter__, TensorBatches.__iter__
    with Observer() as seen:
        for features, _ in loader:
            head(features)
        for images, _ in batches:
            backbone_conv(images)
            head_conv(images)
    assert (DataLoader.__iter__, TensorBatches.__iter__) == original
    assert seen.dtypes["ode_state"] == {"float32"} and seen.dtypes["head_input"] == {"float32"}
    assert seen.all_channels_last() and len(seen.channels_last) == 1
    assert seen.loaders == [{"loader": "DataLoader", "pin_memory": False, "workers": 0, "pinned": False,
                             "shape": (4, 8)},
                            {"loader": "TensorBatches", "pin_memory": False, "workers": 0, "pinned": False,
                             "shape": (2, 3, 4, 4)}]


def test_timed_rounds_alternate_the_order_and_take_medians():
    order = []
    steps = {"a": lambda: order.append("a"), "b": lambda: order.append("b")}
    seconds = timed_rounds(steps, lambda: None, rounds=3, per_round=2)
    assert order == ["a", "a", "b", "b", "b", "b", "a", "a", "a", "a", "b", "b"]
    assert set(seconds) == {"a", "b"} and all(value >= 0 for value in seconds.values())


def test_every_section_names_a_function_that_exists():
    """A Section's "module:function" is resolved only in the section's own process: a moved or renamed module
    would fail there, at the GPU, so each target is resolved here."""
    for section in SECTIONS:
        module, function = section.target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), section.target
