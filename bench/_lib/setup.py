"""The command line every benchmark shares, and the device it runs on (the package's own selection)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from node_transfer.core.distributed import DistInfo
from node_transfer.core.distributed import resolve_device as package_device

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "results" / "bench"
CACHE = ROOT / "bench" / "_cache"  # features shared between scripts; git-ignored (bench/.gitignore)


def parser(description: str) -> argparse.ArgumentParser:
    """The options every benchmark takes: --device, --quick, --compile, --backbone, --image-size, --batch-size."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cuda: bf16 autocast for the backbone, channels_last, data kept on the GPU")
    p.add_argument("--quick", action="store_true", help="a smoke test: fewer repetitions and configurations")
    p.add_argument("--compile", action="store_true", help="torch.compile the backbone's forward_features")
    p.add_argument("--backbone", default="tf_efficientnet_lite0", help="timm model name")
    p.add_argument("--weights", default="imagenet", help="imagenet, none, or a weights file")
    p.add_argument("--image-size", type=int, default=64, help="input side in pixels")
    p.add_argument("--batch-size", type=int, default=64, help="batch size")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0: torch's default, one per core); 1 is steadier on a busy machine")
    return p


def resolve_device(name: str, threads: int = 0) -> torch.device:
    """The torch device for --device, chosen as a run of the package chooses it (`distributed.resolve_device`:
    TF32 and cudnn autotuning on CUDA, glibc's malloc keeping freed memory on the CPU); --device cuda without a
    visible GPU stops with a clear message."""
    if threads:
        torch.set_num_threads(threads)
    if name == "cuda" and not torch.cuda.is_available():
        build = torch.version.cuda or "none (a CPU-only build)"
        sys.exit(f"error: --device cuda, but no CUDA device is visible here (torch {torch.__version__}, "
                 f"CUDA build: {build}, CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}). "
                 "Run this script on a GPU machine, or use --device cpu.")
    return package_device(name, DistInfo())
