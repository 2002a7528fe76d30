"""Fixtures for bayesdl.data tests: hand-built IDX files and a clean environment."""

from __future__ import annotations

import gzip
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

_CODES = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype("i2"): 0x0B}
_CODES.update({np.dtype("i4"): 0x0C, np.dtype("f4"): 0x0D, np.dtype("f8"): 0x0E})


def _idx_bytes(array: np.ndarray) -> bytes:
    """Encode ``array`` as IDX by hand: 0, 0, type code, ndim, big-endian dims, data."""
    array = np.asarray(array)
    code = _CODES[array.dtype.newbyteorder("=")]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


WriteIdx = Callable[..., Path]


@pytest.fixture(scope="session")
def idx_bytes() -> Callable[[np.ndarray], bytes]:
    """Return the hand-written IDX encoder."""
    return _idx_bytes


@pytest.fixture
def write_idx() -> WriteIdx:
    """Return ``write(path, array, gz=False)`` that writes an IDX file and returns its path."""

    def write(path: Path, array: np.ndarray, gz: bool = False) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _idx_bytes(array)
        if gz:
            path = path.with_name(path.name + ".gz")
            data = gzip.compress(data, compresslevel=1)
        path.write_bytes(data)
        return path

    return write


@pytest.fixture
def fake_image_set(write_idx: WriteIdx) -> Callable[..., dict[str, np.ndarray]]:
    """Return ``make(directory, n_train, n_test, gz)`` writing a fake MNIST-like IDX set.

    Image ``i`` is filled with the value ``i % 256`` and its label is ``i % 10``, so
    tests can tell which rows a split took.
    """

    def make(directory: Path, n_train: int, n_test: int, gz: bool = False) -> dict:
        arrays = {}
        for prefix, n in (("train", n_train), ("t10k", n_test)):
            images = np.broadcast_to(
                (np.arange(n) % 256).astype(np.uint8)[:, None, None], (n, 28, 28)
            )
            labels = (np.arange(n) % 10).astype(np.uint8)
            if prefix == "t10k":
                images = 255 - images
            write_idx(directory / f"{prefix}-images-idx3-ubyte", np.ascontiguousarray(images), gz)
            write_idx(directory / f"{prefix}-labels-idx1-ubyte", labels, gz)
            arrays[prefix] = (images, labels)
        return arrays

    return make


@pytest.fixture(autouse=True)
def _no_env_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start without $BAYESDL_DATA, whatever the developer's shell has."""
    monkeypatch.delenv("BAYESDL_DATA", raising=False)
