"""torch.compile and the NODE head: eager against compiling the dynamics and compiling the whole head, per backend.

The study's head (`MLPDynamics` 1280 -> width -> 1280, softplus, dopri5 at rtol = atol = 1e-5, the linear
classifier) at widths 64 and 256, one training step by backpropagation (solve, cross-entropy, backward) on a batch
of 128 pooled Lite0 features of digits. For each backend (lean, torchdiffeq, torchode) three arms: eager;
`torch.compile` of the dynamics inside the eager solver; `torch.compile` of the whole head (solver included, as
far as dynamo traces it: the lean backend's solve is excluded from tracing, see `LeanBackend.solve`); and for
torchode a fourth, its documented TorchScript route (the term fixed at construction, the solver scripted). Compilation
is timed by its first step (each arm with a fresh inductor cache directory, no FX graph or autograd cache, one
compile thread, after one small untimed compilation that starts the compiler); steps are then timed in
alternating rounds, by CPU time (one thread: the time spent computing) and wall time. Each compiled arm's NFE
and logits are compared with its eager twin's, so a compiled solver that takes other steps shows. An arm that
fails to compile is recorded with its error.

Target: a compiled arm faster than every eager arm at width 64 (compilation pays off), reported either way; the
lean backend's whole-head arm compiles only the classifier (its solve is not traced) and is left out of it.

    .venv/bin/python bench/node_compile.py [--quick] [--threads 1]
"""

from __future__ import annotations

import os
import tempfile
import time

os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="node-compile-"))  # no earlier kernels

import _lib  # noqa: E402  (after the cache directory is chosen)
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch._inductor.runtime.cache_dir_utils import temporary_cache_dir  # noqa: E402

from node_transfer.model.heads import build_head  # noqa: E402
from node_transfer.run.experiment import cpu_description  # noqa: E402

WIDTHS = (64, 256)
BACKENDS = ("lean", "torchdiffeq", "torchode")
MODES = ("eager", "compile dynamics", "compile head")
TORCHSCRIPT = "torchscript solver"  # torchode only: its documented JIT route, the whole solver scripted
SOLVER = {"solver": "dopri5", "rtol": 1e-5, "atol": 1e-5}
BATCH = 128


def make_arm(num_features: int, width: int, backend: str, mode: str, device: torch.device):
    """(head, the callable a step runs) for one arm; the head is initialised alike for every arm of a width."""
    torch.manual_seed(0)
    head = build_head("node", num_features, 10, ode_width=width, ode_backend=backend, **SOLVER).to(device)
    if mode == "compile dynamics":
        head.block.func.dynamics = torch.compile(head.block.func.dynamics)
    return head, torch.compile(head) if mode == "compile head" else head


class _PerSampleTime(nn.Module):
    """f(t, y) for torchode, which passes a time per sample: MLPDynamics takes it as a (batch, 1) column."""

    def __init__(self, dynamics: nn.Module) -> None:
        super().__init__()
        self.dynamics = dynamics

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.dynamics(t[:, None], y)


def torchscript_task(head: nn.Module, features: torch.Tensor, labels: torch.Tensor):
    """torchode as its documentation compiles it: the term fixed at construction, the solver scripted
    (`torch.jit.script`), gradients by backpropagation through the solver's steps, not its step-size control."""
    import torchode as to

    batch, scripted = features.shape[0], []

    def step():
        if not scripted:  # on the first step, so that the compile time counts scripting
            term = to.ODETerm(_PerSampleTime(head.block.dynamics))
            scripted.append(torch.jit.script(to.AutoDiffAdjoint(
                to.Dopri5(term=term), to.IntegralController(atol=SOLVER["atol"], rtol=SOLVER["rtol"], term=term),
                backprop_through_step_size_control=False)))
        for p in head.parameters():
            p.grad = None
        problem = to.InitialValueProblem(y0=features, t_start=features.new_zeros(batch),
                                         t_end=features.new_ones(batch))
        solution = scripted[0].solve(problem)
        logits = head.fc(solution.ys[:, -1])
        nn.functional.cross_entropy(logits, labels).backward()
        return int(solution.stats["n_f_evals"].max()), logits.detach()

    return step


def step_task(head: nn.Module, run: nn.Module, features: torch.Tensor, labels: torch.Tensor):
    def step():
        for p in head.parameters():
            p.grad = None
        logits = run(features)
        nn.functional.cross_entropy(logits, labels).backward()
        return head.block.nfe_forward, logits.detach()

    return step


def modes(backend: str) -> tuple[str, ...]:
    return (*MODES, TORCHSCRIPT) if backend == "torchode" else MODES


def compiled_part(backend: str, mode: str) -> str:
    """What an arm hands to a compiler."""
    if mode == "compile head":
        return "the classifier (the lean solve is not traced)" if backend == "lean" else "solver and dynamics"
    return {"eager": "nothing", "compile dynamics": "dynamics", TORCHSCRIPT: "solver and dynamics"}[mode]


def warm_up_compiler() -> None:
    """Compile something small first, so that no arm's compile time holds the compiler's one-time start-up."""
    torch.compile(lambda a: (a * 2).sin())(torch.randn(8))


