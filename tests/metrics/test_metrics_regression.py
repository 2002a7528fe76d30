"""Tests for bayesdl.metrics.regression."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from bayesdl.metrics import gaussian_nll, rmse


def test_rmse_hand_computed():
    mean = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    y = torch.tensor([[2.0, 2.0], [3.0, 1.0]])
    # Squared errors 1, 0, 0, 9 -> mean 2.5 -> sqrt(2.5).
    assert_close(rmse(mean, y), math.sqrt(2.5))


def test_rmse_zero_for_exact_predictions():
    x = torch.randn(10, 3, generator=torch.Generator().manual_seed(0))
    assert rmse(x, x.clone()) == 0.0


def test_gaussian_nll_hand_computed():
    # One example, D = 2: mean (0, 1), variance (1, 4), target (1, 1).
    #   d=0: 0.5 log(2 pi) + 0.5 log 1 + 1^2 / 2 = 0.5 log(2 pi) + 0.5
    #   d=1: 0.5 log(2 pi) + 0.5 log 4 + 0      = 0.5 log(2 pi) + log 2
    mean = torch.tensor([[0.0, 1.0]])
    var = torch.tensor([[1.0, 4.0]])
    y = torch.tensor([[1.0, 1.0]])
    expected = math.log(2 * math.pi) + 0.5 + math.log(2)
    assert_close(gaussian_nll(mean, var, y), expected)


@pytest.mark.parametrize("shape", [(50,), (50, 1), (50, 3)])
def test_gaussian_nll_matches_torch_normal(shape):
    g = torch.Generator().manual_seed(sum(shape))
    mean = torch.randn(shape, generator=g, dtype=torch.float64)
    var = torch.rand(shape, generator=g, dtype=torch.float64) * 2 + 0.05
    y = torch.randn(shape, generator=g, dtype=torch.float64) * 2
    log_prob = torch.distributions.Normal(mean, var.sqrt()).log_prob(y)
    per_example = log_prob if log_prob.dim() == 1 else log_prob.sum(dim=1)
    assert_close(gaussian_nll(mean, var, y), -per_example.mean().item())


@pytest.mark.parametrize("variance", [0.7, torch.tensor(0.7)])
def test_gaussian_nll_scalar_variance(variance):
    g = torch.Generator().manual_seed(1)
    mean = torch.randn(20, 2, generator=g, dtype=torch.float64)
    y = torch.randn(20, 2, generator=g, dtype=torch.float64)
    expected = gaussian_nll(mean, torch.full((20, 2), 0.7, dtype=torch.float64), y)
    assert_close(gaussian_nll(mean, variance, y), expected)


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_gaussian_nll_rejects_non_positive_variance(bad):
    mean = torch.zeros(3, 2)
    var = torch.ones(3, 2)
    var[1, 0] = bad
    with pytest.raises(ValueError, match=r"variance must be strictly positive.*\[1\]"):
        gaussian_nll(mean, var, torch.zeros(3, 2))
    with pytest.raises(ValueError, match="variance must be strictly positive"):
        gaussian_nll(mean, bad, torch.zeros(3, 2))


def test_regression_shape_mismatch():
    with pytest.raises(ValueError, match=r"y must have the same shape as mean.*\(4, 2\).*\(4, 3\)"):
        rmse(torch.zeros(4, 2), torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"variance must have the same shape as mean"):
        gaussian_nll(torch.zeros(4, 2), torch.ones(4, 1), torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"mean must have shape \(N, D\) or \(N,\)"):
        rmse(torch.zeros(2, 2, 2), torch.zeros(2, 2, 2))


def test_regression_nan_and_empty():
    y = torch.zeros(5, 1)
    mean = torch.zeros(5, 1)
    mean[3, 0] = float("nan")
    with pytest.raises(ValueError, match=r"mean contains 1 NaN.*\[3\]"):
        rmse(mean, y)
    with pytest.raises(ValueError, match=r"variance contains 1 NaN"):
        gaussian_nll(torch.zeros(5, 1), float("nan"), y)
    with pytest.raises(ValueError, match="mean is empty"):
        rmse(torch.zeros(0, 2), torch.zeros(0, 2))


def test_regression_type_errors():
    with pytest.raises(TypeError, match="mean must be a torch.Tensor"):
        rmse([1.0, 2.0], torch.zeros(2))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="variance"):
        gaussian_nll(torch.zeros(2), True, torch.zeros(2))  # type: ignore[arg-type]
