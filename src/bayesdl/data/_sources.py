"""Shared helpers: argument checks, finding IDX files, turning image arrays into Data."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from bayesdl.data.base import Data
from bayesdl.data.idx import read_idx

#: Environment variable naming a directory of IDX files, searched when ``root`` is None.
ENV_VAR = "BAYESDL_DATA"


def check_split(split: object, allowed: Sequence[str]) -> str:
    """Return ``split`` if it is one of ``allowed``, else raise naming the choices."""
    if not isinstance(split, str):
        raise TypeError(f"split must be a str, one of {list(allowed)}, got {type(split).__name__}.")
    if split not in allowed:
        raise ValueError(f"split must be one of {list(allowed)}, got {split!r}.")
    return split


def check_int(value: object, name: str, minimum: int) -> int:
    """Return ``value`` if it is an int (not bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}.")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    return int(value)


def check_float(value: object, name: str, low: float, high: float | None = None) -> float:
    """Return ``value`` as float if it is a finite real in [low, high] (high inclusive)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}.")
    value = float(value)
    if not np.isfinite(value) or value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be finite and {bounds}, got {value}.")
    return value


def resolve_root(root: str | os.PathLike[str] | None) -> tuple[Path | None, bool]:
    """Return the directory to search and whether the user passed it explicitly.

    An explicit ``root`` must exist; the ``BAYESDL_DATA`` directory is only a hint.
    """
    if root is not None:
        if not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"root must be a str or Path, got {type(root).__name__}.")
        path = Path(root).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(
                f"root={os.fspath(root)!r} is not a directory; pass the directory that "
                "holds the IDX files (or its parent in torchvision layout)."
            )
        return path, True
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return Path(env).expanduser(), False
    return None, False


def idx_dirs(root: Path, subdir: str) -> list[Path]:
    """Directories to search under ``root``: torchvision layout first, then ``root`` itself."""
    return [root / subdir / "raw", root]


def _find(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        path = directory / name
        if path.is_file():
            return path
    return None


def find_idx_pair(
    directories: Sequence[Path], images: str, labels: str
) -> tuple[Path, Path] | None:
    """Find an images file and a labels file in the same directory.

    Returns ``None`` if neither is in any directory; raises ``FileNotFoundError`` if a
    directory holds one of the two, so a half-finished download is not skipped silently.
    """
    for directory in directories:
        found_images, found_labels = _find(directory, images), _find(directory, labels)
        if found_images and found_labels:
            return found_images, found_labels
        if found_images or found_labels:
            present = found_images or found_labels
            missing = labels if found_images else images
            raise FileNotFoundError(
                f"{present} is there but {missing}[.gz] is missing from {directory}; "
                "put both files there (or download them again)."
            )
    return None


def load_image_pair(
    images_path: Path, labels_path: Path, *, num_classes: int = 10, size: int = 28
) -> tuple[np.ndarray, np.ndarray]:
    """Read and check an IDX images/labels pair: (N, size, size) uint8, (N,) int64."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (size, size):
        raise ValueError(
            f"{images_path}: expected uint8 images of shape (N, {size}, {size}), got "
            f"{images.dtype} {images.shape}; is this the right file?"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(
            f"{labels_path}: expected uint8 labels of shape (N,), got {labels.dtype} "
            f"{labels.shape}; is this the right file?"
        )
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{images_path} has {images.shape[0]} images but {labels_path} has "
            f"{labels.shape[0]} labels; the two files do not belong together."
        )
    if labels.size and int(labels.max()) >= num_classes:
        raise ValueError(
            f"{labels_path}: labels must be in 0..{num_classes - 1}, found {int(labels.max())}."
        )
    return images, labels.astype(np.int64)


def image_data(
    images: np.ndarray, labels: np.ndarray, *, name: str, source: str, num_classes: int
) -> Data:
    """Wrap uint8 images (N, H, W) as float32 (N, 1, H, W) in [0, 1] plus int64 labels."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(torch.float32).div_(255.0)
    y = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))
    return Data(x=x.unsqueeze(1), y=y, name=name, source=source, num_classes=num_classes)
