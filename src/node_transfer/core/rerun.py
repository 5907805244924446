"""Running a recorded configuration again: a run's `config.json` read back as options, for
`node-transfer run --config RUN_DIR/config.json` and for papermill (`-f params.yaml`).

A run's `config.json` holds every option, resolved, plus entries it records but that are not options (`versions`,
`device_resolved`, `sizes`, ...: `RECORDED_ENTRIES`). A re-run takes the options, drops `out` and `resume` (it
never writes into the recorded run), reads a setting the run predates as runs had it then (`speed.LEGACY`), and
compares the recorded libraries, CPU and thread count with this machine's: a run reproduces bit for bit only on the
same ones. A file that is not a run configuration, or that names a field this version lacks, is refused.
torch-free: the command line's checks use it before anything heavy loads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .config import ExperimentConfig
from .errors import ConfigError
from .rundir import CONFIG
from .speed import with_legacy

#: What a run's config.json records besides its options (`run.experiment.prepare` writes them): facts of its data,
#: model, machine and libraries, never given. A re-run does not take them; `versions` and `torch_threads` are
#: compared with this machine's.
RECORDED_ENTRIES = ("device_resolved", "world_size", "num_classes", "class_names", "num_features", "data_config",
                    "sizes", "init_from_head_tensors", "versions", "torch_threads", "started_at", "weights_source")
#: Entries every run's config.json has held since the first run: what tells one from other JSON (metrics.json).
RUN_CONFIG_MARKERS = ("dataset", "backbone", "head", "epochs", "seed", "versions")
#: Options that say where the recorded run was written, not what it computed: a re-run starts without them.
NOT_RERUN = ("out", "resume")
#: Recorded versions that decide the numbers a run computes (`platform` names the kernel, which does not).
COMPARED_VERSIONS = ("python", "torch", "torchvision", "timm", "torchdiffeq", "cpu", "cpu_capability")


def read_run_config(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The options of a recorded run (its config.json, or its run directory) and the whole file as recorded.

    ConfigError naming `config` when the file is not a run configuration or names fields this version lacks; a
    recorded value of the wrong type is named by its own parameter."""
    given = Path(path)
    file = given / CONFIG if given.is_dir() else given
    expected = f"a run's {CONFIG} (or its run directory)"
    try:
        recorded = json.loads(file.read_text())
    except FileNotFoundError:
        raise ConfigError("config", str(path), f"{expected}: {str(file)!r} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError("config", str(path), f"{expected}: {str(file)!r} is not readable JSON ({exc})") from None
    if not isinstance(recorded, dict):
        raise ConfigError("config", str(path), f"{expected}: {str(file)!r} holds a JSON "
                          f"{type(recorded).__name__}, not a run configuration")
    missing = [name for name in RUN_CONFIG_MARKERS if name not in recorded]
    if missing:
        raise ConfigError("config", str(path), f"{expected}, which records every option and the library versions; "
                          f"{str(file)!r} is not a run configuration (it lacks {', '.join(missing)})")
    options = ExperimentConfig.field_names()
    unknown = [name for name in recorded if name not in options and name not in RECORDED_ENTRIES]
    if unknown:
        versions = recorded["versions"] if isinstance(recorded["versions"], dict) else {}
        raise ConfigError("config", str(path), f"a run configuration this version of node-transfer can read; "
                          f"{str(file)!r} (written by node-transfer {versions.get('node_transfer', '?')}) names "
                          f"field(s) this version lacks: {', '.join(unknown)}. Re-run it with the version that wrote "
                          "it, or delete those entries from a copy of the file if running without them is what "
                          "you mean")
    values = with_legacy({name: value for name, value in recorded.items()
                          if name in options and name not in NOT_RERUN})
    ExperimentConfig.from_dict(values)  # a recorded value of the wrong type is named here
    return values, recorded


def environment_differences(recorded: Mapping[str, Any], versions: Mapping[str, Any], threads: int,
                            device_type: str) -> list[str]:
    """What differs between where a run was recorded and here ("torch 2.14.1 here, 2.13.0 in the run"), for a note;
    `device_type` is the kind of device the re-run will use (cpu, cuda)."""
    saved = recorded.get("versions") if isinstance(recorded.get("versions"), dict) else {}
    differences = [f"{name} {versions.get(name, 'unknown')} here, " + (f"{saved[name]} in the run" if name in saved
                                                                        else "not recorded by the run")
                   for name in COMPARED_VERSIONS if saved.get(name) != versions.get(name)]
    device = recorded.get("device_resolved")
    if isinstance(device, str) and device.split(":")[0] != device_type:
        differences.append(f"device {device_type} here, {device} in the run")
    if isinstance(recorded.get("torch_threads"), int) and recorded["torch_threads"] != threads:
        differences.append(f"torch threads {threads} here, {recorded['torch_threads']} in the run (OMP_NUM_THREADS "
                           "sets them)")
    return differences


def papermill_parameters(config: ExperimentConfig) -> str:
    """Every option of `config` as a YAML file for papermill's `-f` (book/experiment.md's parameters)."""
    import yaml

    return yaml.safe_dump(config.to_dict(), sort_keys=False)
