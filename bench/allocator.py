"""What glibc's default malloc settings cost CPU training, and what `keep_freed_memory` gives back.

By default glibc maps every block over 128 KiB (up to an adaptive threshold) fresh with mmap and unmaps it when
freed, so the activations of each training step fault their pages in again. The package's CPU runs call
`node_transfer.core.distributed.keep_freed_memory` (tensors up to 32 MiB from the heap, freed memory kept). Each
workload runs in a fresh process per setting, the two settings alternating (A B, B A, ...):

- elementwise: `x + 0.5 * x` on a 256 x 1280 float tensor (a dopri5 stage combination on a batch of features);
- node head step: one head-only training step of the `fmnist` heads suite's NODE head (width 64, dopri5 at
  rtol = atol = 1e-5, batch 256 of 1280-d features, Adam);
- fine-tune step: one training step of Lite0 + FC at 32 px, batch 128 (the `fmnist` paper suite's baseline).

The results must not change: each child also reports its step's loss, which must be equal in both settings.

    .venv/bin/python bench/allocator.py [--quick] [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import _lib
import pandas as pd

TARGET = 1.2  # the NODE head-only step at least 1.2x faster with freed memory kept
WORKLOADS = ("elementwise", "node head step", "fine-tune step")


def child(args: argparse.Namespace) -> None:
    """One workload in this fresh process; prints one JSON line (median seconds, loss)."""
    import torch
    import torch.nn.functional as F

    from node_transfer.core.distributed import keep_freed_memory

    applied = keep_freed_memory() if args.setting == "keep freed memory" else False
    torch.set_num_threads(args.threads or 1)
    torch.manual_seed(0)
    if args.workload == "elementwise":
        x = torch.randn(256, 1280)

        def step() -> float:
            for _ in range(100):
                y = x + 0.5 * x
            return float(y[0, 0])
    elif args.workload == "node head step":
        from node_transfer.model.heads import build_head

        head = build_head("node", 1280, 10, ode_width=64, solver="dopri5", rtol=1e-5, atol=1e-5)
        features, labels = torch.randn(256, 1280), torch.randint(0, 10, (256,))
        step = _training_step(head, features, labels, F)
    else:
        from node_transfer.model.backbones import create_backbone
        from node_transfer.model.heads import build_head
        from node_transfer.model.transfer import TransferModel

        backbone, _ = create_backbone("tf_efficientnet_lite0", "imagenet")
        model = TransferModel(backbone, build_head("fc", backbone.num_features, 10))
        images, labels = torch.randn(128, 3, 32, 32), torch.randint(0, 10, (128,))
        step = _training_step(model, images, labels, F)
    for _ in range(args.warmup):
        step()
    seconds, loss = [], None
    for _ in range(args.steps):
        start = time.perf_counter()
        loss = step()
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"seconds": _lib.median(seconds), "loss": loss, "applied": applied}))


def _training_step(model, inputs, labels, F):
    import torch

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> float:
        loss = F.cross_entropy(model(inputs), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss)
    return step


def run_child(args: argparse.Namespace, workload: str, setting: str) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--workload", workload, "--setting", setting,
               "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads)]
    env = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_")}  # glibc's defaults
    out = subprocess.run(command, capture_output=True, text=True, env={**env, "PYTHONWARNINGS": "ignore"},
                         check=False)
    if out.returncode != 0:
        raise SystemExit(f"allocator child failed ({workload}, {setting}):\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = _lib.parser(__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=3, help="fresh processes per workload and setting (median)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per process (median)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per process")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--workload", choices=WORKLOADS, default=WORKLOADS[0], help=argparse.SUPPRESS)
    p.add_argument("--setting", default="glibc default", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    if args.device != "cpu":
        sys.exit("error: bench/allocator.py measures the CPU's memory allocator; use --device cpu")
    if args.quick:
        args.reps, args.steps = 1, 2
    args.threads = args.threads or 1
    device = _lib.resolve_device("cpu", args.threads)
    settings = ("glibc default", "keep freed memory")
    rows = []
    for workload in WORKLOADS:
        results: dict[str, list[dict]] = {s: [] for s in settings}
        for r in range(args.reps):
            for setting in (settings if r % 2 == 0 else settings[::-1]):
                results[setting].append(run_child(args, workload, setting))
        losses = {s: {run["loss"] for run in runs} for s, runs in results.items()}
        base = _lib.median([run["seconds"] for run in results["glibc default"]])
        kept = _lib.median([run["seconds"] for run in results["keep freed memory"]])
        rows.append({"workload": workload, "ms_glibc_default": round(base * 1000, 2),
                     "ms_keep_freed_memory": round(kept * 1000, 2), "speedup": round(base / kept, 3),
                     "same_result": losses["glibc default"] == losses["keep freed memory"],
                     "applied": all(run["applied"] for run in results["keep freed memory"])})
        _lib.log(f"  {workload}: {rows[-1]['ms_glibc_default']} ms -> {rows[-1]['ms_keep_freed_memory']} ms "
                 f"({rows[-1]['speedup']}x), same result: {rows[-1]['same_result']}")
    table = pd.DataFrame(rows)
    node = table.set_index("workload").loc["node head step"]
    summary = {
        "headline": "speed-up of a NODE head-only training step (fmnist heads suite) with freed memory kept",
        "value": float(node["speedup"]), "target": f">= {TARGET:g}, every result unchanged",
        "pass": bool(node["speedup"] >= TARGET and table["same_result"].all() and table["applied"].all()),
        "speedup_by_workload": dict(zip(table["workload"], table["speedup"])),
        "setting": {"reps": args.reps, "steps": args.steps, "warmup": args.warmup, "threads": args.threads},
    }
    _lib.save("allocator", table, summary, device, args)


if __name__ == "__main__":
    main()
