"""Tests for the Data container."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from bayesdl.data import Data


def make(n: int = 5) -> Data:
    return Data(torch.arange(n * 2.0).reshape(n, 2), torch.arange(n), "toy", "test", 5)


def test_basic_interface():
    d = make()
    assert len(d) == 5
    x, y = d.as_tuple()
    assert x is d.x and y is d.y
    xi, yi = d[3]
    torch.testing.assert_close(xi, torch.tensor([6.0, 7.0]))
    assert int(yi) == 3
    assert isinstance(d, Dataset)
    assert "float32[5, 2]" in repr(d) and "int64[5]" in repr(d)


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        make().name = "other"  # type: ignore[misc]


def test_works_with_dataloader():
    batches = list(DataLoader(make(), batch_size=2))
    assert [b[0].shape[0] for b in batches] == [2, 2, 1]
    torch.testing.assert_close(torch.cat([b[1] for b in batches]), torch.arange(5))


@pytest.mark.parametrize(
    "indices",
    [[4, 0, 2], np.array([4, 0, 2]), torch.tensor([4, 0, 2]), [-1, 0, -3], (4, 0, 2)],
    ids=["list", "numpy", "tensor", "negative", "tuple"],
)
def test_subset_positions(indices):
    sub = make().subset(indices)
    assert sub.y.tolist() == [4, 0, 2]
    torch.testing.assert_close(sub.x[0], torch.tensor([8.0, 9.0]))
    assert (sub.name, sub.source, sub.num_classes) == ("toy", "test", 5)


def test_subset_mask_and_empty():
    d = make()
    mask = torch.tensor([True, False, True, False, False])
    assert d.subset(mask).y.tolist() == [0, 2]
    assert d.subset(mask.numpy()).y.tolist() == [0, 2]
    empty = d.subset([])
    assert len(empty) == 0 and empty.x.shape == (0, 2)


def test_subset_copies():
    d = make()
    sub = d.subset([0])
    sub.x.zero_()
    assert d.x[0, 1] == 1.0


@pytest.mark.parametrize(
    ("indices", "error", "message"),
    [
        ([5], ValueError, "out of range"),
        ([-6], ValueError, "out of range"),
        ([0.5], TypeError, "integers or a boolean mask"),
        (torch.tensor([0.0]), TypeError, "integers or a boolean mask"),
        ([[0, 1]], ValueError, "1-d"),
        ([True, False], ValueError, "needs length 5"),
    ],
)
def test_subset_errors(indices, error, message):
    with pytest.raises(error, match=message):
        make().subset(indices)


def test_validation():
    x, y = torch.zeros(3, 2), torch.zeros(3)
    with pytest.raises(ValueError, match="3 examples but Data.y has 2"):
        Data(x, torch.zeros(2), "a", "b")
    with pytest.raises(TypeError, match="torch.from_numpy"):
        Data(np.zeros((3, 2)), y, "a", "b")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="leading example dimension"):
        Data(torch.tensor(1.0), torch.tensor(1.0), "a", "b")
    with pytest.raises(TypeError, match="name must be a str"):
        Data(x, y, 1, "b")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="num_classes must be an int"):
        Data(x, y, "a", "b", True)
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        Data(x, y, "a", "b", 0)
    assert Data(x, y, "a", "b").num_classes is None
