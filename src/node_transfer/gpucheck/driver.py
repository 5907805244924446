"""A prepared check of the CUDA path on one GPU, in one go: `python -m node_transfer.gpucheck run --out DIR`
(`make gpu-check`).

Sections, most important first: the machine and libraries; every head and gradient path trained under the
`gpu` profile's bf16 autocast and channels_last (float32 ODE state, NFE counted, finite losses, pinned batches,
peak memory); `torchrun` with NCCL; a resume after SIGTERM and `predict`; throughput of the fine-tuning step and
of the head-only step (NODE/FC) at 32 and 224 px; EfficientNet-B0. Each runs in a process of its own under a
time budget, and is appended to DIR/report.md and DIR/report.json as soon as it ends: a check stopped at any
point keeps the sections done, and a section that fails records its traceback's tail while the check goes on.
Without CUDA it stops at once (exit 2). `--device cpu` runs the sections at toy size on the CPU: a test of the
check itself, not of a GPU. `prepare --carry DIR` writes what a bare GPU machine lacks (`gpucheck.carry`).
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

from .report import Findings, Report, status_of, tail

SRC = Path(__file__).resolve().parents[2]
DEFAULT_BUDGET = 460.0  # seconds for all sections: the whole check ends inside 8 minutes
CPU_BUDGET_SCALE = 6.0  # --device cpu: each section's budget this many times longer (a CPU is far slower)
MIN_SECTION_SECONDS = 20.0  # a section gets at least this much of the budget, or is skipped
STOP_GRACE_SECONDS = 15.0  # after SIGTERM at a section's time limit, before SIGKILL
NEEDS_CUDA = ("the device check needs a CUDA GPU that torch can see (torch.cuda.is_available() is False here: "
              "torch {torch}, CUDA build {cuda}, CUDA_VISIBLE_DEVICES={visible}); run it on a GPU machine, or pass "
              "--device cpu to try the check itself at toy size on the CPU")


@dataclass(frozen=True)
class Section:
    """One part of the check: `target` ('module:function', called with a Context and Findings) in a process
    of its own, stopped after `budget` seconds."""

    name: str
    target: str
    budget: float
    title: str


SECTIONS = (
    Section("environment", "node_transfer.gpucheck.sections:environment", 60, "the GPU, its driver and the libraries"),
    Section("heads", "node_transfer.gpucheck.sections:heads", 150,
            "every head and gradient path under bf16 autocast and channels_last"),
    # Each new CUDA process pays 20-35 s of cuDNN autotuning (benchmark=True) in its first epoch (H200,
    # results/gpu: first epochs 35.5 s and 20.7 s, the next ones 0.5-3 s); torchrun and resume-predict, which
    # start processes, took 92 s each there.
    Section("torchrun", "node_transfer.gpucheck.runs:torchrun", 110, "torchrun --nproc_per_node=1 and NCCL"),
    Section("resume-predict", "node_transfer.gpucheck.runs:resume_and_predict", 110,
            "a run stopped by SIGTERM, resumed, then `predict`"),
    # The speed sections build three models per image size (each build plus 3 warm-up steps with autotuning took
    # ~26 s on the H200: 78 s for the three at 32 px, results/gpu), then time 6 steps x 25: two sizes need ~240 s.
    Section("throughput", "node_transfer.gpucheck.speed:throughput", 240,
            "images per second of the fine-tuning and head-only steps, NODE/FC, Lite0 at 32 and 224 px"),
    Section("b0", "node_transfer.gpucheck.speed:b0", 150, "EfficientNet-B0: its ImageNet weights if on disk, "
                                                          "and its step time"),
)


@dataclass
class Context:
    """What every section is told: where to work and read data, and how to start the package's commands."""

    device: str  # cuda; cpu only to try the check itself
    work: str  # scratch folder (run directories, logs)
    data_dir: str  # Fashion-MNIST for --data-dir
    env: dict[str, str]  # environment of the package's commands (PYTHONPATH holds src and the carried wheels)

    @property
    def small(self) -> bool:
        """Toy sizes (the CPU try of the check itself)."""
        return self.device != "cuda"

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> Context:
        return cls(**json.loads(Path(path).read_text()))


