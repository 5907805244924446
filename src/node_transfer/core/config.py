"""One experiment's parameters: a dataclass that is the CLI, the papermill parameters and config.json.

Every field is a `node-transfer run --name` option and a papermill parameter of `book/experiment.md` with the
same (underscored) name. `ExperimentConfig.from_dict` checks types strictly (papermill guesses types from
strings) and `validate` checks values, so bad input fails before any work starts, naming the parameter.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .choices import ACTIVATIONS, HEAD_KINDS, HEADS, NODE_STATES, OPTIMIZERS, REGULARIZATIONS, SCHEDULES
from .errors import ConfigError
from .solvers import DEFAULT_BACKEND, FAILURE_POLICIES, ODE_BACKENDS, SolverSettings, check_adjoint, check_fallback
from .speed import DATA_PATHS, MEMORY_FORMATS, with_legacy

DATASETS = ("cifar10", "digits", "fashion-mnist", "imagefolder")  # data.py imports this one list
DEVICES = ("auto", "cpu", "cuda")


def _choices(*values: str) -> dict:
    return {"choices": values}


@dataclass
class ExperimentConfig:
    """All parameters of one run. Defaults are a small offline CPU run of about a minute."""

    # data
    dataset: str = field(default="digits", metadata=_choices(*DATASETS) | {"help": "data set"})
    data_dir: str = field(default="data", metadata={"help": "folder holding (or receiving) the data"})
    download: bool = field(default=False, metadata={"help": "download CIFAR-10 or Fashion-MNIST into data_dir"})
    image_size: int = field(default=64, metadata={"help": "input side in pixels (32: native CIFAR)"})
    val_size: int | None = field(default=None, metadata={"help": "validation images from train (default: 5000 "
                                                                   "CIFAR-10, Fashion-MNIST; 10% otherwise)"})
    train_subset: int = field(default=0, metadata={"help": "use only this many training images (0: all)"})
    augment: bool = field(default=True, metadata={"help": "train-time augmentation"})
    num_workers: int = field(default=0, metadata={"help": "data loader worker processes (data_path pil)"})
    data_path: str = field(default="auto", metadata=_choices(*DATA_PATHS) | {"help": "tensor (decode once, "
                           "augment batches) or pil (older runs); auto: tensor if new"})
    # backbone
    backbone: str = field(default="tf_efficientnet_lite0", metadata={"help": "timm model name"})
    weights: str = field(default="imagenet", metadata={"help": "imagenet, none, or a checkpoint file"})
    freeze_backbone: bool = field(default=False, metadata={"help": "train the head only"})
    cache_features: bool = field(default=False, metadata={"help": "with a frozen backbone, compute "
                                                                   "features once and train on them"})
    feature_cache: str | None = field(default=None, metadata={"help": "folder keeping cached features "
                                                                         "across runs (None: memory only)"})
    # head
    head: str = field(default="node", metadata=_choices(*HEADS)
                      | {"help": "fc, node, or mlp (the NODE head's layers applied once: its control)"})
    dropout: float = field(default=0.0, metadata={"help": "dropout before the final linear layer"})
    node_state: str = field(default="vector", metadata=_choices(*NODE_STATES)
                            | {"help": "NODE on the pooled vector or on the feature map"})
    ode_width: int = field(default=256, metadata={"help": "hidden width of the ODE dynamics (and of the mlp head)"})
    ode_activation: str = field(default="softplus", metadata=_choices(*ACTIVATIONS))
    solver: str = field(default="dopri5", metadata={"help": "ODE method (tsit5 only with the torchode backend)"})
    rtol: float = field(default=1e-5, metadata={"help": "relative tolerance (adaptive solvers)"})
    atol: float = field(default=1e-5, metadata={"help": "absolute tolerance (adaptive solvers)"})
    step_size: float | None = field(default=None, metadata={"help": "step size (fixed-step solvers)"})
    t_end: float = field(default=1.0, metadata={"help": "integration end time T"})
    adjoint: bool = field(default=False, metadata={"help": "gradients by the adjoint method"})
    seminorm: bool = field(default=False, metadata={"help": "seminorm for the adjoint's error control"})
    max_num_steps: int = field(default=1000, metadata={"help": "bound on solver steps per solve"})
    on_solver_failure: str = field(default="stop", metadata=_choices(*FAILURE_POLICIES)
                                   | {"help": "stop, or fall back to a fixed-step solver"})
    fallback_solver: str = field(default="rk4", metadata={"help": "fixed-step method used on fallback"})
    fallback_step_size: float = field(default=0.25, metadata={"help": "its step size"})
    # beyond the paper
    regularization: str = field(default="none", metadata=_choices(*REGULARIZATIONS)
                                | {"help": "kinetic-energy / Jacobian-Frobenius penalties"})
    kinetic_weight: float = field(default=0.01, metadata={"help": "weight of the kinetic penalty"})
    jacobian_weight: float = field(default=0.01, metadata={"help": "weight of the Jacobian penalty"})
    steer: float = field(default=0.0, metadata={"help": "STEER half-width b: T ~ U[T-b, T+b] in training"})
    augment_dim: int = field(default=0, metadata={"help": "zero channels appended to the ODE state"})
    zero_init: bool = field(default=False, metadata={"help": "start the NODE block at the identity"})
    ode_backend: str = field(default=DEFAULT_BACKEND, metadata=_choices(*ODE_BACKENDS) | {
        "help": "lean: torchdiffeq's methods in a faster loop (new runs)"})
    # optimisation
    optimizer: str = field(default="adam", metadata=_choices(*OPTIMIZERS))
    lr: float = field(default=1e-3, metadata={"help": "learning rate"})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum"})
    weight_decay: float = field(default=0.0, metadata={"help": "weight decay"})
    schedule: str = field(default="none", metadata=_choices(*SCHEDULES) | {"help": "learning-rate schedule"})
    lr_milestones: str = field(default="", metadata={"help": "comma-separated epochs where the step schedule "
                                                              "decays lr"})
    lr_gamma: float = field(default=0.1, metadata={"help": "factor at each milestone"})
    epochs: int = field(default=3, metadata={"help": "maximum number of epochs"})
    batch_size: int = field(default=64, metadata={"help": "batch size"})
    seed: int = field(default=0, metadata={"help": "seed of every random number generator"})
    device: str = field(default="auto", metadata=_choices(*DEVICES))
    amp: bool = field(default=True, metadata={"help": "bf16 autocast on CUDA (ignored on the CPU)"})
    memory_format: str = field(default="auto", metadata=_choices(*MEMORY_FORMATS) | {"help": "backbone layout; "
                               "auto: channels_last if new; channels_last_on_cuda: old runs, NCHW on CPU"})
    init_from: str | None = field(default=None, metadata={"help": "start from a finished run "
                                                                      "(directory or checkpoint)"})
    target_val_acc: float | None = field(default=None, metadata={"help": "stop once val acc reaches it"})
    patience: int = field(default=0, metadata={"help": "stop once the val loss has not improved for this many "
                                                       "epochs (0: never)"})
    fine_evals: int = field(default=8, metadata={"help": "fine curves in fine.csv: validation-subset "
                                                         "evaluations per epoch (0: none)"})
    fine_val_size: int = field(default=100, metadata={"help": "images of that validation subset"})
    reproduce_run: str | None = field(default=None, metadata={"help": "a finished run to repeat exactly: stop at "
                                                                         "the first epoch that differs"})
    # output
    out: str | None = field(default=None, metadata={"help": "run directory (must not exist unless resume)"})
    resume: bool = field(default=False, metadata={"help": "continue the run in --out"})

    # ------------------------------------------------------------------ construction
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ExperimentConfig:
        """Build from a mapping, rejecting unknown names and values of the wrong type."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(unknown[0], values[unknown[0]], f"one of the parameters {sorted(known)}")
        hints = typing.get_type_hints(cls)
        clean = {name: _check_type(name, value, hints[name]) for name, value in values.items()}
        return cls(**clean)

    @classmethod
    def from_saved(cls, values: dict[str, Any]) -> ExperimentConfig:
        """A configuration a run saved (config.json, a checkpoint, an executed page), read as it was made: the
        settings it predates take the values runs had then (`speed.LEGACY`); other names are dropped."""
        return cls.from_dict(with_legacy({k: v for k, v in values.items() if k in cls.field_names()}))

    @classmethod
    def from_json(cls, path: str | Path) -> ExperimentConfig:
        return cls.from_saved(json.loads(Path(path).read_text()))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> ExperimentConfig:
        return ExperimentConfig.from_dict({**self.to_dict(), **changes})

    # ------------------------------------------------------------------ checks
    def validate(self, check_paths: bool = True) -> ExperimentConfig:
        """Check every value; raise ConfigError naming the parameter, value and what is valid."""
        for f in fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise ConfigError(f.name, getattr(self, f.name), f"one of {list(choices)}")
        _positive(self, "image_size", "epochs", "batch_size", "lr", "rtol", "atol", "t_end",
                  "max_num_steps", "ode_width", "fallback_step_size", "lr_gamma", "fine_val_size")
        _non_negative(self, "train_subset", "num_workers", "patience", "weight_decay", "steer", "augment_dim",
                      "kinetic_weight", "jacobian_weight", "dropout", "fine_evals")
        if self.image_size < 16:
            raise ConfigError("image_size", self.image_size, "an integer >= 16")
        if not 0 <= self.seed < 2**63:
            raise ConfigError("seed", self.seed, "an integer in [0, 2**63)")
        if self.val_size is not None and self.val_size < 1:
            raise ConfigError("val_size", self.val_size, "a positive integer, or None for the default")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError("momentum", self.momentum, "a number in [0, 1)")
        if self.dropout >= 1.0:
            raise ConfigError("dropout", self.dropout, "a number in [0, 1)")
        if self.steer >= self.t_end:
            raise ConfigError("steer", self.steer, f"a number in [0, t_end={self.t_end})")
        if self.target_val_acc is not None and not 0.0 < self.target_val_acc <= 1.0:
            raise ConfigError("target_val_acc", self.target_val_acc, "a fraction in (0, 1], or None")
        if self.step_size is not None and not self.step_size > 0:
            raise ConfigError("step_size", self.step_size, "a positive number, or None")
        self.milestones()  # parses or raises
        if HEAD_KINDS[self.head].solves:
            SolverSettings.from_config(self).check()
            check_adjoint(self.adjoint, self.regularization, self.ode_backend)
            if self.on_solver_failure == "fallback":
                check_fallback(self.fallback_solver, self.ode_backend)
        if self.cache_features and not self.freeze_backbone:
            raise ConfigError("cache_features", True, "False unless freeze_backbone=True "
                              "(features can only be cached when the backbone does not train)")
        if self.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise ConfigError("device", "cuda", "'cpu' or 'auto': no CUDA device is visible here")
        from ..model.backbones import check_backbone_name

        check_backbone_name(self.backbone)
        if check_paths:
            self._validate_paths()
        return self

    def validate_inputs(self) -> None:
        """Check the paths a run reads (weights, data, feature cache); suites check these before they start."""
        if self.weights not in ("imagenet", "none") and not Path(self.weights).is_file():
            raise ConfigError("weights", self.weights, "'imagenet', 'none' or the path of an existing file")
        if self.dataset in ("cifar10", "imagefolder") and not self.download:
            if not Path(self.data_dir).is_dir():
                hint = " (or pass download=True for CIFAR-10)" if self.dataset == "cifar10" else ""
                raise ConfigError("data_dir", self.data_dir, f"an existing directory{hint}")
        if self.feature_cache is not None and Path(self.feature_cache).exists() \
                and not Path(self.feature_cache).is_dir():
            raise ConfigError("feature_cache", self.feature_cache, "a directory (or None), not a file")

    def _validate_paths(self) -> None:
        from .rundir import HISTORY, LAST, is_restartable

        self.validate_inputs()
        if self.init_from is not None and not Path(self.init_from).exists():
            raise ConfigError("init_from", self.init_from, "an existing run directory or checkpoint file")
        if self.reproduce_run is not None and not (Path(self.reproduce_run) / HISTORY).is_file():
            raise ConfigError("reproduce_run", self.reproduce_run, f"a finished run directory (with {HISTORY}), "
                              "or None")
        if self.out is not None:
            out = Path(self.out)
            if out.exists() and not out.is_dir():
                raise ConfigError("out", self.out, "a run directory, not a file")
            has_checkpoint = (out / LAST).is_file()
            if out.exists() and not self.resume and not is_restartable(out):
                raise ConfigError("out", self.out, "a directory that does not exist yet "
                                  "(pass resume=True to continue the run in it)")
            if self.resume and not has_checkpoint and not is_restartable(out):
                raise ConfigError("resume", True, f"False: {self.out!r} holds no {LAST} to resume from")
            _check_creatable(out)
        elif self.resume:
            raise ConfigError("resume", True, "False unless out names the run directory to continue")

    def milestones(self) -> list[int]:
        """The epochs of `lr_milestones` as integers (empty list when unset)."""
        text = self.lr_milestones.strip()
        if not text:
            return []
        try:
            values = [int(part) for part in text.split(",")]
        except ValueError:
            raise ConfigError("lr_milestones", self.lr_milestones,
                              "comma-separated epoch numbers such as '60,100,140'") from None
        if any(v <= 0 for v in values) or values != sorted(values):
            raise ConfigError("lr_milestones", self.lr_milestones, "increasing positive epoch numbers")
        return values


