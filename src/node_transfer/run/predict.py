"""Classify new images with a finished run: `node-transfer predict RUN_DIR IMAGE_OR_FOLDER... [--csv [FILE]]`.

The model is rebuilt from the run's `config.json` (backbone, head, classes, the backbone's mean/std, memory
format) and its `best.pt`; images get the run's evaluation transform (resized one by one, normalised as a batch),
so a run's own test images are classified exactly as its test accuracy counted them.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..core.checkpoints import load_checkpoint
from ..core.config import ExperimentConfig
from ..core.errors import ConfigError, DataError
from ..core.rundir import BEST, CONFIG
from ..core.speed import settle
from ..model.backbones import create_backbone
from ..model.data import make_transforms
from ..model.tensor_images import BatchTransform
from ..model.transfer import TransferModel, apply_memory_format, head_from_config

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


@dataclass
class Predictor:
    """A trained model in eval mode with the transform and class names of its run."""

    model: torch.nn.Module
    transform: Callable  # PIL image -> uint8 tensor (3, S, S): the evaluation resize
    normalize: Callable  # uint8 batch -> the model's input
    class_names: list[str]
    device: torch.device


@dataclass
class Prediction:
    """The top classes of one image: (class index, class name, probability), most probable first."""

    path: str
    top: list[tuple[int, str, float]]


def load_predictor(run_dir: str | Path, device: str = "auto", checkpoint: str = BEST) -> Predictor:
    """Rebuild a run's model from `config.json` and `checkpoint` (no pretrained weights are fetched)."""
    run_dir = Path(run_dir)
    config_path, weights_path = run_dir / CONFIG, run_dir / checkpoint
    if not config_path.is_file() or not weights_path.is_file():
        raise ConfigError("run_dir", str(run_dir), f"a finished run directory holding {CONFIG} and {checkpoint}")
    resolved = json.loads(config_path.read_text())
    config = settle(ExperimentConfig.from_saved(resolved), None)  # a run made before a setting: as it was made
    backbone, _ = create_backbone(config.backbone, "none")  # every weight comes from the checkpoint
    num_classes = int(resolved["num_classes"])
    model = TransferModel(backbone, head_from_config(config, int(resolved["num_features"]), num_classes))
    model.load_state_dict(load_checkpoint(weights_path, parameter="run_dir")["model"])
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", device, "'cpu' or 'auto': no CUDA device is visible here")
    model.to(device).eval()
    apply_memory_format(model, config.memory_format, torch.device(device))
    evaluation = make_transforms(resolved["data_config"], config.image_size, train=False, dataset=config.dataset)
    resize = evaluation.transforms[0]
    names = resolved.get("class_names") or [str(i) for i in range(num_classes)]
    return Predictor(model, lambda image: torch.from_numpy(np.array(resize(image))).permute(2, 0, 1),
                     BatchTransform.for_dataset(resolved["data_config"], config.dataset, train=False),
                     [str(n) for n in names], torch.device(device))


def image_paths(inputs: Iterable[str | Path]) -> list[Path]:
    """Image files named directly, and those under folders (recursively, sorted by path)."""
    paths: list[Path] = []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ConfigError("images", str(item), f"a folder holding images ({', '.join(IMAGE_SUFFIXES)})")
            paths += found
        elif item.is_file():
            paths.append(item)
        else:
            raise ConfigError("images", str(item), "an existing image file or folder")
    return paths


def _load_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"cannot read image {str(path)!r}: {exc}") from None


@torch.no_grad()
def predict(predictor: Predictor, paths: list[Path], top: int = 3, batch_size: int = 64) -> list[Prediction]:
    """The `top` most probable classes of every image, in the order given."""
    if top < 1:
        raise ConfigError("top", top, "a positive integer")
    if batch_size < 1:
        raise ConfigError("batch_size", batch_size, "a positive integer")
    top = min(top, len(predictor.class_names))
    results = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start:start + batch_size]
        batch = predictor.normalize(torch.stack([predictor.transform(_load_image(p)) for p in chunk]))
        batch = batch.to(predictor.device)
        probabilities = predictor.model(batch).float().softmax(dim=1).cpu()
        values, indices = probabilities.topk(top, dim=1)
        for path, row_values, row_indices in zip(chunk, values.tolist(), indices.tolist()):
            results.append(Prediction(str(path), [(i, predictor.class_names[i], p)
                                                  for i, p in zip(row_indices, row_values)]))
    return results


def format_prediction(prediction: Prediction) -> str:
    """`path: name (97.1%), name (2.0%), ...`"""
    return f"{prediction.path}: " + ", ".join(f"{name} ({p * 100:.1f}%)" for _, name, p in prediction.top)


def write_csv(predictions: list[Prediction], handle) -> None:
    """One row per image: path, then class_k, probability_k for k = 1..top."""
    top = max((len(p.top) for p in predictions), default=0)
    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow(["path"] + [f"{kind}_{k}" for k in range(1, top + 1) for kind in ("class", "probability")])
    for prediction in predictions:
        writer.writerow([prediction.path] + [v for _, name, p in prediction.top for v in (name, f"{p:.6f}")])

