"""The device check's first sections: the machine and its libraries, and every head and gradient path trained as
`node-transfer run` trains it, watched from outside (global module hooks, the data loaders' first batches).

Every run of the check reads Fashion-MNIST with `gpucheck.carry`'s seed and split (the images carried), and is
built from the `gpu` profile's settings (`suites.profiles.GPU_BASE`: CUDA, bf16 autocast, batches of 128, 8 loader
workers) with Lite0 and its offline ImageNet weights instead of B0, whose weights come from the internet.
"""

from __future__ import annotations

import csv
import math
import os
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core.choices import HEAD_KINDS
from ..core.rundir import HISTORY, METRICS, read_json
from ..core.suitedir import RUNS_ROOT
from ..suites.profiles import FROZEN, GPU_BASE, NODE_ADJOINT, NODE_RK
from .carry import SEED, TRAIN_IMAGES, VAL_SIZE
from .driver import Context
from .report import Findings

#: (label, changes to the check's base configuration): every head, gradient method and ODE backend.
HEAD_PATHS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("fc", {"head": "fc"}),
    ("node-dopri5", dict(NODE_RK)),
    ("node-adjoint", dict(NODE_ADJOINT)),  # Adam for every path: one epoch checks the machinery, not a recipe
    ("node-torchode", {**NODE_RK, "ode_backend": "torchode"}),
    ("mlp", {"head": "mlp"}),
    ("node-map", {**NODE_RK, "node_state": "map", "image_size": 64}),  # the feature-map NODE (2 x 2 map at 64 px)
    ("node-cached", {**NODE_RK, **FROZEN, "feature_cache": None}),  # head-only on features extracted on the GPU
)


def check_config(context: Context, label: str, changes: dict[str, Any]) -> dict[str, Any]:
    """The `gpu` profile's settings on the check's Fashion-MNIST subset with Lite0, one epoch, then `changes`."""
    base = {**GPU_BASE, "dataset": "fashion-mnist", "data_dir": context.data_dir, "download": False,
            "backbone": "tf_efficientnet_lite0", "weights": "imagenet", "val_size": VAL_SIZE, "seed": SEED,
            "train_subset": 128 if context.small else 1024, "epochs": 1, "device": context.device,
            "num_workers": 0 if context.small else GPU_BASE["num_workers"],
            "out": str(Path(context.work) / RUNS_ROOT / label)}
    return {**base, **changes}


def cli_arguments(config: dict[str, Any]) -> list[str]:
    """`node-transfer run` options for a configuration (booleans as --flag / --no-flag, None as 'none')."""
    arguments = []
    for name, value in config.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            arguments.append(flag if value else f"--no-{name.replace('_', '-')}")
        else:
            arguments += [flag, "none" if value is None else str(value)]
    return arguments


def read_run(run_dir: Path) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """A finished run's metrics.json and history.csv rows."""
    metrics = read_json(run_dir / METRICS, "run metrics")
    with open(run_dir / HISTORY, newline="") as handle:
        return metrics, list(csv.DictReader(handle))


def finite(*values: Any) -> bool:
    try:
        return all(math.isfinite(float(v)) for v in values)
    except (TypeError, ValueError):
        return False


class Observer:
    """While active, records what the run does without touching its code: the dtype each kind of module returns
    (timm's backbone modules, the package's heads, ODE block, dynamics and the ODE state they see), whether every
    4-D weight of the backbone is channels_last (what `memory_format` lays out; a head's convolutions stay NCHW),
    and each loader's first batch (pinned or not): torch's DataLoader, or `TensorBatches` on the tensor data path
    (whose inner DataLoader of positions is left out)."""

    def __init__(self) -> None:
        self.dtypes: dict[str, set[str]] = defaultdict(set)
        self.channels_last: dict[int, bool] = {}
        self.loaders: list[dict[str, Any]] = []

    def _hook(self, module: Any, args: tuple, output: Any) -> None:
        import torch

        origin = type(module).__module__
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.dim() == 4 and origin.startswith("timm."):
            self.channels_last[id(module)] = weight.is_contiguous(memory_format=torch.channels_last)
        key = "backbone" if origin.startswith("timm.") else type(module).__name__ \
            if origin.startswith("node_transfer.") else None
        if key is None:
            return
        first = output[0] if isinstance(output, (tuple, list)) and output else output
        if isinstance(first, torch.Tensor):
            self.dtypes[key].add(str(first.dtype).removeprefix("torch."))
        if key == "_CountedDynamics" and len(args) > 1:  # (t, state): the state a solver hands the dynamics
            state = args[1][0] if isinstance(args[1], (tuple, list)) else args[1]
            self.dtypes["ode_state"].add(str(state.dtype).removeprefix("torch."))
        if key in ("FCHead", "MLPHead", "NODEHead") and args:
            self.dtypes["head_input"].add(str(args[0].dtype).removeprefix("torch."))

    def __enter__(self) -> Observer:
        import torch
        from torch.utils.data import DataLoader

        self._handle = torch.nn.modules.module.register_module_forward_hook(self._hook)
        from ..model.tensor_images import TensorBatches

        self._iters = {DataLoader: DataLoader.__iter__, TensorBatches: TensorBatches.__iter__}
        loaders = self.loaders

        def watching(original: Callable) -> Callable:
            def watched(loader: Any):
                if isinstance(getattr(loader, "dataset", None), range):  # TensorBatches' positions
                    yield from original(loader)
                    return
                for index, batch in enumerate(original(loader)):
                    if index == 0:
                        inputs = batch[0]
                        loaders.append({"loader": type(loader).__name__, "pin_memory": loader.pin_memory,
                                        "workers": getattr(loader, "num_workers", 0),
                                        "pinned": bool(inputs.is_pinned()), "shape": tuple(inputs.shape)})
                    yield batch
            return watched

        for kind, original in self._iters.items():
            kind.__iter__ = watching(original)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._handle.remove()
        for kind, original in self._iters.items():
            kind.__iter__ = original

    def all_channels_last(self) -> bool:
        return bool(self.channels_last) and all(self.channels_last.values())


