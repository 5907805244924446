"""Peak memory of backpropagation through the solver against the adjoint, as NFE grows.

A NODE head (the package's default MLP dynamics, width 256) on a batch of 1280-d features takes one training
step (forward, cross-entropy, backward) with fixed-step rk4 at 1, 2, 4 ... 32 steps (NFE 4 to 128), and with
dopri5 at tightening tolerances, by direct backpropagation and by the adjoint. Each configuration runs in a
fresh subprocess, so that one cannot inherit another's memory. Measured there:

- saved_mb: the bytes of every tensor autograd saves for the backward pass (torch.autograd.graph
  saved_tensors_hooks, each storage counted once): what backpropagation must keep alive;
- peak_mb (the headline on the CPU): the rise of the process's peak resident set size (VmHWM, reset through
  /proc/self/clear_refs just before the step) during forward + backward, over the resident size before it;
- on CUDA, peak_mb is torch.cuda.max_memory_allocated during the step minus the memory allocated before it.

(tracemalloc would see none of this: torch allocates outside Python's allocator.)

    .venv/bin/python bench/memory.py [--device cpu|cuda] [--quick]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import _lib
import pandas as pd

FLAT_TARGET = 0.10  # adjoint peak within 10% from the smallest to the largest NFE
RK4_STEPS = [1, 2, 4, 8, 16, 32]
QUICK_RK4_STEPS = [1, 2, 8]
DOPRI_TOLS = [1e-3, 1e-5, 1e-7]


def child(args) -> None:
    """One configuration, one training step; prints one JSON line."""
    import torch
    import torch.nn.functional as F

    from node_transfer.core.memory import SavedTensors
    from node_transfer.model.heads import build_head

    device = _lib.resolve_device(args.device, args.threads)
    torch.manual_seed(0)
    options = {"solver": args.solver, "adjoint": args.mode == "adjoint"}
    if args.solver == "rk4":
        options["step_size"] = 1.0 / args.steps
    else:
        options.update(rtol=args.tol, atol=args.tol)
    head = build_head("node", args.features, 10, **options).to(device)
    head.train()
    x = torch.randn(args.batch, args.features, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    # one small untimed step first: lazy one-off set-up (thread pools, autograd engine) stays out of the peak
    F.cross_entropy(head(x[:8]), y[:8]).backward()
    head.zero_grad(set_to_none=False)

    _lib.sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    else:
        reset_peak()
        before = rss_kb()
    start = time.perf_counter()
    with SavedTensors() as saved:
        logits = head(x)
        loss = F.cross_entropy(logits, y)
    loss.backward()
    _lib.sync(device)
    seconds = time.perf_counter() - start
    if device.type == "cuda":
        peak_mb = (torch.cuda.max_memory_allocated(device) - before) / 2**20
        kind = "cuda_max_allocated"
    else:
        peak_mb = (peak_kb() - before) / 1024
        kind = "cpu_peak_rss_rise"
    print(json.dumps({"nfe_forward": head.block.nfe_forward, "nfe_backward": head.block.nfe_backward,
                      "saved_mb": saved.megabytes, "peak_mb": peak_mb, "memory_kind": kind,
                      "step_s": seconds}))


def rss_kb() -> int:
    return _status_kb("VmRSS")


def peak_kb() -> int:
    return _status_kb("VmHWM")


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}: the CPU memory measure needs Linux")


def reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0); without it the rise would include import-time peaks."""
    Path("/proc/self/clear_refs").write_text("5")


