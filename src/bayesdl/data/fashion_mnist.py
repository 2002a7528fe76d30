"""Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017): 28x28 grey clothing images, 10 classes.

A drop-in replacement for MNIST, used here as out-of-distribution data for models
trained on MNIST. "train" is the official 60,000 images, "test" the official 10,000.

References:
    H. Xiao, K. Rasul, R. Vollgraf. Fashion-MNIST: a novel image dataset for
    benchmarking machine learning algorithms. arXiv:1708.07747, 2017.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

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

__all__ = ["CLASSES", "fashion_mnist"]

SPLITS = ("train", "test")

#: Class names, indexed by label.
CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

#: Where Debian's ``dataset-fashion-mnist`` package installs the gzipped IDX files.
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _missing(searched: list[Path]) -> FileNotFoundError:
    places = "\n".join(f"    {p}" for p in searched)
    return FileNotFoundError(
        "Fashion-MNIST not found. Looked for IDX files (train-images-idx3-ubyte[.gz], "
        "train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], "
        f"t10k-labels-idx1-ubyte[.gz]) in:\n{places}\n"
        "Get the data in one of these ways:\n"
        f"  1. sudo apt-get install dataset-fashion-mnist   (Debian/Ubuntu, installs {DEBIAN_DIR})\n"
        "  2. put the IDX files in a directory DIR (or DIR/FashionMNIST/raw) and call "
        f"fashion_mnist(root=DIR) or set {ENV_VAR}=DIR\n"
        "  3. bayesdl.data.download_fashion_mnist(DIR) downloads them with SHA-256 checks; "
        "then fashion_mnist(root=DIR)"
    )


def fashion_mnist(
    split: Literal["train", "test"] = "train",
    *,
    root: str | os.PathLike[str] | None = None,
) -> Data:
    """Load a Fashion-MNIST split as float32 images in [0, 1] and int64 labels.

    Sources, in order:

    1. ``root`` if given, else the directory in ``$BAYESDL_DATA``: IDX files (plain or
       ``.gz``) in torchvision layout ``<dir>/FashionMNIST/raw/`` or directly in
       ``<dir>``. An explicit ``root`` is the only place searched; ``$BAYESDL_DATA``
       falls through to the next source when it has no Fashion-MNIST files.
    2. Debian's ``dataset-fashion-mnist`` package, ``/usr/share/datasets/fashion-mnist/``.

    Nothing is downloaded; call :func:`bayesdl.data.download_fashion_mnist` for that.

    Args:
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000).
        root: Directory with the IDX files, or None to use ``$BAYESDL_DATA`` and then
            the Debian package.

    Returns:
        ``Data`` with x float32 (N, 1, 28, 28) equal to ``byte / 255``, y int64 (N,)
        (names in :data:`CLASSES`), ``num_classes=10``, ``name="fashion-mnist-<split>"``
        and ``source`` the images file.

    Raises:
        TypeError: If ``split`` or ``root`` has the wrong type.
        ValueError: If ``split`` is unknown, or a file is damaged.
        FileNotFoundError: If no source has the data; the message says how to get it.

    Examples:
        >>> ood = fashion_mnist("test")  # doctest: +SKIP
        >>> ood.x.shape  # doctest: +SKIP
        torch.Size([10000, 1, 28, 28])
    """
    check_split(split, SPLITS)
    directory, explicit = resolve_root(root)
    searched = idx_dirs(directory, "FashionMNIST") if directory is not None else []
    if explicit:
        candidates = [searched]
    else:
        candidates = [searched, [DEBIAN_DIR]] if searched else [[DEBIAN_DIR]]
    for directories in candidates:
        pair = find_idx_pair(directories, *_FILES[split])
        if pair is not None:
            images, labels = load_image_pair(*pair)
            return image_data(
                images,
                labels,
                name=f"fashion-mnist-{split}",
                source=os.fspath(pair[0]),
                num_classes=10,
            )
    raise _missing([d for directories in candidates for d in directories])