_DEFAULTS = {f.name: f.default for f in fields(ExperimentConfig)}


def default(name: str) -> Any:
    """The default of one parameter: the dataclass is the one place each default is written."""
    return _DEFAULTS[name]
def _check_creatable(path: Path) -> None:
    """ConfigError unless `path` exists as a writable directory or can be made under its nearest existing parent."""
    import os

    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError("out", str(path), f"a directory that can be created ({str(existing)!r} is a file)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError("out", str(path), f"a directory that can be created ({str(existing)!r} is not writable)")


def _positive(cfg: ExperimentConfig, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not (value > 0 and math.isfinite(value)):
            raise ConfigError(name, value, "a finite number > 0")


def _non_negative(cfg: ExperimentConfig, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not (value >= 0 and math.isfinite(value)):
            raise ConfigError(name, value, "a finite number >= 0")


def _check_type(name: str, value: Any, hint: Any) -> Any:
    """Return `value` if it fits the type hint (ints are accepted for floats), else raise ConfigError."""
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)
    base = next(a for a in typing.get_args(hint) if a is not type(None)) if optional else hint
    if value is None:
        if optional:
            return None
        raise ConfigError(name, value, f"a value of type {base.__name__}")
    if base is bool:
        ok = isinstance(value, bool)
    elif base is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif base is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, base)
    if not ok:
        kind = base.__name__ + (" or None" if optional else "")
        raise ConfigError(name, value, f"a value of type {kind}, got {type(value).__name__}")
    return value
