"""Regression metrics: root mean squared error and Gaussian negative log-likelihood.

Inputs are predictive means, variances and targets of shape (N, D) (or (N,) for
one output), on any device; results are Python floats.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from bayesdl.metrics._validate import check_finite, check_regression, check_same_shape

__all__ = ["gaussian_nll", "rmse"]


def rmse(mean: Tensor, y: Tensor) -> float:
    r"""Root mean squared error over all N x D entries.

    .. math:: \mathrm{RMSE} = \sqrt{\frac{1}{ND}\sum_{i,d} (\mu_{id} - y_{id})^2}

    Args:
        mean: Predictive means, shape (N, D) or (N,).
        y: Targets, the same shape as ``mean``.

    Returns:
        RMSE (>= 0), in the units of ``y``.

    Raises:
        TypeError: If an argument is not a real tensor.
        ValueError: If an input is empty, has NaN/inf, is not 1-D/2-D, or the shapes
            differ.

    Examples:
        >>> import torch
        >>> rmse(torch.tensor([1.0, 2.0]), torch.tensor([4.0, 6.0]))  # sqrt((9 + 16) / 2)
        3.5355339059327378
    """
    m = check_regression(mean, "mean")
    t = check_regression(y, "y")
    check_same_shape(t, "y", m, "mean")
    return (m - t.to(m.device)).pow(2).mean().sqrt().item()


def gaussian_nll(mean: Tensor, variance: Tensor | float, y: Tensor) -> float:
    r"""Mean Gaussian negative log density of the targets, summed over output dimensions.

    .. math:: \frac{1}{N}\sum_i \sum_d \Big[\tfrac12\log(2\pi\sigma^2_{id})
        + \frac{(y_{id} - \mu_{id})^2}{2\sigma^2_{id}}\Big]

    This is the full density, constant included, so it can be compared with published
    numbers; it treats the predictive distribution as a Gaussian with independent outputs.

    Args:
        mean: Predictive means, shape (N, D) or (N,).
        variance: Predictive variances, the same shape as ``mean``, or a positive number
            (a Python float or 0-d tensor) shared by all entries.
        y: Targets, the same shape as ``mean``.

    Returns:
        Mean negative log-likelihood per example, in nats.

    Raises:
        TypeError: If an argument is not a real tensor (or number, for ``variance``).
        ValueError: If an input is empty, has NaN/inf, is not 1-D/2-D, the shapes differ,
            or a variance is not strictly positive.

    Examples:
        >>> import math, torch
        >>> nll = gaussian_nll(torch.zeros(2, 1), 1.0, torch.zeros(2, 1))
        >>> math.isclose(nll, 0.5 * math.log(2 * math.pi))
        True
    """
    m = check_regression(mean, "mean")
    t = check_regression(y, "y")
    check_same_shape(t, "y", m, "mean")
    t = t.to(m.device)
    if isinstance(variance, bool):
        raise TypeError("variance must be a tensor or a positive number, got bool.")
    if isinstance(variance, (int, float)) or (isinstance(variance, Tensor) and variance.dim() == 0):
        var = torch.as_tensor(variance, dtype=torch.float64)
        check_finite(var.reshape(1), "variance")
        var = var.to(m.device).expand_as(m)
    else:
        var = check_regression(variance, "variance")
        check_same_shape(var, "variance", m, "mean")
        var = var.to(m.device)
    if (var <= 0).any():
        bad = (var <= 0).reshape(var.shape[0], -1).any(dim=1).nonzero().flatten()
        raise ValueError(
            f"variance must be strictly positive; {bad.numel()} row(s) are not, first "
            f"indices {bad[:5].tolist()}. Add a small floor (e.g. variance + 1e-6) if the "
            "model can predict zero variance."
        )
    per_entry = 0.5 * (math.log(2 * math.pi) + var.log() + (t - m).pow(2) / var)
    per_example = per_entry if per_entry.dim() == 1 else per_entry.sum(dim=1)
    return per_example.mean().item()
