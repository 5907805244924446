"""Committed benchmark results: loaded into an overview, and every number the performance page states."""

import json
import re

import pandas as pd
import pytest

from node_transfer.suites.notebooks import book_dir


def test_bench_results_load_into_an_overview(tmp_path):
    from node_transfer.pages.bench_results import bench_overview, load_bench

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
    from node_transfer.pages.bench_results import DEFAULT_HEAD, at_paper_size, load_bench, performance_facts
    from node_transfer.pages.gpu_results import gpu_facts
    from node_transfer.suites.notebooks import results_dir

    tables, summary = load_bench(results_dir() / "bench")
    facts = {**performance_facts(tables, summary), **gpu_facts(results_dir())}
    page = (book_dir() / "performance.md").read_text()
    named = set(re.findall(r"\{glue:text\}`(\w+)", page))
    glued_on_page = set(re.findall(r'"(\w+)": ', page.split("## GPU plan", 1)[1]))  # the page's own arithmetic
    assert named - glued_on_page <= set(facts) and named & set(facts)
    # one loop over each facts function (CPU benchmarks, the GPU check) and the GPU plan's; no hard-coded labels
    assert page.count("glue(") - page.count('glue("fig_') == 3 and DEFAULT_HEAD not in page
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
