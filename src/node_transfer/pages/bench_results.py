"""The committed benchmark results (`results/bench/`, written by the scripts in `bench/`) and the numbers the
performance chapter states from them, computed here so that the page only loads, shows and glues."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from ..model.heads import build_head, count_parameters
from .epoch_cost import arm_cost_facts

# The head variants the benchmarks time, by the labels their tables carry (bench/head_cost.py and
# bench/cached_features.py use these names).
DEFAULT_HEAD = "node w256 (default)"
ADJOINT_HEAD = "node w256 adjoint"
SEMINORM_HEAD = "node w256 adjoint+seminorm"
NARROW_HEAD = "node w64"
LOOSE_HEAD = "node w64 tol 1e-3"
BENCH_IMAGE_SIZE = 64  # the book's CPU profile
PAPER_IMAGE_SIZE = 224  # EfficientNet's own resolution


def load_bench(directory: str | Path) -> tuple[dict[str, pd.DataFrame], dict[str, dict]]:
    """The tables (NAME.csv) and summaries (NAME.json) that the bench/ scripts wrote into `directory`."""
    directory = Path(directory)
    tables = {path.stem: pd.read_csv(path) for path in sorted(directory.glob("*.csv"))}
    summaries = {path.stem: json.loads(path.read_text()) for path in sorted(directory.glob("*.json"))}
    if not summaries:
        raise FileNotFoundError(f"no benchmark results under {directory}: run `make bench` first")
    return tables, summaries


def bench_overview(summaries: dict[str, dict]) -> pd.DataFrame:
    """One row per benchmark: its headline number against its target, run time and the machine's load."""
    return pd.DataFrame([{
        "benchmark": name, "measured": s["headline"], "value": s["value"], "target": s["target"], "met": s["pass"],
        "minutes": round(s["seconds"] / 60, 1), "load average at start": s["machine"]["load_average_at_start"][0],
        "load average at end": s["machine"]["load_average_at_end"][0]} for name, s in summaries.items()])


def dynamics_params() -> int:
    """Parameters of the default NODE head's dynamics (on EfficientNet's 1280 features, 10 classes)."""
    return count_parameters(build_head("node", 1280, 10).block.dynamics)


def dynamics_mflop(params: int | None = None) -> float:
    """MFLOP of one evaluation of the default head's dynamics per image (about two operations per weight)."""
    return 2 * (params if params is not None else dynamics_params()) / 1e6


def at_paper_size(ratio: float) -> float:
    """A head's cost ratio against the FC model at 224 px, estimated from 64 px: the backbone's part of a step
    grows with the pixel count, the head's does not."""
    return 1 + (ratio - 1) / (PAPER_IMAGE_SIZE / BENCH_IMAGE_SIZE) ** 2


def performance_facts(tables: dict[str, pd.DataFrame], summary: dict[str, dict]) -> dict[str, Any]:
    """Every number the performance chapter writes in its prose, by the name it glues it under."""
    params = dynamics_params()
    return {**_overview(summary), **_head_cost(tables, summary["head_cost"], params),
            **_cached(tables["cached_features"], summary["cached_features"]),
            **_tolerance(tables["tolerance"], summary["tolerance"]),
            **_memory(tables["memory"], summary["memory"], params),
            **_loop(tables["loop_overhead"], summary["loop_overhead"]), **_settings(tables["loop_overhead-settings"]),
            **_feature_cache(tables["feature_cache"], summary["feature_cache"]),
            **_allocator(tables["allocator"], summary["allocator"]),
            **_node_step(tables["node_step"], summary["node_step"]),
            **_node_compile(tables["node_compile"], summary["node_compile"]),
            **_lean_equivalence(summary["lean_equivalence"]),
            **arm_cost_facts(tables["arm_cost"], tables["arm_cost-ratios"], tables["arm_cost-rounds"],
                             summary["arm_cost"])}


def _verdict(passed: bool) -> str:
    return "meets" if passed else "misses"


def _overview(summary: dict[str, dict]) -> dict[str, Any]:
    overview = bench_overview(summary)
    return {"bench_count": len(overview), "bench_minutes": float(overview["minutes"].sum()),
            "load_max": float(overview[["load average at start", "load average at end"]].max().max())}


