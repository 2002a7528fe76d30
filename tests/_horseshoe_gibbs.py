"""An exact Gibbs sampler for horseshoe linear regression with a known noise variance.

A reference for ``bayesdl.HMC`` that shares no code with it: Makalic & Schmidt (2016), "A
simple sampler for the horseshoe estimator" (IEEE Signal Processing Letters 23(1)), with the
noise variance fixed. The model is the one ``Horseshoe(scale_global=tau0, group="weight")``
puts on the weight of ``nn.Linear(D, 1, bias=False)`` under ``Gaussian(sigma)``::

    y | beta ~ N(X beta, sigma^2 I),   beta_j | lambda_j, tau ~ N(0, lambda_j^2 tau^2),
    lambda_j ~ C+(0, 1),               tau ~ C+(0, tau0)

(the prior scale is not multiplied by sigma, unlike the paper's). Each half-Cauchy is
written with an inverse-gamma auxiliary variable: ``x^2 | a ~ IG(1/2, 1/a)`` and
``a ~ IG(1/2, 1/A^2)`` give ``x ~ C+(0, A)``, and every full conditional is then a standard
distribution:

* ``beta | . ~ N(M^-1 X^T y / sigma^2, M^-1)``, ``M = X^T X / sigma^2 + diag(1/(lambda^2 tau^2))``;
* ``lambda_j^2 | . ~ IG(1, 1/nu_j + beta_j^2 / (2 tau^2))``, ``nu_j | . ~ IG(1, 1 + 1/lambda_j^2)``;
* ``tau^2 | . ~ IG((D+1)/2, 1/xi + sum_j beta_j^2 / (2 lambda_j^2))``,
  ``xi | . ~ IG(1, 1/tau0^2 + 1/tau^2)``.

Numpy, float64, its own random generator; independent chains run side by side.
"""

from __future__ import annotations

import numpy as np


def _inv_gamma(rng: np.random.Generator, shape: float, rate: np.ndarray | float) -> np.ndarray:
    """IG(shape, rate) draws: ``rate / Gamma(shape, 1)``, elementwise in ``rate``."""
    rate = np.asarray(rate, dtype=np.float64)
    return rate / rng.standard_gamma(shape, size=rate.shape)


def horseshoe_gibbs(
    x: np.ndarray, y: np.ndarray, sigma: float, tau0: float, *, draws: int, burn: int,
    chains: int, seed: int,
) -> np.ndarray:  # fmt: skip
    """Draws of ``beta`` from the horseshoe regression posterior (see the module docstring).

    The ``chains`` independent chains run side by side (one batched Cholesky per step).

    Args:
        x: Inputs, shape (N, D).
        y: Targets, shape (N,).
        sigma: Known noise standard deviation.
        tau0: Scale of the global half-Cauchy.
        draws: Draws kept per chain.
        burn: Draws discarded first, per chain.
        chains: Independent chains.
        seed: Seed of the sampler's numpy generator.

    Returns:
        Coefficient draws, shape (chains, draws, D).
    """
    rng = np.random.default_rng(seed)
    n_in = x.shape[1]
    xtx, xty = x.T @ x / sigma**2, x.T @ y / sigma**2
    lam2, nu = np.ones((chains, n_in)), np.ones((chains, n_in))
    tau2, xi = np.full((chains, 1), tau0**2), np.ones((chains, 1))
    out = np.empty((chains, draws, n_in))
    for t in range(burn + draws):
        chol = np.linalg.cholesky(xtx + _diag(1.0 / (lam2 * tau2)))  # (chains, D, D)
        mean = _solve_chol(chol, np.broadcast_to(xty, (chains, n_in)))
        noise = rng.standard_normal((chains, n_in, 1))
        beta = mean + np.linalg.solve(np.swapaxes(chol, -1, -2), noise)[..., 0]
        lam2 = _inv_gamma(rng, 1.0, 1.0 / nu + beta**2 / (2 * tau2))
        nu = _inv_gamma(rng, 1.0, 1.0 + 1.0 / lam2)
        rate = 1.0 / xi + np.sum(beta**2 / lam2, axis=1, keepdims=True) / 2
        tau2 = _inv_gamma(rng, (n_in + 1) / 2, rate)
        xi = _inv_gamma(rng, 1.0, 1.0 / tau0**2 + 1.0 / tau2)
        if t >= burn:
            out[:, t - burn] = beta
    return out


def _diag(v: np.ndarray) -> np.ndarray:
    """Batched diagonal matrices from rows of ``v``, shape (..., D, D)."""
    return v[..., :, None] * np.eye(v.shape[-1])


def _solve_chol(chol: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(L L^T)^-1 b`` for batched lower-triangular ``L`` and vectors ``b`` (..., D)."""
    inner = np.linalg.solve(chol, b[..., None])
    return np.linalg.solve(np.swapaxes(chol, -1, -2), inner)[..., 0]
