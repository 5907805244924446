"""Under torchrun, when rank 0 cannot claim the run directory every rank stops with a message, within a bound."""

import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

DECIDES = """
import json, sys, time
import torch.distributed as dist
from node_transfer.core.distributed import DistInfo, main_rank_decides
from node_transfer.core.errors import ConfigError

dist.init_process_group("gloo")
rank, case, folder = dist.get_rank(), sys.argv[1], sys.argv[2]

def claim():
    if case == "fails":
        raise ConfigError("out", "somewhere", "a directory no other process is using")
    if case == "silent":
        time.sleep(8)  # rank 0 hangs past the bound
    return "claimed"

started = time.perf_counter()
try:
    outcome = {"result": main_rank_decides(DistInfo(rank, 2), claim, "claim the run directory somewhere",
                                           timeout_s=2.0)}
except Exception as exc:
    outcome = {"error": type(exc).__name__, "message": str(exc)}
outcome["seconds"] = time.perf_counter() - started
with open(f"{folder}/rank{rank}.json", "w") as handle:
    json.dump(outcome, handle)
dist.destroy_process_group()
"""


def _two_ranks(tmp_path: Path, case: str) -> list[dict]:
    script = tmp_path / "decides.py"
    script.write_text(DECIDES)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             str(script), case, str(tmp_path)], capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]


def test_every_rank_hears_that_rank_0_could_not_claim(tmp_path):
    main, other = _two_ranks(tmp_path, "fails")
    assert main["error"] == "ConfigError" and "no other process is using" in main["message"]  # its own error
    assert other["error"] == "RunDirError"
    assert other["message"].startswith("rank 1: rank 0 could not claim the run directory somewhere: ConfigError")
    assert "no other process is using" in other["message"] and other["seconds"] < 2.0


def test_the_other_ranks_stop_waiting_when_rank_0_says_nothing(tmp_path):
    main, other = _two_ranks(tmp_path, "silent")
    assert other["error"] == "RunDirError" and "rank 0 did not say within 2 s" in other["message"]
    assert 1.5 < other["seconds"] < 7.0  # bounded by the timeout, not by rank 0's 8 s
    assert main.get("result") == "claimed" or main.get("error") == "RunDirError"


def test_a_locked_run_directory_under_torchrun_stops_every_rank_with_a_message(tmp_path):
    """End to end: another process holds the directory's lock; both ranks exit with an error, none hangs."""
    out = tmp_path / "held"
    out.mkdir()
    with open(out / ".lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "--tee=3",
             "-m", "node_transfer", "run", "--dataset", "digits", "--head", "fc", "--device", "cpu", "--quiet",
             "--out", str(out)], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode != 0 and time.perf_counter() - started < 240
    err = result.stderr
    assert "node-transfer: error: invalid parameter out=" in err and "holds its lock" in err  # rank 0
    assert "rank 1: rank 0 could not claim the run directory" in err  # the other rank, with rank 0's reason