def _head_cost(tables: dict[str, pd.DataFrame], hc: dict[str, Any], params: int) -> dict[str, Any]:
    by_head = tables["head_cost"].set_index("head")
    accuracy = tables["head_cost-accuracy"]
    return {
        "hc_default": hc["default_ratio"], "hc_best": hc["value"], "hc_best_head": hc["recommended"],
        "hc_target": hc["target"], "hc_verdict": _verdict(hc["pass"]), "hc_adjoint": hc["adjoint_ratio"],
        "hc_seminorm": hc["adjoint_seminorm_ratio"], "hc_best_acc": hc["recommended_test_acc"] * 100,
        "hc_default_acc": hc["default_test_acc"] * 100,
        "hc_nfe_default": float(by_head.loc[DEFAULT_HEAD, "nfe_forward"]),
        "hc_nfe_loose": float(by_head.loc[LOOSE_HEAD, "nfe_forward"]), "hc_dyn_mflop": dynamics_mflop(params),
        "hc_224_default": at_paper_size(float(by_head.loc[DEFAULT_HEAD, "ratio_vs_fc"])),
        "hc_224_adjoint": at_paper_size(float(by_head.loc[ADJOINT_HEAD, "ratio_vs_fc"])),
        "hc_std_low": float(accuracy["test_acc_std"].min() * 100),
        "hc_std_high": float(accuracy["test_acc_std"].max() * 100),
    }


def _cached(cached: pd.DataFrame, cf: dict[str, Any]) -> dict[str, Any]:
    by_head = cached.set_index("head")
    default = by_head.loc[DEFAULT_HEAD]
    batches = default["images"] / cf["setting"]["batch_size"]
    return {
        "cf_node": cf["value"], "cf_fc": cf["speedup_by_head"]["fc"], "cf_target": cf["target"],
        "cf_node_cached_s": float(default["epoch_s_cached"]), "cf_node_needed_s": float(default["cached_s_for_target"]),
        "cf_bb_s": float(by_head.loc["fc", "epoch_s_backbone"] - by_head.loc["fc", "epoch_s_cached"]),
        "cf_224_default": cf["speedup_at_224px_est"][DEFAULT_HEAD],
        "cf_224_w64": cf["speedup_at_224px_est"][NARROW_HEAD],
        "cf_step_ms": float(default["cached_s_for_target"] / batches * 1000),
        "cf_break_even_fc": float(by_head.loc["fc", "break_even_epochs"]),
        "cf_break_even_node": float(default["break_even_epochs"]),
    }


def _tolerance(tol: pd.DataFrame, tl: dict[str, Any]) -> dict[str, Any]:
    acc_range = (tol["test_acc"].max() - tol["test_acc"].min()) * 100
    return {
        "tol_loosest": tl["value"], "tol_time_ratio": tl["time_ratio_vs_1e5"],
        "tol_span": tl["tightest_over_loosest_time"],
        "tol_acc_range": "identical at every tolerance" if acc_range == 0 else f"within {acc_range:.1f} points",
        "tol_adjoint_factor": float((tol["s_per_batch_adjoint"] / tol["s_per_batch_direct"]).median()),
    }


def _memory(mem: pd.DataFrame, mm: dict[str, Any], params: int) -> dict[str, Any]:
    cross = mm["adjoint_saves_memory_from_nfe"]
    dopri = mem[mem["solver"] == "dopri5"].pivot(index="tol", columns="mode", values="peak_mb")
    return {
        "mem_change": mm["value"] * 100, "mem_all": mm["adjoint_max_over_min_minus_1_including_one_step"] * 100,
        "mem_direct": mm["direct_growth_factor"], "mem_verdict": _verdict(mm["pass"]),
        "mem_per_nfe": mm["direct_saved_mb_per_nfe"], "mem_steps": int(mem["rk4_steps"].max()),
        "mem_cross": f"from {cross} evaluations on" if cross else "at none of the NFE tried",
        "mem_dopri": "it never does" if (dopri["direct"] <= dopri["adjoint"]).all() else "it sometimes does",
        "mem_adj_rk4": mm["adjoint_peak_mb_rk4_multistep"], "mem_adj_dopri": mm["adjoint_peak_mb_dopri5"],
        "mem_params": params,
    }