def run_child(args, mode: str, solver: str, steps: int = 0, tol: float = 0.0) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--device", args.device, "--mode", mode,
               "--solver", solver, "--steps", str(steps), "--tol", str(tol), "--batch", str(args.batch),
               "--features", str(args.features), "--threads", str(args.threads)]
    # A fixed glibc mmap threshold: every large tensor is mapped and unmapped, so freed memory leaves the
    # resident set at once and the peak follows live tensors (the default threshold adapts upward and
    # keeps freed blocks in the heap, which makes the peak depend on what ran before).
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "MALLOC_MMAP_THRESHOLD_": "131072"}
    out = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise SystemExit(f"memory child failed ({' '.join(command[2:])}):\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = _lib.parser(__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64, help="feature vectors per batch")
    p.add_argument("--features", type=int, default=1280, help="feature dimension (EfficientNet's 1280)")
    p.add_argument("--reps", type=int, default=1, help="subprocesses per configuration (median)")
    p.add_argument("--child", action="store_true", help=argparse_hidden())
    p.add_argument("--mode", choices=("direct", "adjoint"), default="direct", help=argparse_hidden())
    p.add_argument("--solver", default="rk4", help=argparse_hidden())
    p.add_argument("--steps", type=int, default=1, help=argparse_hidden())
    p.add_argument("--tol", type=float, default=1e-5, help=argparse_hidden())
    args = p.parse_args()
    if args.child:
        child(args)
        return
    device = _lib.resolve_device(args.device, args.threads)
    configs = [("rk4", s, 0.0) for s in (QUICK_RK4_STEPS if args.quick else RK4_STEPS)]
    if not args.quick:
        configs += [("dopri5", 0, t) for t in DOPRI_TOLS]
    rows = []
    for solver, steps, tol in configs:
        results = {"direct": [], "adjoint": []}
        for r in range(args.reps):
            for mode in (("direct", "adjoint") if r % 2 == 0 else ("adjoint", "direct")):  # alternating
                results[mode].append(run_child(args, mode, solver, steps, tol))
        for mode, runs in results.items():
            row = {"solver": solver, "rk4_steps": steps or None, "tol": tol or None, "mode": mode,
                   "nfe_forward": _lib.median([r["nfe_forward"] for r in runs]),
                   "nfe_backward": _lib.median([r["nfe_backward"] for r in runs]),
                   "saved_mb": _lib.median([r["saved_mb"] for r in runs]),
                   "peak_mb": _lib.median([r["peak_mb"] for r in runs]),
                   "step_s": _lib.median([r["step_s"] for r in runs]), "memory_kind": runs[0]["memory_kind"]}
            rows.append(row)
            _lib.log(f"  {solver} {steps or tol:g} {mode}: NFE {row['nfe_forward']}/{row['nfe_backward']}, "
                     f"saved {row['saved_mb']:.1f} MB, peak {row['peak_mb']:.1f} MB")
    table = pd.DataFrame(rows)
    rk4 = table[table["solver"] == "rk4"]
    adj, direct = rk4[rk4["mode"] == "adjoint"], rk4[rk4["mode"] == "direct"]
    # Headline over the multi-step solves (rk4 >= 2 steps). A one-step solve is reported too but set apart:
    # torchdiffeq's fixed-grid loop keeps the previous step's dy and f0 alive while it takes the next step,
    # a constant that only exists from the second step on (see the table's first adjoint row).
    multi = adj[adj["rk4_steps"] >= 2]
    adj_change = (multi["peak_mb"].iloc[-1] - multi["peak_mb"].iloc[0]) / multi["peak_mb"].iloc[0]
    adj_range = (multi["peak_mb"].max() - multi["peak_mb"].min()) / multi["peak_mb"].min()
    adj_all = (adj["peak_mb"].max() - adj["peak_mb"].min()) / adj["peak_mb"].min()
    direct_growth = direct["peak_mb"].iloc[-1] / direct["peak_mb"].iloc[0]
    dopri = table[(table["solver"] == "dopri5") & (table["mode"] == "adjoint")]
    # where the adjoint starts to save memory: the smallest rk4 NFE at which direct backprop peaks higher
    above = direct[direct["peak_mb"].to_numpy() > adj["peak_mb"].to_numpy()]
    crossover = int(above["nfe_forward"].iloc[0]) if len(above) else None
    summary = {
        "headline": (f"adjoint peak memory change from NFE {int(multi['nfe_forward'].iloc[0])} to "
                     f"{int(multi['nfe_forward'].iloc[-1])} (rk4, 2 to {int(multi['rk4_steps'].iloc[-1])} steps)"),
        "value": round(float(adj_change), 4), "target": f"|change| <= {FLAT_TARGET:g}, and direct grows",
        "pass": bool(abs(adj_change) <= FLAT_TARGET and adj_range <= FLAT_TARGET
                     and direct_growth > 1 + FLAT_TARGET),
        "adjoint_max_over_min_minus_1_multistep": round(float(adj_range), 4),
        "adjoint_max_over_min_minus_1_including_one_step": round(float(adj_all), 4),
        "adjoint_one_step_peak_mb": round(float(adj["peak_mb"].iloc[0]), 2),
        "direct_growth_factor": round(float(direct_growth), 3),
        "direct_nfe_range": [int(direct["nfe_forward"].iloc[0]), int(direct["nfe_forward"].iloc[-1])],
        "direct_saved_mb_per_nfe": round(float((direct["saved_mb"].iloc[-1] - direct["saved_mb"].iloc[0])
                                               / (direct["nfe_forward"].iloc[-1] - direct["nfe_forward"].iloc[0])),
                                         3),
        "dopri5_adjoint_max_over_min_minus_1": (round(float((dopri["peak_mb"].max() - dopri["peak_mb"].min())
                                                            / dopri["peak_mb"].min()), 4) if len(dopri) else None),
        "adjoint_saves_memory_from_nfe": crossover,
        "adjoint_peak_mb_rk4_multistep": round(float(multi["peak_mb"].median()), 1),
        "adjoint_peak_mb_dopri5": round(float(dopri["peak_mb"].median()), 1) if len(dopri) else None,
        "memory_kind": rows[0]["memory_kind"],
        "setting": {"batch": args.batch, "features": args.features, "ode_width": 256, "reps": args.reps},
    }
    _lib.save("memory", table, summary, device, args)


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
