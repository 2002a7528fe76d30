"""Tests for bayesdl.data.fashion_mnist: IDX directories, Debian files, missing data."""

from __future__ import annotations

import importlib
import os

import numpy as np
import pytest
import torch

from bayesdl.data import fashion_mnist

# The package re-exports the function ``fashion_mnist``, which hides the module.
fashion_module = importlib.import_module("bayesdl.data.fashion_mnist")
DEBIAN_DIR = fashion_module.DEBIAN_DIR


@pytest.fixture
def debian_dir(tmp_path, monkeypatch):
    """Point the Debian location at an empty temporary directory."""
    path = tmp_path / "debian"
    path.mkdir()
    monkeypatch.setattr(fashion_module, "DEBIAN_DIR", path)
    return path


def _check(data, n, first_value, source_dir):
    assert data.x.shape == (n, 1, 28, 28) and data.x.dtype == torch.float32
    assert data.y.shape == (n,) and data.y.dtype == torch.int64
    assert data.num_classes == 10
    assert data.source.startswith(os.fspath(source_dir))
    torch.testing.assert_close(data.x[-1], torch.full((1, 28, 28), first_value / 255))
    assert data.y.tolist() == [i % 10 for i in range(n)]


@pytest.mark.parametrize("gz", [True, False])
def test_torchvision_layout(tmp_path, fake_image_set, debian_dir, gz):
    raw = tmp_path / "data" / "FashionMNIST" / "raw"
    fake_image_set(raw, 30, 12, gz)
    train = fashion_mnist("train", root=tmp_path / "data")
    _check(train, 30, 29, raw)
    assert train.name == "fashion-mnist-train"
    _check(fashion_mnist("test", root=tmp_path / "data"), 12, 255 - 11, raw)


def test_files_directly_in_root(tmp_path, fake_image_set, debian_dir):
    fake_image_set(tmp_path / "flat", 30, 12)
    _check(fashion_mnist("test", root=tmp_path / "flat"), 12, 244, tmp_path / "flat")


def test_env_var_then_debian(tmp_path, fake_image_set, debian_dir, monkeypatch):
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    monkeypatch.setenv("BAYESDL_DATA", str(env_dir))
    fake_image_set(debian_dir, 20, 5, gz=True)
    _check(fashion_mnist("test"), 5, 251, debian_dir)  # env dir empty: falls through
    fake_image_set(env_dir / "FashionMNIST" / "raw", 20, 6)
    _check(fashion_mnist("test"), 6, 250, env_dir)  # env dir comes first


def test_explicit_root_does_not_fall_back(tmp_path, fake_image_set, debian_dir):
    fake_image_set(debian_dir, 20, 5)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="Fashion-MNIST not found"):
        fashion_mnist("test", root=empty)


def test_missing_says_how_to_get_it(tmp_path, debian_dir):
    with pytest.raises(FileNotFoundError) as info:
        fashion_mnist("train")
    message = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert "download_fashion_mnist" in message and "BAYESDL_DATA" in message
    assert str(debian_dir) in message


def test_label_out_of_range(tmp_path, write_idx, debian_dir):
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((2, 28, 28), np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([3, 10], np.uint8))
    with pytest.raises(ValueError, match=r"labels must be in 0\.\.9, found 10"):
        fashion_mnist("test", root=tmp_path)


def test_count_mismatch(tmp_path, write_idx, debian_dir):
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((2, 28, 28), np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match="2 images but .* 3 labels"):
        fashion_mnist("test", root=tmp_path)


def test_bad_split():
    with pytest.raises(ValueError, match=r"split must be one of \['train', 'test'\]"):
        fashion_mnist("valid")  # type: ignore[arg-type]


@pytest.mark.skipif(
    not (DEBIAN_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
    reason=f"Debian dataset-fashion-mnist not installed in {DEBIAN_DIR} "
    "(`apt-get install dataset-fashion-mnist` to run this)",
)
@pytest.mark.parametrize(("split", "n"), [("train", 60_000), ("test", 10_000)])
def test_real_debian_files(split, n):
    data = fashion_mnist(split)
    assert data.source.startswith(os.fspath(DEBIAN_DIR))
    assert data.x.shape == (n, 1, 28, 28) and data.x.dtype == torch.float32
    assert float(data.x.min()) == 0.0 and float(data.x.max()) == 1.0
    assert torch.bincount(data.y, minlength=10).tolist() == [n // 10] * 10
