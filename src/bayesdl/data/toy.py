"""Synthetic data sets for pictures and tests; seeded with local generators only."""

from __future__ import annotations

import numpy as np
import torch

from bayesdl.data._sources import check_float, check_int
from bayesdl.data.base import Data

__all__ = ["GAP", "regression_gap", "two_moons"]

#: The input interval with no training data in :func:`regression_gap`.
GAP = (-0.3, 0.3)


def regression_gap(n: int = 100, *, noise: float = 0.1, seed: int = 0) -> Data:
    r"""1-d regression with a hole in the inputs, to see uncertainty grow between clusters.

    .. math::
        x \sim \mathcal U([-1, -0.3] \cup [0.3, 1]), \qquad
        y = \sin(3x) + \varepsilon, \quad \varepsilon \sim \mathcal N(0, \text{noise}^2).

    Half of the points (``n // 2``) fall in the left cluster and the rest in the
    right one; no input lies in :data:`GAP` = (-0.3, 0.3), where a good Bayesian
    model should be less certain than on the clusters. Evaluate on e.g.
    ``torch.linspace(-1.5, 1.5, 200)[:, None]``.

    Args:
        n: Number of points, >= 2.
        noise: Standard deviation of the Gaussian noise on y, >= 0.
        seed: Seed of a local ``numpy.random.Generator``; the global RNGs are untouched.

    Returns:
        ``Data`` with x float32 (n, 1), y float32 (n, 1), ``num_classes=None``.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If ``n`` < 2, ``noise`` < 0 or ``seed`` < 0.

    Examples:
        >>> d = regression_gap(10, seed=1)
        >>> tuple(d.x.shape), bool(((d.x < -0.3) | (d.x > 0.3)).all())
        ((10, 1), True)
    """
    n = check_int(n, "n", 2)
    noise = check_float(noise, "noise", 0.0)
    seed = check_int(seed, "seed", 0)
    rng = np.random.default_rng(seed)
    left = rng.uniform(-1.0, GAP[0], size=n // 2)
    right = rng.uniform(GAP[1], 1.0, size=n - n // 2)
    x = rng.permutation(np.concatenate([left, right]))
    y = np.sin(3.0 * x) + noise * rng.standard_normal(n)
    return Data(
        x=torch.from_numpy(x.astype(np.float32)[:, None]),
        y=torch.from_numpy(y.astype(np.float32)[:, None]),
        name="regression-gap",
        source=f"bayesdl.data.regression_gap(n={n}, noise={noise}, seed={seed})",
        num_classes=None,
    )


def two_moons(n: int = 500, *, noise: float = 0.1, seed: int = 0) -> Data:
    """Two interleaving half circles, a 2-d binary classification set.

    Uses scikit-learn's ``make_moons`` with its own seeded ``RandomState``; the
    global RNGs are untouched.

    Args:
        n: Number of points, >= 2 (split evenly between the moons).
        noise: Standard deviation of Gaussian noise added to the points, >= 0.
        seed: Seed of the generator.

    Returns:
        ``Data`` with x float32 (n, 2), y int64 (n,) in {0, 1}, ``num_classes=2``.

    Raises:
        ImportError: If scikit-learn is missing (``pip install bayesdl[metrics]``).
        TypeError: If an argument has the wrong type.
        ValueError: If ``n`` < 2, ``noise`` < 0 or ``seed`` < 0.

    Examples:
        >>> d = two_moons(100)
        >>> tuple(d.x.shape), sorted(d.y.unique().tolist())
        ((100, 2), [0, 1])
    """
    n = check_int(n, "n", 2)
    noise = check_float(noise, "noise", 0.0)
    seed = check_int(seed, "seed", 0)
    try:
        from sklearn.datasets import make_moons
    except ImportError as err:
        raise ImportError(
            "two_moons() needs scikit-learn; install it with `pip install bayesdl[metrics]`."
        ) from err
    x, y = make_moons(n_samples=n, noise=noise, random_state=seed)
    return Data(
        x=torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
        y=torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)),
        name="two-moons",
        source=f"sklearn.datasets.make_moons(n_samples={n}, noise={noise}, random_state={seed})",
        num_classes=2,
    )
