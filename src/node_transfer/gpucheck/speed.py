"""The device check's speed sections: images per second of one training step with the FC head and with the NODE
head (backprop and adjoint), for full fine-tuning and for the head alone on pooled features, with the data
loader's own rate beside them; Lite0 at 32 and 224 px, and EfficientNet-B0.

Models come from `experiment.prepare` (what a run builds: bf16 autocast and channels_last on CUDA), one fixed
batch of real Fashion-MNIST images on the device, configurations timed in alternating rounds (the order reversed
every other round), the median round taken, the GPU synchronised around each timed round; ratios within one run.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from ..suites.profiles import NODE_ADJOINT, NODE_RK
from .carry import TRAIN_IMAGES
from .driver import Context
from .report import Findings
from .sections import check_config

SPEED_PATHS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("fc", {"head": "fc"}), ("node", dict(NODE_RK)), ("node-adjoint", dict(NODE_ADJOINT)))
BATCH = 128  # the gpu profile's batch size


def timed_rounds(steps: dict[str, Callable[[], None]], sync: Callable[[], None], rounds: int,
                 per_round: int) -> dict[str, float]:
    """Median seconds per step of each named step function, measured in alternating rounds."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for index in range(rounds):
        for name in names if index % 2 == 0 else names[::-1]:
            sync()
            started = time.perf_counter()
            for _ in range(per_round):
                steps[name]()
            sync()
            times[name].append((time.perf_counter() - started) / per_round)
    return {name: statistics.median(values) for name, values in times.items()}


def build(context: Context, label: str, changes: dict[str, Any]):
    """A prepared model (as a run builds it) and one batch of real training images on its device."""
    import torch

    from ..core.config import ExperimentConfig
    from ..run.experiment import prepare

    changes = {"train_subset": max(BATCH, 256 if context.small else TRAIN_IMAGES), **changes}
    prepared = prepare(ExperimentConfig.from_dict(check_config(context, f"speed-{label}", changes)), check_paths=False)
    images, labels = zip(*(prepared.splits.train[i] for i in range(BATCH)))
    batch = torch.stack(images).to(prepared.device), torch.tensor(labels, device=prepared.device)
    return prepared, batch


