"""The tensor data path (`data_path="tensor"`): every image decoded and resized once into memory as uint8 at the
run's image size, then whole batches augmented and normalised as tensors.

Evaluation images equal the PIL path's bit for bit: the same PIL resize (done once), then ToTensor's division by
255 and Normalize's subtraction and division, on the batch. The training augmentations are tensor forms of
`data.make_transforms`' (a random crop with zero padding and a horizontal flip; a random affine map with nearest
sampling; a random resized crop and a flip), drawn per image from a generator seeded from the training loop's
(which is re-seeded from (seed, epoch) every epoch, so a resumed run replays them). They follow the same
distributions as the PIL path's, not the same random draws, so a run's numbers differ between the two paths; for an
image folder the resized crop is cut from the image as stored at the run's size, not from the original file.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from ..core.errors import DataError

#: The augmentation of each data set, as `data.make_transforms` chooses it for the PIL path.
AUGMENTATIONS = {"cifar10": "crop_flip", "fashion-mnist": "crop_flip", "digits": "affine",
                 "imagefolder": "resized_crop_flip"}


@dataclass(frozen=True)
class BatchTransform:
    """uint8 images (B, C, S, S), C = 1 (grayscale) or 3, to normalised float32 (B, 3, S, S), augmented or not."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: str = "none"
    interpolation: str = "bilinear"

    @classmethod
    def for_dataset(cls, data_config: dict, dataset: str, train: bool) -> BatchTransform:
        """The transform of one split: the backbone's mean and std; the data set's augmentation when `train`."""
        return cls(tuple(data_config["mean"]), tuple(data_config["std"]), AUGMENTATIONS[dataset] if train else "none",
                   data_config.get("interpolation") or "bilinear")

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.augment == "crop_flip":
            images = crop_flip(images, generator)
        elif self.augment == "affine":
            images = random_affine(images, generator)
        elif self.augment == "resized_crop_flip":
            images = resized_crop_flip(images, generator, InterpolationMode(self.interpolation))
        return normalize(images, self.mean, self.std)


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """ToTensor's `x / 255` and Normalize's `(x - mean) / std` on a uint8 batch, grayscale repeated to 3 channels:
    the same float operations as torchvision's per-image transforms, so the same values."""
    x = images.to(torch.float32).div(255)
    x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
    mean_t = torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (x - mean_t).div_(std_t)


