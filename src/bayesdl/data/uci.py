"""Small UCI data sets that ship inside scikit-learn and mlxtend, so they load offline."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from bayesdl.data._sources import check_float, check_int, check_split
from bayesdl.data.base import Data

__all__ = ["boston", "digits"]


def digits(
    split: Literal["train", "test"] = "train",
    *,
    test_fraction: float = 0.25,
    seed: int = 0,
) -> Data:
    """Load the UCI optical digits (scikit-learn's ``load_digits``): 1,797 8x8 images.

    The train/test split is stratified by class and fixed by ``seed``, so
    ``digits("train", seed=s)`` and ``digits("test", seed=s)`` never overlap and
    together are the whole set.

    Args:
        split: ``"train"`` or ``"test"``.
        test_fraction: Fraction of the images in the test split, in (0, 1).
        seed: Seed of the split; uses its own generator, never the global one.

    Returns:
        ``Data`` with x float32 (N, 1, 8, 8) in [0, 1] (grey levels 0..16 divided by
        16), y int64 (N,), ``num_classes=10``, ``name="digits-<split>"``.

    Raises:
        ImportError: If scikit-learn is missing (``pip install bayesdl[metrics]``).
        TypeError: If an argument has the wrong type.
        ValueError: If ``split`` is unknown or ``test_fraction`` is outside (0, 1).

    Examples:
        >>> train, test = digits("train"), digits("test")
        >>> len(train) + len(test), tuple(train.x.shape[1:])
        (1797, (1, 8, 8))
    """
    check_split(split, ("train", "test"))
    test_fraction = check_float(test_fraction, "test_fraction", 0.0, 1.0)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be strictly between 0 and 1, got {test_fraction}.")
    seed = check_int(seed, "seed", 0)
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as err:
        raise ImportError(
            "digits() needs scikit-learn; install it with `pip install bayesdl[metrics]`."
        ) from err
    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float32) / np.float32(16.0)
    labels = np.asarray(bunch.target, dtype=np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(labels.shape[0]),
        test_size=test_fraction,
        stratify=labels,
        random_state=seed,
    )
    idx = np.sort(train_idx if split == "train" else test_idx)
    return Data(
        x=torch.from_numpy(np.ascontiguousarray(images[idx][:, None])),
        y=torch.from_numpy(labels[idx]),
        name=f"digits-{split}",
        source="sklearn.datasets.load_digits",
        num_classes=10,
    )


#: Column names of the Boston housing data, in file order; the last is the target.
BOSTON_COLUMNS = (
    "CRIM",
    "ZN",
    "INDUS",
    "CHAS",
    "NOX",
    "RM",
    "AGE",
    "DIS",
    "RAD",
    "TAX",
    "PTRATIO",
    "B",
    "LSTAT",
    "MEDV",
)


def _mlxtend_boston_file() -> Path | None:
    """Locate mlxtend's ``data/data/boston_housing.csv`` without importing mlxtend."""
    try:
        spec = importlib.util.find_spec("mlxtend")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / "data" / "data" / "boston_housing.csv"
        if path.is_file():
            return path
    return None


def boston() -> Data:
    """Load the Boston housing regression data (Harrison and Rubinfeld, 1978).

    506 towns, 13 features (:data:`BOSTON_COLUMNS`), target the median home value in
    $1000s. Read from the CSV file bundled with the ``mlxtend`` package, unscaled:
    standardise features and target before training. Note the feature ``B`` encodes
    the proportion of Black residents, an ethically problematic construction; it is
    kept here only so results stay comparable with the Bayesian deep learning
    literature, which uses this set as a standard regression benchmark.

    Returns:
        ``Data`` with x float32 (506, 13), y float32 (506, 1), ``num_classes=None``,
        ``name="boston"`` and ``source`` the CSV path.

    Raises:
        ImportError: If mlxtend is not installed (``pip install bayesdl[data]``).
        ValueError: If the CSV does not have 506 rows of 14 numbers.
    """
    path = _mlxtend_boston_file()
    if path is None:
        raise ImportError(
            "boston() reads the CSV bundled with mlxtend, which was not found; "
            "install it with `pip install bayesdl[data]`."
        )
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as err:
        raise ValueError(f"{path}: not a numeric CSV ({err}); reinstall mlxtend.") from err
    if table.shape != (506, len(BOSTON_COLUMNS)) or not np.isfinite(table).all():
        raise ValueError(
            f"{path}: expected 506 rows of {len(BOSTON_COLUMNS)} finite numbers, got shape "
            f"{table.shape}; reinstall mlxtend."
        )
    table = table.astype(np.float32)
    return Data(
        x=torch.from_numpy(np.ascontiguousarray(table[:, :-1])),
        y=torch.from_numpy(np.ascontiguousarray(table[:, -1:])),
        name="boston",
        source=str(path),
        num_classes=None,
    )