def with_cpu_time(fn, record: list[float]):
    def run():
        start = time.process_time()
        result = fn()
        record.append(time.process_time() - start)
        return result

    return run


def main() -> None:
    p = _lib.parser(__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=12, help="timed rounds (every arm once per round, alternating)")
    args = p.parse_args()
    if args.quick:
        args.reps = 2
    torch._inductor.config.compile_threads = 1  # one heavy process at a time on a shared machine
    torch._inductor.config.fx_graph_cache = False  # every arm compiles from scratch: honest compile times
    torch._functorch.config.enable_autograd_cache = False
    device = _lib.resolve_device(args.device, args.threads)
    features = _lib.cached_features(args, device)["train"]
    num_features = features.tensors[0].shape[1]
    x, y = features.tensors[0][:BATCH].to(device), features.tensors[1][:BATCH].to(device)
    widths, backends = ((64,), ("lean", "torchode")) if args.quick else (WIDTHS, BACKENDS)
    warm_up_compiler()
    tasks, first, eager_result, rows, cpu = {}, {}, {}, {}, {}
    for width in widths:
        for backend in backends:
            for mode in modes(backend):
                name = f"w{width} {backend} {mode}"
                head, run = make_arm(num_features, width, backend, mode, device)
                task = torchscript_task(head, x, y) if mode == TORCHSCRIPT else step_task(head, run, x, y)
                start = time.perf_counter()
                try:
                    with temporary_cache_dir(tempfile.mkdtemp(prefix="node-compile-")):  # no kernel of another arm
                        nfe, logits = task()
                except Exception as exc:  # a compiler failure is a result here
                    rows[name] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"}
                    _lib.log(f"{name}: failed ({rows[name]['error']})")
                    torch._dynamo.reset()
                    continue
                first[name] = time.perf_counter() - start
                if mode == "eager":
                    eager_result[width, backend] = nfe, logits
                ref_nfe, ref_logits = eager_result[width, backend]
                rows[name] = {"nfe_forward": nfe, "nfe_as_eager": nfe == ref_nfe,
                              "max_logit_diff_vs_eager": float((logits - ref_logits).abs().max())}
                cpu[name] = []
                tasks[name] = with_cpu_time(task, cpu[name])
                _lib.log(f"{name}: first step {first[name]:.1f} s, NFE {nfe}")
    seconds = _lib.interleaved(tasks, reps=args.reps, warmup=1, device=device, verbose=False)
    cpu = {name: times[-args.reps:] for name, times in cpu.items()}  # the timed calls, not the warm-up
    table = []
    for width in widths:
        for backend in backends:
            eager = _lib.median(cpu.get(f"w{width} {backend} eager", []))
            for mode in modes(backend):
                name = f"w{width} {backend} {mode}"
                row = {"width": width, "backend": backend, "mode": mode, "compiled": compiled_part(backend, mode),
                       **rows[name]}
                if name in seconds:
                    s, c = _lib.median(seconds[name]), _lib.median(cpu[name])
                    row.update(ms_per_step_cpu=c * 1000, vs_eager=c / eager, ms_per_step=s * 1000,
                               first_step_s=first[name], compile_s=max(first[name] - s, 0.0) if mode != "eager"
                               else 0.0, spread=_lib.spread(seconds[name]))
                table.append(row)
    table = pd.DataFrame(table)
    ok = table[table["ms_per_step_cpu"].notna()] if "ms_per_step_cpu" in table else table.iloc[:0]
    narrow = ok[(ok["width"] == 64) & ~ok["compiled"].str.startswith("the classifier")]
    best_eager = narrow[narrow["mode"] == "eager"].sort_values("ms_per_step_cpu").iloc[0]
    best_compiled = narrow[narrow["mode"] != "eager"].sort_values("ms_per_step_cpu").iloc[0]
    value = float(best_compiled["ms_per_step_cpu"] / best_eager["ms_per_step_cpu"])
    summary = {
        "headline": "fastest compiled arm's step (CPU time) over the fastest eager arm's, width 64 (backprop, batch "
                    "128); arms that compile the solver or the dynamics",
        "value": round(value, 3), "target": "< 1 (compilation pays off)", "pass": bool(value < 1),
        "fastest_eager": f"{best_eager['backend']} (w64)", "fastest_compiled": f"{best_compiled['backend']}, "
                                                                              f"{best_compiled['mode']} (w64)",
        "compile_s": {f"w{r['width']} {r['backend']} {r['mode']}": round(float(r["compile_s"]), 1)
                      for _, r in ok.iterrows() if r["mode"] != "eager"},
        "failed": {f"w{r['width']} {r['backend']} {r['mode']}": r["error"] for _, r in table.iterrows()
                   if isinstance(r.get("error"), str)},
        "cpu": cpu_description(),
        "versions": {name: __import__(name).__version__ for name in ("torchdiffeq", "torchode")},
        "setting": {"batch": BATCH, **SOLVER, "gradients": "backprop", "reps": args.reps,
                    "inductor": "fresh cache directory, no FX graph or autograd cache, one compile thread"},
    }
    _lib.save("node_compile", table, summary, device, args)


if __name__ == "__main__":
    main()