def _loop(table: pd.DataFrame, lo: dict[str, Any]) -> dict[str, Any]:
    by_loop = table.set_index("loop")
    step_flops = lo["mflop_per_image_step"] * 1e6
    fast, old, bare = (float(by_loop.loc[name, "images_per_s"]) for name in ("trainer (fast)", "trainer (old)",
                                                                             "bare channels_last"))
    return {"loop_vs_old": lo["value"], "loop_vs_bare": lo["fast_vs_bare"], "loop_target": lo["target"],
            "loop_verdict": _verdict(lo["pass"]), "loop_old_vs_bare": lo["old_vs_bare"],
            "loop_eval_vs_old": lo["evaluate_fast_vs_old"], "loop_cpu_vs_old": lo["cpu_time_fast_vs_old"],
            "loop_cpu_vs_bare": lo["cpu_time_fast_vs_bare"], "loop_fast_ips": fast, "loop_old_ips": old,
            "loop_bare_ips": bare, "loop_mflop_forward": lo["mflop_per_image_forward"],
            "loop_mflop_step": lo["mflop_per_image_step"], "loop_peak_gflops": lo["matmul_peak_gflop_per_s"],
            "loop_ceiling_ips": lo["matmul_peak_gflop_per_s"] * 1e9 / step_flops,
            "loop_fast_peak_pct": fast * step_flops / (lo["matmul_peak_gflop_per_s"] * 1e9) * 100,
            "loop_bare_peak_pct": bare * step_flops / (lo["matmul_peak_gflop_per_s"] * 1e9) * 100,
            "loop_images": lo["setting"]["images"], "loop_cpu": lo["machine"].get("cpu", "unknown"),
            "loop_cpu_capability": lo["machine"].get("cpu_capability", "unknown")}


def _settings(table: pd.DataFrame) -> dict[str, Any]:
    """One training step under the settings tried, against channels_last (bench/loop_overhead.py)."""
    vs = table.set_index("setting")["vs_channels_last"]
    return {"set_channels_last_gain": float(1 / vs["NCHW (contiguous)"]),
            "set_denormals": float(vs["channels_last, denormals flushed"]),
            "set_no_onednn_slower": float(1 / vs["channels_last, oneDNN off"]),
            "set_bf16": float(vs["channels_last, bf16 autocast"])}


def _feature_cache(table: pd.DataFrame, fc: dict[str, Any]) -> dict[str, Any]:
    seconds = table.set_index("path")["seconds"]
    return {"fc_cache_ratio": fc["value"], "fc_cache_target": fc["target"], "fc_cache_verdict": _verdict(fc["pass"]),
            "fc_cache_vs_bare": fc["fast_vs_bare"], "fc_cache_old_vs_bare": fc["old_vs_bare"],
            "fc_cache_cpu_ratio": fc["cpu_time_ratio_vs_old"], "fc_cache_images": fc["setting"]["images"],
            "fc_cache_old_s": float(seconds["package (old)"]), "fc_cache_fast_s": float(seconds["package (fast)"]),
            "fc_cache_reload_s": fc["reload_seconds"], "fc_cache_mb": fc["cache_file_mb"],
            "fc_cache_identical": "bit for bit the same" if fc["features_identical_to_bare"] else "not the same"}


def _allocator(table: pd.DataFrame, al: dict[str, Any]) -> dict[str, Any]:
    by_workload = table.set_index("workload")
    return {"alloc_elementwise": float(by_workload.loc["elementwise", "speedup"]),
            "alloc_node": float(by_workload.loc["node head step", "speedup"]),
            "alloc_finetune": float(by_workload.loc["fine-tune step", "speedup"]),
            "alloc_node_ms": float(by_workload.loc["node head step", "ms_keep_freed_memory"]),
            "alloc_target": al["target"], "alloc_verdict": _verdict(al["pass"]),
            "alloc_same": "the same" if by_workload["same_result"].all() else "not the same"}


