"""Conjugate Bayesian linear regression: data and the exact posterior, for closed-form tests.

Model: y = X w + b + eps, eps ~ N(0, sigma^2) with sigma known, prior N(0, s^2) on w and b.
With A = [X, 1] the posterior is N(m, Lambda^-1), Lambda = A^T A / sigma^2 + I / s^2,
m = Lambda^-1 A^T y / sigma^2. Parameters are ordered (w_1, ..., w_D, b), as in
``nn.Linear(D, 1)`` flattened (weight then bias).
"""

import torch

N, D, SIGMA, S = 40, 3, 0.5, 1.0


def blr_data(n=N, seed=0):
    """``n`` points in float64: x (n, D), y (n, 1) from w = (1, -2, 0.5), b = 0.3."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, D, generator=g, dtype=torch.float64)
    w = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    y = x @ w.T + 0.3 + SIGMA * torch.randn(n, 1, generator=g, dtype=torch.float64)
    return x, y


def blr_posterior(x, y, sigma=SIGMA, prior_scale=S):
    """Exact posterior mean (D + 1,) and covariance (D + 1, D + 1) of (w, b)."""
    a = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    prec = a.T @ a / sigma**2 + torch.eye(a.shape[1], dtype=x.dtype) / prior_scale**2
    cov = torch.linalg.inv(prec)
    return cov @ a.T @ y.squeeze(-1) / sigma**2, cov


def batch_means_se(trace, batches=10):
    """Monte Carlo standard error of the mean of an autocorrelated trace (batch means)."""
    means = trace[: len(trace) // batches * batches].unflatten(0, (batches, -1)).mean(1)
    return means.std(0) / batches**0.5