def crop_flip(images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """RandomCrop(S, padding=S // 8) (zero fill) and RandomHorizontalFlip, per image, by one gather."""
    b, _, h, w = images.shape
    pad = h // 8
    padded = F.pad(images, (pad, pad, pad, pad)).permute(0, 2, 3, 1)  # (B, H + 2p, W + 2p, C)
    offsets = torch.randint(0, 2 * pad + 1, (b, 2), generator=generator)
    flip = torch.rand(b, generator=generator) < 0.5
    rows = offsets[:, :1] + torch.arange(h)
    cols = offsets[:, 1:] + torch.arange(w)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    return padded[torch.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return float(torch.empty(1).uniform_(low, high, generator=generator))


def random_affine(images: torch.Tensor, generator: torch.Generator | None, degrees: float = 10.0,
                  translate: float = 0.1) -> torch.Tensor:
    """RandomAffine(degrees, translate=(t, t)) with nearest sampling and zero fill, per image (torchvision's op)."""
    _, _, h, w = images.shape
    out = []
    for image in images:
        angle = _uniform(-degrees, degrees, generator)
        shift = [round(_uniform(-translate * w, translate * w, generator)),
                 round(_uniform(-translate * h, translate * h, generator))]
        out.append(TF.affine(image, angle=angle, translate=shift, scale=1.0, shear=[0.0, 0.0],
                             interpolation=InterpolationMode.NEAREST, fill=0))
    return torch.stack(out)


def _crop_box(h: int, w: int, generator: torch.Generator | None, scale: tuple[float, float] = (0.6, 1.0),
              ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop.get_params, drawn from `generator`: (top, left, height, width)."""
    for _ in range(10):
        area = h * w * _uniform(*scale, generator)
        aspect = math.exp(_uniform(math.log(ratio[0]), math.log(ratio[1]), generator))
        cw, ch = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(torch.randint(0, h - ch + 1, (1,), generator=generator))
            left = int(torch.randint(0, w - cw + 1, (1,), generator=generator))
            return top, left, ch, cw
    return 0, 0, h, w  # a square image: the whole of it is a valid crop


def resized_crop_flip(images: torch.Tensor, generator: torch.Generator | None,
                      interpolation: InterpolationMode) -> torch.Tensor:
    """RandomResizedCrop(S, scale=(0.6, 1)) and RandomHorizontalFlip, per image, of the stored S x S images."""
    _, _, h, w = images.shape
    out = []
    for image in images:
        top, left, ch, cw = _crop_box(h, w, generator)
        crop = TF.resized_crop(image, top, left, ch, cw, [h, w], interpolation=interpolation, antialias=True)
        out.append(crop.flip(-1) if float(torch.rand(1, generator=generator)) < 0.5 else crop)
    return torch.stack(out)


class ImageTensors(Dataset):
    """One split in memory: uint8 images (N, C, S, S), labels, their positions in the source data set (`indices`),
    and its `BatchTransform`. Loaders (`make_loader`) take whole batches; an item is one image through the same
    transform (augmentation from torch's global generator), for code that indexes a data set."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, indices: Sequence[int],
                 transform: BatchTransform) -> None:
        self.images, self.labels, self.indices, self.transform = images, labels, list(indices), transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.images[i:i + 1])[0], int(self.labels[i])

    def subset(self, positions: Sequence[int]) -> ImageTensors:
        """The images at `positions` of this split, with the same transform."""
        chosen = torch.as_tensor(list(positions), dtype=torch.int64)
        return ImageTensors(self.images[chosen], self.labels[chosen], [self.indices[i] for i in chosen.tolist()],
                            self.transform)


def _pil_image(base: Dataset, index: int) -> Image.Image:
    """An image of a source data set as PIL decodes it; grayscale arrays stay one channel (resized alike)."""
    arrays = getattr(base, "images", None)  # data.ArrayImages: uint8 arrays in memory
    if isinstance(arrays, np.ndarray):
        return Image.fromarray(arrays[index])
    try:
        return base[index][0]
    except OSError as exc:  # PIL: not an image, truncated, zero bytes
        samples = getattr(base, "samples", None)  # an ImageFolder names its files
        name = repr(samples[index][0]) if samples else f"{index} of the data set"
        raise DataError(f"cannot read image {name} ({exc}); remove or replace the file and run again") from None


def tensor_split(base: Dataset, positions: Sequence[int], resize: Callable, transform: BatchTransform) -> ImageTensors:
    """Decode and `resize` (the PIL path's evaluation resize) the images at `positions` of `base`, once."""
    positions = list(positions)
    pixels = [np.asarray(resize(_pil_image(base, i))) for i in positions]
    if not pixels:
        raise DataError("a split of the data set is empty")
    stacked = np.stack(pixels)
    stacked = stacked[..., None] if stacked.ndim == 3 else stacked  # (N, S, S, C)
    images = torch.from_numpy(stacked).permute(0, 3, 1, 2)
    labels = torch.as_tensor([int(_label(base, i)) for i in positions], dtype=torch.int64)
    return ImageTensors(images, labels, positions, transform)


def _label(base: Dataset, index: int) -> int:
    for name in ("labels", "targets"):  # ArrayImages, CIFAR10 and ImageFolder keep their labels in memory
        values = getattr(base, name, None)
        if values is not None:
            return values[index]
    return base[index][1]


class TensorBatches:
    """Batches of an `ImageTensors` split: positions from a DataLoader over the split's range (its shuffling,
    sampler and generator, so the same order as the PIL path's loader), images by indexing, then the transform.

    Augmentation draws from a generator seeded by one draw from the loader's generator, taken once the shuffled
    order is drawn (so the order stays the PIL path's): the training loop re-seeds that generator from (seed,
    epoch) every epoch, which fixes each epoch's augmentations. Without one, the seed comes from torch's."""

    def __init__(self, dataset: ImageTensors, batch_size: int, shuffle: bool, sampler, generator, pin_memory: bool):
        self.dataset, self.generator, self.pin_memory = dataset, generator, pin_memory
        self.rank = getattr(sampler, "rank", 0)  # DistributedSampler: each process augments its own images
        self.positions = DataLoader(range(len(dataset)), batch_size=batch_size, shuffle=shuffle, sampler=sampler,
                                    generator=generator, collate_fn=torch.tensor)

    def __len__(self) -> int:
        return len(self.positions)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        data = self.dataset
        batches = iter(self.positions)
        first = next(batches, None)  # the sampler has drawn this epoch's order
        if first is None:
            return
        generator = None
        if data.transform.augment != "none":
            seed = int(torch.randint(2**62, (1,), generator=self.generator))
            generator = torch.Generator().manual_seed(seed + self.rank)
        for positions in itertools.chain([first], batches):
            images = data.transform(data.images[positions], generator)
            yield (images.pin_memory() if self.pin_memory else images), data.labels[positions]


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool = False, sampler=None,
                generator: torch.Generator | None = None, num_workers: int = 0, pin_memory: bool = False):
    """(images, labels) batches of a split: `TensorBatches` on the tensor data path (no workers needed), else
    torch's DataLoader with these arguments."""
    if isinstance(dataset, ImageTensors):
        return TensorBatches(dataset, batch_size, shuffle, sampler, generator, pin_memory)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, sampler=sampler, generator=generator,
                      num_workers=num_workers, pin_memory=pin_memory)
