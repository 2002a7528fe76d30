"""Bad input gets an error naming the problem."""

import pytest
import torch
from torch import nn

import bayesdl as bdl


def _net():
    return nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Dropout(0.1), nn.Linear(8, 2))


def test_nan_in_x():
    x = torch.randn(10, 3)
    x[4, 1] = float("nan")
    with pytest.raises(
        ValueError, match=r"X contains 1 NaN value\(s\) in 1 row\(s\), first indices \[4\]"
    ):
        bdl.MAP(_net()).fit((x, torch.zeros(10, dtype=torch.long)), epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"x contains 1 NaN.*\[4\]"):
        bdl.MCDropout(_net()).predict(x)


def test_wrong_shapes_and_lengths():
    m = bdl.MAP(_net())
    with pytest.raises(ValueError, match="X and y have different lengths: X has 10 rows, y has 9"):
        m.fit((torch.randn(10, 3), torch.zeros(9, dtype=torch.long)), progress=False)
    with pytest.raises(ValueError, match=r"x has 5 features .* takes \(N, 3\)"):
        m.predict(torch.randn(10, 5))
    with pytest.raises(
        ValueError,
        match=r"y must hold one class index per example.*got shape \(1,\) per example; use y.squeeze",
    ):
        m.fit((torch.randn(10, 3), torch.zeros(10, 1, dtype=torch.long)), progress=False)


def test_labels_out_of_range_and_wrong_dtype():
    x = torch.randn(10, 3)
    with pytest.raises(
        ValueError, match=r"y must hold class indices in \[0, 2\).*e.g. \[2, 3, 4, 5\]"
    ):
        bdl.MeanFieldVI(_net()).fit((x, torch.arange(10) % 6), progress=False)
    with pytest.raises(TypeError, match="y must be an integer tensor"):
        bdl.MAP(_net()).fit((x, torch.zeros(10)), progress=False)


def test_empty_data():
    with pytest.raises(ValueError, match="X is empty"):
        bdl.MAP(_net()).fit((torch.randn(0, 3), torch.zeros(0, dtype=torch.long)), progress=False)
    with pytest.raises(ValueError, match="x is empty"):
        bdl.MAP(_net()).predict(torch.randn(0, 3))


def test_model_without_dropout():
    with pytest.raises(ValueError, match=r"MCDropout needs nn.Dropout layers.*add nn.Dropout\(p\)"):
        bdl.MCDropout(nn.Sequential(nn.Linear(3, 2)))


def test_bad_arguments():
    with pytest.raises(ValueError, match="samples must be a positive integer, got 0"):
        bdl.MCDropout(_net()).predict(torch.randn(4, 3), samples=0)
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        bdl.MAP(_net()).fit((torch.randn(4, 3), torch.zeros(4, dtype=torch.long)), epochs=0)
    with pytest.raises(ValueError, match="estimator must be"):
        bdl.MeanFieldVI(_net(), estimator="bogus")
    with pytest.raises(ValueError, match="subset entry 'nope' names no Linear/Conv layer"):
        bdl.MeanFieldVI(_net(), subset=["nope"])
    with pytest.raises(ValueError, match="head='nope' is not a submodule"):
        bdl.MCDropout(_net(), head="nope")
    with pytest.raises(ValueError, match="unknown method 'bogus'"):
        bdl.get_method("bogus")
    with pytest.raises(TypeError, match="data must be a DataLoader, a Dataset or a tuple"):
        bdl.MAP(_net()).fit([1, 2, 3], progress=False)


def test_regression_target_shape():
    m = bdl.MAP(nn.Linear(3, 1), likelihood=bdl.likelihoods.Gaussian())
    with pytest.raises(
        ValueError,
        match=r"regression targets must have shape \(N, 1\) or \(N,\) for a model with 1 "
        r"output\(s\) per example, got shape \(2,\) per example",
    ):
        m.fit((torch.randn(10, 3), torch.randn(10, 2)), progress=False)
    het = bdl.MAP(nn.Linear(3, 3), likelihood=bdl.likelihoods.HeteroscedasticGaussian())
    with pytest.raises(ValueError, match="needs 2D outputs"):
        het.fit((torch.randn(10, 3), torch.randn(10, 1)), progress=False)