def _node_step(table: pd.DataFrame, ns: dict[str, Any]) -> dict[str, Any]:
    def arm(backend: str, gradients: str, batch: int) -> pd.Series:
        rows = table[(table["backend"] == backend) & (table["gradients"] == gradients) & (table["batch"] == batch)]
        return rows.iloc[0]

    facts: dict[str, Any] = {"ns_worst": ns["value"], "ns_target": ns["target"], "ns_verdict": _verdict(ns["pass"]),
                             "ns_worst_case": ns["worst_case"],
                             "ns_nfe": int(arm("lean", "backprop", 128)["nfe_forward"])}
    for backend in ("lean", "torchdiffeq", "torchode"):
        for gradients in ("backprop", "adjoint"):
            for batch in (128, 256):
                row, key = arm(backend, gradients, batch), f"ns_{backend}_{gradients}_{batch}"
                facts[key] = float(row["ratio"])
                facts[f"{key}_strict"] = float(row["ratio_strict"])
                facts[f"{key}_cpu"] = float(row["ratio_cpu"])
                facts[f"{key}_ms"] = float(row["ms_per_step"])
    lean = table[table["backend"] == "lean"]
    facts["ns_lean_wall_worst"] = float(lean["ratio"].max())
    facts["ns_lean_strict_worst"] = float(lean["ratio_strict_cpu"].max())
    facts["ns_eval_ms"] = float(arm("lean", "backprop", 128)["eval_ms"])
    speedups = ns["speedup_over_torchdiffeq"]
    facts["ns_speedup_low"], facts["ns_speedup_high"] = min(speedups.values()), max(speedups.values())
    return facts


def _node_compile(table: pd.DataFrame, nc: dict[str, Any]) -> dict[str, Any]:
    ran = table[table["ms_per_step"].notna()]
    compiled = ran[ran["mode"] != "eager"]
    dynamics, heads = (ran[ran["mode"] == mode]["compile_s"] for mode in ("compile dynamics", "compile head"))
    traced_heads = ran[(ran["mode"] == "compile head") & (ran["backend"] != "lean")]["compile_s"]

    def vs_eager(width: int, backend: str, mode: str) -> float:
        rows = ran[(ran["width"] == width) & (ran["backend"] == backend) & (ran["mode"] == mode)]
        return float(rows["vs_eager"].iloc[0]) if len(rows) else float("nan")

    facts: dict[str, Any] = {"nc_value": nc["value"], "nc_verdict": _verdict(nc["pass"]),
                             "nc_fastest_eager": nc["fastest_eager"], "nc_fastest_compiled": nc["fastest_compiled"],
                             "nc_dyn_compile_low": float(dynamics.min()), "nc_dyn_compile_high": float(dynamics.max()),
                             "nc_head_compile_low": float(traced_heads.min()),
                             "nc_head_compile_high": float(traced_heads.max()),
                             "nc_lean_head_compile": float(heads[ran["backend"] == "lean"].max()),
                             "nc_failed": ", ".join(sorted(nc["failed"])) or "none",
                             "nc_failed_reason": "; ".join(sorted(set(nc["failed"].values()))) or "none",
                             "nc_same_steps": "took the same steps as" if compiled["nfe_as_eager"].all()
                             else "did not all take the same steps as"}
    arms = [(backend, mode, short) for backend in ("lean", "torchdiffeq", "torchode")
            for mode, short in (("compile dynamics", "dyn"), ("compile head", "head"))] + [
        ("torchode", "torchscript solver", "ts")]
    for width in (64, 256):
        for backend, mode, short in arms:
            if ((table["width"] == width) & (table["backend"] == backend) & (table["mode"] == mode)).any():
                facts[f"nc_{backend}_{short}_{width}"] = vs_eager(width, backend, mode)
    return facts


def _lean_equivalence(le: dict[str, Any]) -> dict[str, Any]:
    speedups = le["epoch_speedup"].values()
    return {"le_nfe_gap": le["value"], "le_acc_gap": le["test_acc_gap_points"], "le_loss_gap": le["train_loss_gap"],
            "le_verdict": _verdict(le["pass"]), "le_target": le["target"], "le_speedup_low": min(speedups),
            "le_speedup_high": max(speedups), "le_committed_epochs": le["committed_epochs_compared"],
            "le_committed_nfe": "the same" if le["committed_nfe_equal"] else "not the same",
            "le_committed_gap": le["committed_train_loss_gap"]}


def page_facts(results: str | Path) -> dict[str, Any]:
    """Every name the performance chapter glues from its facts loops (`pages.PAGES`): the benchmarks' and the GPU
    check's."""
    from .gpu_results import gpu_facts

    tables, summary = load_bench(Path(results) / "bench")
    return {**performance_facts(tables, summary), **gpu_facts(results)}
