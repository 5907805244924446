"""The device check's command-line sections: `node-transfer run` under torchrun with a process-group probe (NCCL
on CUDA), and a run stopped by SIGTERM, resumed, then used by `predict`, each as a user would type it."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..core.rundir import CONFIG, ERROR, HISTORY, LAST, METRICS, TEMP_PATTERN, read_json
from ..suites.profiles import NODE_RK
from .driver import Context
from .report import Findings, tail
from .sections import check_config, cli_arguments, finite, nccl_version, read_run

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1"]  # = torchrun


def package_command(context: Context, arguments: list[str], timeout: float, launcher: list[str] | None = None,
                    module: str = "node_transfer") -> subprocess.CompletedProcess:
    """Run `python -m node_transfer ARGUMENTS` (or under `launcher`) as a user would; its output goes to the log."""
    command = (launcher or [sys.executable]) + ["-m", module, *arguments]
    print("$ " + " ".join(command), flush=True)
    result = subprocess.run(command, env=context.env, cwd=context.work, capture_output=True, text=True,
                            timeout=timeout)
    print(tail(result.stdout + result.stderr, 30), flush=True)
    return result


def last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1].strip() if lines else ""


def torchrun(context: Context, findings: Findings) -> None:
    """A process group under torchrun (NCCL on CUDA, gloo on the CPU) with a DDP step of the package's model, then
    `node-transfer run` itself under `torchrun --nproc_per_node=1`."""
    with findings.guard("process group probe under torchrun"):
        probe = Path(context.work) / "process-group-probe.json"
        result = package_command(context, ["section", "node_transfer.gpucheck.runs:process_group_probe", "--context",
                                           str(Path(context.work) / "context.json"), "--result", str(probe)],
                                 timeout=120, launcher=TORCHRUN, module="node_transfer.gpucheck")
        found = Findings.load(probe) or {"facts": {}, "checks": [], "error": "the probe saved nothing"}
        for name, value in found["facts"].items():
            findings.fact(f"probe: {name}", value)
        for item in found["checks"]:
            findings.check(f"probe: {item['check']}", item["ok"], item["detail"])
        findings.check("probe: torchrun exited 0", result.returncode == 0 and not found.get("error"),
                       found.get("error") or f"exit code {result.returncode}")
    with findings.guard("node-transfer run under torchrun"):
        config = check_config(context, "torchrun-node", {**NODE_RK, "epochs": 2})
        result = package_command(context, ["run", *cli_arguments(config)], timeout=240, launcher=TORCHRUN)
        run_dir = Path(config["out"])
        findings.check("torchrun run: exit 0 and the run directory printed last",
                       result.returncode == 0 and last_line(result.stdout) == str(run_dir),
                       f"exit code {result.returncode}, last line {last_line(result.stdout)!r}")
        metrics, history = read_run(run_dir)
        resolved = read_json(run_dir / CONFIG, "run configuration")
        findings.check("torchrun run: finished with finite losses", len(history) == config["epochs"]
                       and finite(metrics["test_loss"], metrics["train_loss"]),
                       f"{len(history)} epochs, test acc {metrics['test_acc']:.3f}, NFE {metrics['nfe_forward']:.1f}")
        findings.fact("torchrun run: device and world size", f"{resolved['device_resolved']}, world size "
                      f"{resolved['world_size']}")
        findings.note("With one process (WORLD_SIZE=1) the package runs without a process group "
                      "(distributed.init_distributed), so the run above is the single-process path started by "
                      "torchrun; the probe above is what checks the process group and DDP on this machine.")


def process_group_probe(context: Context, findings: Findings) -> None:
    """Under torchrun: join the process group, all-reduce and broadcast, then one bf16 DDP step of the package's
    model (NODE head) on real images."""
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel

    from ..core.config import ExperimentConfig
    from ..run.experiment import prepare

    cuda = context.device == "cuda"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    findings.fact("torchrun environment", {k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK")})
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        findings.fact("backend", dist.get_backend())
        if cuda:
            findings.fact("NCCL", nccl_version())
        world = dist.get_world_size()
        values = torch.full((4,), 2.0, device=device)
        dist.all_reduce(values)
        findings.check("all_reduce", bool((values == 2.0 * world).all()), values.tolist())
        chosen = [f"run-dir-from-rank-{dist.get_rank()}"]
        dist.broadcast_object_list(chosen, src=0)
        findings.check("broadcast_object_list", chosen == ["run-dir-from-rank-0"], chosen)
        config = ExperimentConfig.from_dict(check_config(context, "ddp-probe", dict(NODE_RK)))
        prepared = prepare(config, check_paths=False)
        model = DistributedDataParallel(prepared.model, device_ids=[local_rank] if cuda else None)
        images, labels = zip(*(prepared.splits.train[i] for i in range(32)))
        images, labels = torch.stack(images).to(device), torch.tensor(labels, device=device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            logits = model(images)
        loss = F.cross_entropy(logits.float(), labels)
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        findings.check("DDP step of the package's model (NODE head, bf16 autocast)", finite(loss.item()) and bool(
            grads) and all(bool(torch.isfinite(g).all()) for g in grads),
            f"loss {loss.item():.4f}, {len(grads)} gradients, logits {logits.dtype}")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def stop_after_first_epoch(command: list[str], context: Context, run_dir: Path, timeout: float) -> dict[str, Any]:
    """Start a run, SIGTERM it once its first epoch is saved (last.pt and history.csv), and say how it ended."""
    print("$ " + " ".join(command), flush=True)
    process = subprocess.Popen(command, env=context.env, cwd=context.work, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(process.stdout), daemon=True)
    reader.start()
    deadline, signalled = time.monotonic() + timeout, False
    while process.poll() is None and time.monotonic() < deadline:
        if (run_dir / LAST).is_file() and history_rows(run_dir):  # epoch 1 saved, history written
            process.send_signal(signal.SIGTERM)
            signalled = True
            break
        time.sleep(0.05)
    if not signalled and process.poll() is None:
        process.kill()
    code = process.wait(timeout=120)
    reader.join(timeout=5)
    print(tail("".join(output), 20), flush=True)
    return {"signalled": signalled, "exit_code": code, "output": "".join(output)}


def resume_and_predict(context: Context, findings: Findings) -> None:
    """`node-transfer run` stopped by SIGTERM after its first epoch (exit 143, last epoch kept), `--resume` to the
    end, then `node-transfer predict` on test images written as PNG files."""
    epochs = 3 if context.small else 6
    config = check_config(context, "resume", {**NODE_RK, "epochs": epochs, "image_size": 64,
                                              "train_subset": 128 if context.small else 4096})
    run_dir = Path(config["out"])
    with findings.guard("run stopped by SIGTERM"):
        stopped = stop_after_first_epoch([sys.executable, "-m", "node_transfer", "run", *cli_arguments(config)],
                                         context, run_dir, timeout=180)
        history = history_rows(run_dir)
        findings.check("SIGTERM after the first epoch: exit code 143, finished epochs kept", stopped["signalled"]
                       and stopped["exit_code"] == 143 and 1 <= len(history) < epochs,
                       f"exit code {stopped['exit_code']}, {len(history)} epoch(s) kept of {epochs}")
        error = (run_dir / ERROR).read_text() if (run_dir / ERROR).is_file() else ""
        findings.check(f"stopped run keeps {LAST}, says why, leaves no temporary file",
                       (run_dir / LAST).is_file() and "SIGTERM" in error and not list(run_dir.glob(TEMP_PATTERN))
                       and not (run_dir / METRICS).exists(), error.strip()[:200])
    with findings.guard("run resumed"):
        result = package_command(context, ["run", "--out", str(run_dir), "--resume"], timeout=240)
        metrics, history = read_run(run_dir)
        findings.check("resumed to the end: exit 0, every epoch once, finite losses", result.returncode == 0
                       and [int(row["epoch"]) for row in history] == list(range(1, epochs + 1))
                       and finite(metrics["test_loss"]), f"exit code {result.returncode}, epochs "
                       f"{[row['epoch'] for row in history]}, test acc {metrics['test_acc']:.3f}")
    with findings.guard("predict"):
        images, labels = write_test_images(context, Path(context.work) / "predict-images", 24)
        table = Path(context.work) / "predictions.csv"
        result = package_command(context, ["predict", str(run_dir), str(images), "--device", context.device,
                                           "--csv", str(table)], timeout=120)
        rows = list(csv.DictReader(table.open(newline=""))) if table.is_file() else []
        right = sum(row["class_1"] == labels.get(Path(row["path"]).name) for row in rows)
        findings.check("predict: exit 0, one row per image", result.returncode == 0 and len(rows) == len(labels),
                       f"{len(rows)} rows for {len(labels)} images; top-1 right for {right}")


def history_rows(run_dir: Path) -> list[dict[str, str]]:
    """The history rows of a run that may not have finished (none if it has no history.csv)."""
    if not (run_dir / HISTORY).is_file():
        return []
    with open(run_dir / HISTORY, newline="") as handle:
        return list(csv.DictReader(handle))


def write_test_images(context: Context, folder: Path, count: int) -> tuple[Path, dict[str, str]]:
    """The first `count` Fashion-MNIST test images as PNG files; returns the folder and each file's class name."""
    from PIL import Image
    from torchvision import datasets

    test = datasets.FashionMNIST(root=context.data_dir, train=False, download=False)
    folder.mkdir(parents=True, exist_ok=True)
    labels = {}
    for index in range(count):
        name = f"{index:03d}.png"
        Image.fromarray(test.data[index].numpy()).save(folder / name)
        labels[name] = test.classes[int(test.targets[index])]
    return folder, labels
