"""Output: the machine a benchmark ran on, its table printed as Markdown and written with a JSON summary."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import torch

from .setup import CACHE, RESULTS
from .timing import START

if TYPE_CHECKING:
    import pandas as pd

LOAD_AT_START = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def machine(device: torch.device) -> dict[str, Any]:
    from node_transfer.run.experiment import cpu_description  # the CPU model and the kernels torch dispatches to

    info = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            **cpu_description(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    info["load_average_at_start"] = LOAD_AT_START  # 1, 5 and 15 minute averages: other work on the machine
    with contextlib.suppress(OSError):
        info["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return info


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def rounded(table: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """Floats to `digits` significant digits, for a readable CSV."""
    import pandas as pd

    out = table.copy()
    for column in out.columns:
        if pd.api.types.is_float_dtype(out[column]):
            out[column] = out[column].map(lambda v: float(f"{v:.{digits}g}") if pd.notna(v) else v)
    return out


def save(name: str, table: pd.DataFrame, summary: dict[str, Any], device: torch.device,
         args: argparse.Namespace, extra_tables: dict[str, pd.DataFrame] | None = None) -> None:
    """Print the table(s) as Markdown; write results/bench/NAME.csv (+ NAME-PART.csv) and NAME.json.

    With --quick they go to bench/_cache/quick/ instead, so a smoke test never replaces committed results.
    """
    out = CACHE / "quick" if args.quick else RESULTS  # smoke tests never overwrite the committed results
    out.mkdir(parents=True, exist_ok=True)
    table = rounded(table)
    table.to_csv(out / f"{name}.csv", index=False)
    print(f"\n## {name}  ({describe_device(device)})\n")
    print(table.to_markdown(index=False))
    for part, extra in (extra_tables or {}).items():
        extra = rounded(extra)
        extra.to_csv(out / f"{name}-{part}.csv", index=False)
        print(f"\n### {name}: {part}\n")
        print(extra.to_markdown(index=False))
    summary = {"benchmark": name, **summary, "quick": bool(args.quick),
               "arguments": {k: v for k, v in vars(args).items() if not k.startswith("_")},
               "seconds": round(time.perf_counter() - START, 1),
               "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(device)}
    (out / f"{name}.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    verdict = "PASS" if summary.get("pass") else "FAIL"
    print(f"\n{name}: {summary.get('headline')} = {summary.get('value')} (target {summary.get('target')}): "
          f"{verdict}; {summary['seconds']} s")
