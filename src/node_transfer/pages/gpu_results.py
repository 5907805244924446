"""The device check's committed speed measurements (`results/gpu/`, written by `gpucheck`'s speed sections on a
lent GPU) as a table, and the numbers the performance chapter states from them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

GPU_RESULTS = Path("gpu")
SPEED_REPORT = GPU_RESULTS / "speed" / "report.json"  # the call that timed the steps (results/gpu/README.md)
ENVIRONMENT_REPORT = GPU_RESULTS / "report.json"  # the call that described the machine
SPEED_SECTIONS = ("throughput", "b0")
LITE0 = "tf_efficientnet_lite0"
STEP_COLUMNS = ["backbone", "px", "step", "head", "ms", "images_per_s", "node_over_fc", "nfe_forward", "nfe_backward",
                "step_memory_mb"]


def _sections(path: Path) -> dict[str, dict[str, Any]]:
    """A device-check report's sections by name (none where the report is not there)."""
    return {s["name"]: s for s in json.loads(path.read_text())["sections"]} if path.is_file() else {}


def _steps(sections: dict[str, dict[str, Any]]) -> pd.DataFrame:
    rows = [row for name in SPEED_SECTIONS if name in sections for row in sections[name]["tables"].get("steps", [])]
    return pd.DataFrame(rows, columns=STEP_COLUMNS)


def _loader(sections: dict[str, dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(sections.get("throughput", {}).get("tables", {}).get("data loader", []))


def gpu_steps(results: str | Path) -> pd.DataFrame:
    """One row per backbone, image size, step (fine-tune or head only) and head: milliseconds per step of a
    128-image batch and the ratio to the FC head in the same run; empty where no GPU has run the speed sections."""
    return _steps(_sections(Path(results) / SPEED_REPORT))


def gpu_loader(results: str | Path) -> pd.DataFrame:
    """Images per second the augmented training loader delivered on the GPU machine, per image size."""
    return _loader(_sections(Path(results) / SPEED_REPORT))


def gpu_facts(results: str | Path) -> dict[str, Any]:
    """What the chapter states: the GPU, the FC step's time and each NODE head's ratio to it with Lite0 at 32 and
    224 px, the head-only ratios, the loader's rate against the FC step's, and B0's ratios (random weights)."""
    results = Path(results)
    sections = _sections(results / SPEED_REPORT)
    steps = _steps(sections)
    if steps.empty:
        return {"gpu_measured": False}
    device = _sections(results / ENVIRONMENT_REPORT).get("environment", {}).get("facts", {}).get("GPU", "a GPU")

    def ratio(backbone: str, px: int, step: str, head: str, column: str = "node_over_fc") -> float:
        row = steps[(steps["backbone"] == backbone) & (steps["px"] == px) & (steps["step"] == step)
                    & (steps["head"] == head)]
        return float(row[column].iloc[0]) if len(row) else float("nan")

    lite_head_only = steps[(steps["backbone"] == LITE0) & (steps["step"] == "head only") & (steps["head"] != "fc")]
    b0 = steps[steps["backbone"].str.startswith("efficientnet_b0") & (steps["step"] == "fine-tune")
               & (steps["head"] != "fc")]
    loader = _loader(sections)
    loader_224 = float(loader.set_index("px")["images_per_s"].get(224, float("nan"))) if len(loader) else float("nan")
    return {"gpu_measured": True, "gpu_name": device.split(",")[0],
            **{f"gpu_fc_ms_{px}": ratio(LITE0, px, "fine-tune", "fc", "ms") for px in (32, 224)},
            **{f"gpu_{name}_{px}": ratio(LITE0, px, "fine-tune", head) for px in (32, 224)
               for name, head in (("node", "node"), ("adjoint", "node-adjoint"))},
            "gpu_head_only_low": float(lite_head_only["node_over_fc"].min()),
            "gpu_head_only_high": float(lite_head_only["node_over_fc"].max()),
            "gpu_fc_images_224": ratio(LITE0, 224, "fine-tune", "fc", "images_per_s"),
            "gpu_loader_224": loader_224,
            "gpu_b0_low": float(b0["node_over_fc"].min()) if len(b0) else float("nan"),
            "gpu_b0_high": float(b0["node_over_fc"].max()) if len(b0) else float("nan")}
