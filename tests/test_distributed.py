"""One run on two processes (torchrun, gloo, CPU): one run directory, decisions taken together, exit 0."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TINY = ["--dataset", "digits", "--image-size", "32", "--freeze-backbone", "--cache-features", "--no-augment",
        "--head", "fc", "--lr", "3e-3", "--device", "cpu", "--quiet"]


def torchrun(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "node_transfer", "run", *TINY, *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.parametrize("out", [None, "mine"], ids=["runs-dir-chosen-by-rank-0", "with-out"])
def test_torchrun_two_processes_share_one_run_directory_and_stop_together(tmp_path, out):
    # the target is reached after the first of three epochs: every rank must stop there, or the job hangs
    result = torchrun(tmp_path, "--epochs", "3", "--target-val-acc", "0.3", *(["--out", out] if out else []))
    assert result.returncode == 0, result.stderr[-3000:]
    made = [p for p in (tmp_path / "runs").iterdir()] if out is None else [tmp_path / out]
    assert len(made) == 1 and (made[0] / "metrics.json").is_file()
    assert result.stdout.split() == [str(made[0].relative_to(tmp_path))]  # printed once, by rank 0
    metrics = json.loads((made[0] / "metrics.json").read_text())
    config = json.loads((made[0] / "config.json").read_text())
    assert metrics["stopped_early"] and metrics["epochs"] == 1 and config["world_size"] == 2


SHARED = """
import json
import sys
import types
import torch
import torch.distributed as dist
from node_transfer.core.distributed import DistInfo
from node_transfer.run.training import Trainer

dist.init_process_group("gloo")
rank = dist.get_rank()
me = types.SimpleNamespace(dist=DistInfo(rank, 2), device=torch.device("cpu"))
values = {"loss": 1.0 + rank, "acc": 0.9 if rank == 0 else 0.1, "nfe": 0.0}  # ranks that would disagree
with open(f"{sys.argv[1]}/rank{rank}.json", "w") as handle:
    json.dump(Trainer._shared(me, values), handle)
dist.destroy_process_group()
"""


def test_ranks_take_rank_0s_validation_numbers(tmp_path):
    """Best checkpoint and early stop are decided on rank 0's numbers on every rank, so no rank waits alone."""
    script = tmp_path / "shared.py"
    script.write_text(SHARED)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             str(script), str(tmp_path)], capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    for rank in (0, 1):
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == {"loss": 1.0, "acc": 0.9, "nfe": 0.0}


def test_cpu_runs_keep_freed_memory_without_changing_results():
    """glibc's mallopt takes the settings (a fresh process), and a training step gives the same loss with them."""
    code = """
import sys, torch
from node_transfer.core.distributed import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
torch.manual_seed(0)
from node_transfer.model.heads import build_head
head = build_head("node", 32, 3, ode_width=8, rtol=1e-3, atol=1e-3)
x, y = torch.randn(64, 32), torch.randint(0, 3, (64,))
loss = torch.nn.functional.cross_entropy(head(x), y)
loss.backward()
print(applied, repr(loss.item()), repr(sum(float(p.grad.sum()) for p in head.parameters() if p.grad is not None)))
"""
    outputs = {mode: subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True,
                                    check=True).stdout.split() for mode in ("keep", "default")}
    assert outputs["keep"][0] == "True" and outputs["default"][0] == "False"
    assert outputs["keep"][1:] == outputs["default"][1:]