def child_environment(site: Path | None) -> dict[str, str]:
    """This environment with the source tree and the carried wheels first on PYTHONPATH, unbuffered output, the
    Hugging Face hub offline (nothing may be fetched) and tqdm lines instead of bars."""
    paths = [str(SRC)] + ([str(site)] if site else []) + [p for p in os.environ.get("PYTHONPATH", "").split(":") if p]
    return {**os.environ, "PYTHONPATH": ":".join(dict.fromkeys(paths)), "PYTHONUNBUFFERED": "1",
            "HF_HUB_OFFLINE": "1", "TQDM_MININTERVAL": "30"}


def run_section(section: Section, context_file: Path, work: Path, deadline: float, env: dict[str, str],
                log: Path, scale: float = 1.0) -> tuple[str, float, dict | None, str]:
    """Run one section in its own process (session) under its budget: (status, seconds, findings, log tail)."""
    budget = min(section.budget * scale, deadline - time.monotonic())
    if budget < MIN_SECTION_SECONDS:
        return "skipped", 0.0, {"facts": {}, "checks": [], "tables": {}, "error": None,
                                "notes": [f"skipped: {max(budget, 0):.0f} s of the check's budget left"]}, ""
    result = work / f"{section.name}.findings.json"
    result.unlink(missing_ok=True)
    command = [sys.executable, "-u", "-m", "node_transfer.gpucheck", "section", section.target,
               "--context", str(context_file), "--result", str(result)]
    print(f"== {section.name}: {section.title} (at most {budget:.0f} s)", flush=True)
    started = time.monotonic()
    lines: collections.deque[str] = collections.deque(maxlen=200)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                               env=env, cwd=work, start_new_session=True)

    def pump() -> None:
        with log.open("a") as sink:
            sink.write(f"\n===== {section.name}\n")
            for line in process.stdout:
                sink.write(line)
                sink.flush()
                lines.append(line)
                print(f"[{section.name}] {line}", end="", flush=True)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        code = process.wait(timeout=budget)
        outcome = "finished" if code in (0, 1) else f"crashed (exit code {code})"
    except subprocess.TimeoutExpired:
        stop_group(process)
        outcome = "timeout"
    reader.join(timeout=5)
    seconds = time.monotonic() - started
    findings = Findings.load(result)
    status = status_of(findings, outcome)
    print(f"== {section.name}: {status} in {seconds:.0f} s", flush=True)
    return status, seconds, findings, tail("".join(lines), 40)


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the section's process group (a run keeps its last epoch; torchrun stops its workers), then
    SIGKILL to whatever is left."""
    for how, grace in ((signal.SIGTERM, STOP_GRACE_SECONDS), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, how)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def git_commit() -> str:
    """HEAD of the checkout the check runs from; a lent machine's copy may sit on an older HEAD with the newer
    files on top, so `source_digest` says which code ran."""
    try:
        return subprocess.run(["git", "-C", str(SRC.parent), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git checkout)"


def source_digest(package: Path = SRC / "node_transfer") -> str:
    """sha256 over the package's .py files, subpackages included (paths and contents, in path order): compare
    with `python -c "from node_transfer.gpucheck.driver import source_digest; print(source_digest())"` at a
    commit."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def run_check(args: argparse.Namespace, sections: tuple[Section, ...] = SECTIONS) -> int:
    """The whole check: 0 if every section passed, 1 if any did not, 2 without CUDA or with bad arguments."""
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu-check: error: " + NEEDS_CUDA.format(torch=torch.__version__, cuda=torch.version.cuda,
                                                        visible=os.environ.get("CUDA_VISIBLE_DEVICES")),
              file=sys.stderr)
        return 2
    from .carry import install_wheels, setup_data

    out, carry = Path(args.out), Path(args.carry) if args.carry else None
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="node-transfer-gpucheck-"))
    work.mkdir(parents=True, exist_ok=True)
    site = work / "site"
    installed = install_wheels(carry, site)
    data_dir = work / "data"
    data_dir.mkdir(exist_ok=True)
    data = setup_data(carry, data_dir)
    env = child_environment(site)
    context = Context(args.device, str(work), str(data_dir), env)
    context_file = work / "context.json"
    context.save(context_file)
    header = {"command": " ".join(sys.argv), "device": args.device + ("" if args.device == "cuda" else
                                                                       " (a toy-size try of the check itself)"),
              "budget": f"{args.budget:.0f} s", "commit": git_commit(), "source sha256": source_digest(),
              "wheels": installed, "Fashion-MNIST": data, "work": str(work)}
    report = Report(out, header)
    log = out / "sections.log"
    deadline = time.monotonic() + args.budget
    statuses = []
    for section in sections:
        status, seconds, findings, log_tail = run_section(section, context_file, work, deadline, env, log,
                                                          1.0 if args.device == "cuda" else CPU_BUDGET_SCALE)
        report.add(section.name, section.title, status, seconds, findings, log_tail)
        statuses.append(status)
    print(report.finish(), flush=True)
    print(f"report: {out / 'report.md'} and {out / 'report.json'}; logs: {log}", flush=True)
    return 0 if all(s == "ok" for s in statuses) else 1


