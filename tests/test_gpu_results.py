"""The device check's committed speed report, read for the performance chapter."""

import json

import pytest

from node_transfer.pages.gpu_results import SPEED_REPORT, gpu_facts, gpu_loader, gpu_steps
from node_transfer.suites.notebooks import results_dir


def test_without_a_gpu_report_the_chapter_gets_an_empty_table_and_says_so(tmp_path):
    assert gpu_steps(tmp_path).empty and gpu_loader(tmp_path).empty
    assert gpu_facts(tmp_path) == {"gpu_measured": False}


def test_facts_are_read_from_the_rows_of_the_committed_report():
    steps, facts = gpu_steps(results_dir()), gpu_facts(results_dir())
    assert facts["gpu_measured"] and facts["gpu_name"].startswith("NVIDIA")
    lite = steps[(steps["backbone"] == "tf_efficientnet_lite0") & (steps["step"] == "fine-tune")].set_index(
        ["px", "head"])
    assert facts["gpu_fc_ms_224"] == lite.loc[(224, "fc"), "ms"]
    assert facts["gpu_node_32"] == pytest.approx(lite.loc[(32, "node"), "ms"] / lite.loc[(32, "fc"), "ms"], abs=0.01)
    assert facts["gpu_adjoint_224"] == lite.loc[(224, "node-adjoint"), "node_over_fc"]
    assert 1 < facts["gpu_head_only_low"] <= facts["gpu_head_only_high"]
    assert (steps.groupby(["backbone", "px", "step"])["head"].apply(set) == {"fc", "node", "node-adjoint"}).all()


def test_a_report_without_the_b0_section_leaves_b0_out(tmp_path):
    report = json.loads((results_dir() / SPEED_REPORT).read_text())
    report["sections"] = [s for s in report["sections"] if s["name"] != "b0"]
    (tmp_path / SPEED_REPORT).parent.mkdir(parents=True)
    (tmp_path / SPEED_REPORT).write_text(json.dumps(report))
    steps, facts = gpu_steps(tmp_path), gpu_facts(tmp_path)
    assert set(steps["backbone"]) == {"tf_efficientnet_lite0"} and facts["gpu_name"] == "a GPU"
    assert facts["gpu_b0_low"] != facts["gpu_b0_low"]  # NaN: not measured