def nccl_version() -> str:
    """NCCL's version as torch reports it (a tuple in recent releases, an integer in older ones)."""
    import torch

    version = torch.cuda.nccl.version()
    return ".".join(map(str, version)) if isinstance(version, (tuple, list)) else str(version)


def nvidia_smi() -> str:
    """The GPU and driver as nvidia-smi reports them (name, driver version, memory)."""
    query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
    return subprocess.run(query, capture_output=True, text=True, timeout=30, check=True).stdout.strip()


def environment(context: Context, findings: Findings) -> None:
    """The GPU, driver, torch/CUDA/cuDNN/NCCL versions, the libraries; the carried wheels and data as the package
    sees them; every `gpu`-profile configuration validated here."""
    import torch

    from ..run.experiment import library_versions

    findings.fact("torch", torch.__version__)
    findings.fact("torch CUDA build", torch.version.cuda)
    findings.fact("cuDNN", torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None)
    findings.fact("CPU cores", os.cpu_count())
    with findings.guard("library versions"):
        for name, version in library_versions().items():
            findings.fact(name, version)
    if context.device == "cuda":
        props = torch.cuda.get_device_properties(0)
        findings.fact("GPU", f"{props.name}, compute capability {props.major}.{props.minor}, "
                      f"{props.total_memory / 2**30:.1f} GiB, {props.multi_processor_count} multiprocessors")
        findings.fact("GPUs visible", torch.cuda.device_count())
        with findings.guard("nvidia-smi"):
            findings.fact("nvidia-smi", nvidia_smi())
        with findings.guard("NCCL version"):
            findings.fact("NCCL", nccl_version())
        findings.check("bf16 supported", torch.cuda.is_bf16_supported())
        a = torch.randn(1024, 1024, device="cuda")
        with torch.autocast("cuda", dtype=torch.bfloat16):
            product = a @ a
        error = ((product.float() - a @ a).abs().max() / (a @ a).abs().max()).item()
        findings.check("bf16 matmul under autocast", product.dtype == torch.bfloat16 and error < 0.05,
                       f"dtype {product.dtype}, relative error {error:.2e}")
    with findings.guard("torchode importable"):
        import torchode

        findings.check("torchode importable", True, f"{getattr(torchode, '__version__', '?')} from "
                                                    f"{Path(torchode.__file__).parent}")
    with findings.guard("Lite0 ImageNet weights (offline)"):
        from ..model.backbones import create_backbone

        backbone, data_config = create_backbone("tf_efficientnet_lite0", "imagenet")
        findings.check("Lite0 ImageNet weights (offline)", backbone.num_features == 1280,
                       f"mean {data_config['mean']}, std {data_config['std']}")
    with findings.guard("Fashion-MNIST through the package"):
        blank_images(context, findings)
    with findings.guard("gpu profile configurations"):
        gpu_profile(context, findings)