def training_step(model: Any, parameters: list, inputs: Any, labels: Any, amp: bool) -> Callable[[], None]:
    """One step as the Trainer takes it: forward under bf16 autocast (on CUDA), cross-entropy in float32,
    backward, Adam."""
    import torch
    import torch.nn.functional as F

    optimizer = torch.optim.Adam(parameters, lr=1e-3)

    def step() -> None:
        with torch.autocast(inputs.device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(inputs)
        loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def counted(step: Callable[[], None], blocks: list, nfe: dict, key: tuple[str, str]) -> Callable[[], None]:
    """`step`, keeping in `nfe[key]` the NFE (forward, backward) of its ODE blocks' last pass (the fine-tuning and
    head-only steps share a head, so each step's own count is taken when it runs)."""
    nfe[key] = (0, 0)

    def step_and_count() -> None:
        step()
        nfe[key] = (sum(b.nfe_forward for b in blocks), sum(b.nfe_backward for b in blocks))

    return step_and_count


def time_backbone(context: Context, findings: Findings, backbone: str, weights: str, size: int, note: str = "",
                  loader: bool = True) -> None:
    """Fine-tuning and head-only steps of each head on one backbone at one image size (and the loader's rate)."""
    import torch

    from ..model.heads import ode_blocks

    cuda = context.device == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    rounds, per_round, warmup = (1, 1, 1) if context.small else (5, 5, 3)
    steps, nfe, memory = {}, {}, {}
    loader_rate = None
    for label, changes in SPEED_PATHS:
        prepared, (images, labels) = build(context, label, {**changes, "backbone": backbone, "weights": weights,
                                                            "image_size": size})
        model = prepared.model.train()
        if loader and loader_rate is None:
            loader_rate = loader_images_per_s(prepared, cuda)
        with torch.no_grad():
            features = model.features(images).float().mean(dim=(2, 3))
        for kind, module, inputs, amp in (("fine-tune", model, images, cuda), ("head only", model.head, features,
                                                                               False)):
            step = training_step(module, [p for p in module.parameters() if p.requires_grad], inputs, labels, amp)
            for _ in range(warmup):
                step()
            sync()
            if cuda:
                before = torch.cuda.memory_allocated()
                torch.cuda.reset_peak_memory_stats()
                step()
                sync()
                memory[(kind, label)] = (torch.cuda.max_memory_allocated() - before) / 2**20
            steps[(kind, label)] = counted(step, ode_blocks(module), nfe, (kind, label))
        print(f"{backbone} {size} px: {label} built and warmed up", flush=True)
    seconds = timed_rounds({f"{k}|{h}": s for (k, h), s in steps.items()}, sync, rounds, per_round)
    for (kind, label), (forward, backward) in nfe.items():
        per_step = seconds[f"{kind}|{label}"]
        findings.row("steps", backbone=backbone + note, px=size, step=kind, head=label, ms=round(per_step * 1e3, 2),
                     images_per_s=round(BATCH / per_step), node_over_fc=round(per_step / seconds[f"{kind}|fc"], 2),
                     nfe_forward=forward, nfe_backward=backward,
                     step_memory_mb=round(memory[(kind, label)]) if (kind, label) in memory else None)
    if loader_rate is not None:
        findings.row("data loader", px=size, images_per_s=loader_rate, images=len(prepared.splits.train),
                     what="train split, augmented, the gpu profile's workers, pin_memory on CUDA")


def loader_images_per_s(prepared: Any, cuda: bool) -> float:
    """Images per second the training loader delivers (the profile's workers, pin_memory on CUDA), model idle."""
    from torch.utils.data import DataLoader

    config = prepared.config
    loader = DataLoader(prepared.splits.train, batch_size=config.batch_size, shuffle=True,
                        num_workers=config.num_workers, pin_memory=cuda)
    seen, started = 0, 0.0
    for index, (images, _) in enumerate(loader):
        if index == 0:  # the workers' start is not the loader's rate
            started = time.perf_counter()
        else:
            seen += len(images)
    return round(seen / max(time.perf_counter() - started, 1e-9))


def throughput(context: Context, findings: Findings) -> None:
    """Lite0 (the offline ImageNet weights) at 32 and 224 px."""
    findings.fact("batch", BATCH)
    findings.fact("NODE heads", "dopri5 rtol = atol = 1e-5 by backprop; dopri5 1e-3 by the adjoint (the paper's "
                                "arms), width 256 (the gpu profile's)")
    for size in (32,) if context.small else (32, 224):
        with findings.guard(f"Lite0 at {size} px"):
            time_backbone(context, findings, "tf_efficientnet_lite0", "imagenet", size)


def b0(context: Context, findings: Findings) -> None:
    """EfficientNet-B0 (the gpu profile's backbone): with its ImageNet weights when they are on disk; its step time
    with random weights in any case (the time of a step does not depend on the weights' values; the NODE head's
    NFE does, so B0's NODE rows with random weights are not those of trained features)."""
    from ..core.errors import BackboneError
    from ..model.backbones import create_backbone

    sizes = (32,) if context.small else (32, 224)
    try:
        create_backbone("efficientnet_b0", "imagenet")
        on_disk = True
        findings.fact("B0 ImageNet weights", "on disk (timm's Hugging Face cache)")
    except BackboneError as exc:
        on_disk = False
        findings.fact("B0 ImageNet weights", "not on disk: the ImageNet-weight rows are skipped")
        findings.note(f"B0 with ImageNet weights skipped: {str(exc)[:300]}")
    for size in sizes:
        if on_disk:
            with findings.guard(f"B0 ImageNet at {size} px"):
                time_backbone(context, findings, "efficientnet_b0", "imagenet", size, loader=False)
        with findings.guard(f"B0 random init at {size} px"):
            time_backbone(context, findings, "efficientnet_b0", "none", size, note=" (random init)", loader=False)