def run_one(target: str, context_file: str, result_file: str) -> int:
    """A section's own process: call `target` with the context and findings saved to `result_file`."""
    findings = Findings(Path(result_file))
    findings.fact("python", sys.version.split()[0])
    module_name, _, function = target.partition(":")
    try:
        section = getattr(importlib.import_module(module_name), function)
        section(Context.load(Path(context_file)), findings)
    except BaseException:  # Interrupted and SystemExit too: recorded, then this process ends
        findings.error(tail(traceback.format_exc()))
        print(tail(traceback.format_exc()), file=sys.stderr, flush=True)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m node_transfer.gpucheck", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the check; the report goes to --out")
    run.add_argument("--out", required=True, help="folder for report.md, report.json and sections.log")
    run.add_argument("--carry", default=None, help="the folder `prepare` wrote (wheels, Fashion-MNIST), if any")
    run.add_argument("--work", default=None, help="scratch folder (default: a new temporary folder)")
    run.add_argument("--budget", type=float, default=DEFAULT_BUDGET, help="seconds for all sections "
                     f"(default: {DEFAULT_BUDGET:.0f})")
    run.add_argument("--only", nargs="+", default=None, metavar="SECTION",
                     help=f"run only these sections, of {[s.name for s in SECTIONS]}")
    run.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                     help="cpu: the sections at toy size on the CPU, to try the check itself (default: cuda)")
    prepare = sub.add_parser("prepare", help="write what a bare GPU machine lacks into a folder to carry there")
    prepare.add_argument("--carry", default=".gpu-carry", help="the folder (default: .gpu-carry, git-ignored)")
    section = sub.add_parser("section", help="(internal) run one section in this process")
    section.add_argument("target")
    section.add_argument("--context", required=True)
    section.add_argument("--result", required=True)
    return parser


def check_run_arguments(args: argparse.Namespace) -> str | None:
    """The first bad argument of `run`, as a message naming it, its value and what is valid; else None."""
    names = [s.name for s in SECTIONS]
    if not args.budget > 0:
        return f"--budget {args.budget}: a positive number of seconds"
    unknown = [name for name in args.only or [] if name not in names]
    if unknown:
        return f"--only {unknown[0]}: one of {names}"
    if args.carry and not Path(args.carry).is_dir():
        return f"--carry {args.carry}: a folder written by `prepare` (it does not exist)"
    if (Path(args.out) / "report.md").exists():
        return f"--out {args.out}: a folder without a report (it holds one already: choose another folder)"
    if Path(args.out).exists() and not Path(args.out).is_dir():
        return f"--out {args.out}: a folder (it is a file)"
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "section":
        return run_one(args.target, args.context, args.result)
    if args.command == "prepare":
        from .carry import prepare

        manifest = prepare(Path(args.carry))
        print(json.dumps(manifest, indent=2))
        print(f"carry {args.carry} ({manifest['carry_mib']} MiB; with the working tree {manifest['total_mib']} MiB)")
        return 0
    problem = check_run_arguments(args)
    if problem:
        print(f"gpu-check: error: {problem}", file=sys.stderr)
        return 2
    chosen = tuple(s for s in SECTIONS if args.only is None or s.name in args.only)
    return run_check(args, chosen)