def blank_images(context: Context, findings: Findings) -> None:
    """Read the check's split through `data.build_datasets` and count blank images: zero means every image the
    check trains and validates on was carried (the seeded split is the same here as where it was prepared)."""
    from ..model.backbones import create_backbone
    from ..model.data import build_datasets

    started = time.perf_counter()
    _, data_config = create_backbone("tf_efficientnet_lite0", "none")
    splits = build_datasets("fashion-mnist", context.data_dir, False, 32, VAL_SIZE, SEED, data_config,
                            augment=False, train_subset=TRAIN_IMAGES)
    findings.fact("Fashion-MNIST sizes", {"train": len(splits.train), "val": len(splits.val),
                                          "test": len(splits.test)})
    findings.fact("Fashion-MNIST classes", splits.class_names)
    blank = {name: sum(float(part[i][0].std()) == 0.0 for i in range(len(part)))
             for name, part in (("train", splits.train), ("val", splits.val), ("test", splits.test))}
    findings.check("no blank image in the check's train, val and test images", not any(blank.values()),
                   f"blank images {blank} (read in {time.perf_counter() - started:.1f} s)")


def gpu_profile(context: Context, findings: Findings) -> None:
    """Every configuration of every suite on the `gpu` profile passes validation here (CUDA visible)."""
    from ..core.config import ExperimentConfig
    from ..suites.registry import SUITES, get_suite

    count = 0
    for name in SUITES:
        for run in get_suite(name, "gpu"):
            params = dict(run.params, device=context.device)
            ExperimentConfig.from_dict(params).validate(check_paths=False)
            count += 1
    findings.check("gpu profile: every suite configuration validates", count > 0, f"{count} configurations")


def heads(context: Context, findings: Findings) -> None:
    """One epoch of each head path, in process through `run_experiment` (what `node-transfer run` calls)."""
    import torch

    from ..core.config import ExperimentConfig
    from ..run.experiment import run_experiment

    cuda = context.device == "cuda"
    for label, changes in HEAD_PATHS:
        with findings.guard(label):
            config = ExperimentConfig.from_dict(check_config(context, label, changes))
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            started = time.perf_counter()
            with Observer() as seen:
                run_dir = run_experiment(config, progress=True)
            seconds = time.perf_counter() - started
            metrics, history = read_run(run_dir)
            loaders = seen.loaders
            findings.row("runs", head=label, seconds=round(seconds, 1), train_loss=metrics["train_loss"],
                         val_acc=metrics["val_acc"], test_acc=metrics["test_acc"], nfe_forward=metrics["nfe_forward"],
                         nfe_backward=metrics["nfe_backward"], images_per_s=metrics["images_per_s"],
                         peak_memory_mb=round(metrics["peak_memory_mb"]), backbone=sorted(seen.dtypes["backbone"]),
                         head_input=sorted(seen.dtypes["head_input"]), ode_state=sorted(seen.dtypes["ode_state"]),
                         weights_channels_last=f"{sum(seen.channels_last.values())}/{len(seen.channels_last)}",
                         first_batch_pinned=[loader["pinned"] for loader in loaders])
            losses = [metrics[k] for k in ("train_loss", "val_loss", "test_loss")]
            losses += [row[k] for row in history for k in ("train_loss", "val_loss")]
            findings.check(f"{label}: finite losses", finite(*losses), f"test loss {metrics['test_loss']:.4f}")
            findings.check(f"{label}: head input float32", seen.dtypes["head_input"] == {"float32"},
                           sorted(seen.dtypes["head_input"]))
            if HEAD_KINDS[config.head].solves:
                findings.check(f"{label}: ODE state float32", seen.dtypes["ode_state"] == {"float32"},
                               sorted(seen.dtypes["ode_state"]))
                findings.check(f"{label}: NFE counted", metrics["nfe_forward"] > 0
                               and (metrics["nfe_backward"] > 0) == config.adjoint,
                               f"forward {metrics['nfe_forward']}, backward {metrics['nfe_backward']}")
            else:
                findings.check(f"{label}: no NFE without an ODE", metrics["nfe_forward"] == 0)
            if cuda:
                if not config.cache_features:
                    findings.check(f"{label}: backbone under bf16 autocast", "bfloat16" in seen.dtypes["backbone"],
                                   sorted(seen.dtypes["backbone"]))
                findings.check(f"{label}: backbone's 4-D weights channels_last", seen.all_channels_last(),
                               f"{sum(seen.channels_last.values())}/{len(seen.channels_last)}")
                findings.check(f"{label}: batches pinned (pin_memory)", bool(loaders) and all(
                    loader["pinned"] for loader in loaders if loader["pin_memory"]) and any(
                    loader["pin_memory"] for loader in loaders), loaders[:2])
                findings.check(f"{label}: peak CUDA memory recorded", metrics.get("memory_kind") ==
                               "cuda_max_allocated" and metrics["peak_memory_mb"] > 0,
                               f"{metrics['peak_memory_mb']:.0f} MB")
