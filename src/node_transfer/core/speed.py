"""How fast a run goes without changing what it studies: the backbone's memory format and the data path.

Two recorded settings (config fields, CLI options, papermill parameters):

- `memory_format`: `channels_last` lays out the backbone's weights and inputs as NHWC, the fast format of
  oneDNN's CPU convolutions (about 3x a Lite0 training step, 4x its inference here) and of cuDNN's;
  `contiguous` keeps NCHW; `channels_last_on_cuda` is what every run did before the setting existed
  (channels_last for the whole model on CUDA only, NCHW on the CPU). The heads always get NCHW features.
- `data_path`: `tensor` decodes and resizes every image once into a uint8 tensor at the run's image size,
  then augments and normalises whole batches as tensors; `pil` is what every run did before (a PIL image
  per image and epoch through torchvision's transforms). Evaluation images are the same on both.

`auto` (the default) is `FAST` for a new run; a resumed run keeps what it was started with, and a run
continued from another (`init_from`) takes that run's. A configuration saved before these settings existed
(a `config.json`, a checkpoint, an executed experiment page) lacks them and is read with `LEGACY`, so that
committed runs resume, rebuild and re-execute to the same numbers. torch-free: the config imports this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .solvers import LEGACY_BACKEND

if TYPE_CHECKING:  # annotations only: config imports this module
    from .config import ExperimentConfig

MEMORY_FORMATS = ("auto", "channels_last", "contiguous", "channels_last_on_cuda")
DATA_PATHS = ("auto", "tensor", "pil")
#: What `auto` becomes for a new run: the fastest settings measured (bench/loop_overhead.py).
FAST: dict[str, str] = {"memory_format": "channels_last", "data_path": "tensor"}
#: What runs made before these settings existed used; a saved configuration without them means these.
#: (`ode_backend`, whose new default is `lean`, was recorded by every run made before that default changed; runs
#: made before fine curves existed had none.)
LEGACY_LOOP: dict[str, str] = {"memory_format": "channels_last_on_cuda", "data_path": "pil",
                               "ode_backend": LEGACY_BACKEND}
LEGACY: dict[str, Any] = {**LEGACY_LOOP, "fine_evals": 0}


def with_legacy(saved: Mapping[str, Any]) -> dict[str, Any]:
    """A saved configuration with the settings it lacks filled in as the run that wrote it used them."""
    return {**LEGACY, **saved}


def settle(config: ExperimentConfig, source: Mapping[str, Any] | None) -> ExperimentConfig:
    """`config` with `auto` replaced: by the value in `source` (the saved configuration of the run resumed or
    continued from, read with `LEGACY` where it lacks one), or by `FAST` when there is no such run."""
    base = {**FAST, **{k: v for k, v in with_legacy(source).items() if v != "auto"}} if source is not None else FAST
    changes = {name: base[name] for name in FAST if getattr(config, name) == "auto"}
    return config.replace(**changes) if changes else config


def uses_channels_last(memory_format: str, device_type: str) -> bool:
    """Whether the backbone runs in channels_last on this device type under `memory_format` (settled)."""
    return memory_format == "channels_last" or (memory_format == "channels_last_on_cuda" and device_type == "cuda")
