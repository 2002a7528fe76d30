"""``bayesdl demo``: the article's pictures on built-in data, in about 30 s on two CPU cores.

Five small experiments, each written to ``out`` as a PNG, with every number in
``metrics.json``:

a. **Bayes' theorem on a coin** (``coin_posterior.png``): a Beta(2, 2) prior, 7 heads and
   3 tails, the exact Beta(9, 5) posterior with its mean and 95% credible interval.
b. **1-d regression with a gap** (``regression_gap.png``): a deterministic net (MAP, noise
   learned) against mean-field VI and MC dropout, mean +- 2 sd on a grid reaching half
   the data range beyond the data. ``metrics.json`` records how much larger the
   epistemic sd is far from the data than on it (see :func:`epistemic_sd_ratios`).
c. **Two moons** (``two_moons_uncertainty.png``): the MAP net's max-softmax confidence
   next to the VI net's predictive entropy and mutual information, and below them the
   distance-aware SNGP's confidence, entropy and mutual information (``bayesdl.SNGP``:
   its uncertainty rises in every direction away from the data, where VI's stays low
   along some directions). ``metrics.json`` records each method's far-field fraction
   (``bayesdl.metrics.far_field_fraction`` of the mutual information).
d. **Calibration** (``reliability.png``): reliability diagrams of MAP and VI on held-out
   two-moons points, plus accuracy, NLL, ECE and Brier score.
e. **What a prior means** (``priors.png``): on the regression with a gap, functions drawn
   from the prior predictive (``bdl.prior_predictive``, before any data) and from the
   mean-field VI posterior, for ``Normal(0.1)``, ``Normal(1)`` and ``Horseshoe(1)``
   priors (see :func:`prior_figure`).
f. **Why is the model unsure?** (``attribution_digits.png``): an MC-dropout MLP on the
   8x8 digits; its most uncertain test images with the heat map of their epistemic
   attribution (``explain.attribute``, integrated gradients) and their predictive.

The toy networks and training settings were chosen so that the pictures are readable and
the numbers stable across seeds; the choices that matter are documented where they are
made (:func:`regression_mlp`, :func:`fit_regression`).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import bayesdl as bdl
from bayesdl import likelihoods, priors
from bayesdl.methods.base import BaseMethod, get_method
from bayesdl.runtime import seeded_global_rng

__all__ = [
    "DemoSettings",
    "MEASURED_S",
    "RUNTIME_S",
    "REGRESSION_METHODS",
    "CLASSIFIER_METHODS",
    "FAST",
    "FULL",
    "OUTPUT_FILES",
    "RegressionMethod",
    "ClassifierMethod",
    "coin_posterior",
    "epistemic_sd_ratios",
    "fit_classifier",
    "fit_regression",
    "format_summary",
    "moons_mlp",
    "prior_figure",
    "regression_mlp",
    "run_demo",
]

REGRESSION_METHODS: tuple[type[BaseMethod], ...] = (bdl.MAP, bdl.MeanFieldVI, bdl.MCDropout)
"""Approximations compared on the 1-d toy, in the order shown."""

CLASSIFIER_METHODS: tuple[type[BaseMethod], ...] = (
    bdl.MAP, bdl.MeanFieldVI, bdl.MCDropout, bdl.SNGP,
)  # fmt: skip
"""Approximations available on two moons (the demo shows MAP, VI and SNGP)."""

SNGP_SETTINGS: dict[str, Any] = {"random_features": 256, "lengthscale": 0.5}
"""The demo's SNGP: 256 random features keep its fit within the demo's time; the
lengthscale is the one ``benchmarks/distance_awareness.py`` chose on validation NLL of
the same two moons."""

SNGP_SPEEDUP = 2
"""The demo trains SNGP for ``moons_epochs / SNGP_SPEEDUP`` full-batch steps at
``SNGP_SPEEDUP`` times the rate, so that adding it keeps the demo near its time (a step
costs about twice a MAP step). Measured on the demo's moons (seed 0): 1,000 steps at 0.01
give test accuracy 0.951 and far-field fraction 0.997, 500 at 0.02 give 0.963 and 0.842
(VI: 0.414)."""

RegressionMethod = str
"""The registered name (``cli_name``) of one of ``REGRESSION_METHODS``."""

ClassifierMethod = str
"""The registered name (``cli_name``) of one of ``CLASSIFIER_METHODS``."""

_LABELS = {bdl.MAP: "MAP", bdl.MeanFieldVI: "mean-field VI", bdl.MCDropout: "MC dropout",
           bdl.SNGP: "SNGP"}  # fmt: skip
"""How the pictures and messages name each method."""

OUTPUT_FILES = (
    "coin_posterior.png",
    "regression_gap.png",
    "two_moons_uncertainty.png",
    "reliability.png",
    "priors.png",
    "attribution_digits.png",
    "metrics.json",
)
"""Every file :func:`run_demo` writes into ``out``; ``metrics.json`` is written last."""


@dataclass(frozen=True)
class DemoSettings:
    """Sizes and training lengths of the demo (``FULL`` by default, ``FAST`` for tests).

    Attributes:
        coin_prior: Beta prior ``(a, b)`` on the coin's probability of heads.
        coin_tosses: Observed ``(heads, tails)``.
        reg_n: Training points of ``data.regression_gap``.
        reg_noise: Noise sd of the regression data (VI is given it; see ``fit_regression``).
        reg_epochs: Full-batch Adam steps per regression model.
        reg_lr: Learning rate of the regression models.
        moons_n_train: Training points of ``data.two_moons``.
        moons_n_test: Held-out points for the calibration metrics.
        moons_noise: Noise of the two moons (0.2 makes the classes overlap a little).
        moons_epochs: Full-batch Adam steps per classifier.
        moons_lr: Learning rate of the classifiers.
        samples: Monte Carlo samples S per prediction.
        grid_points: Points of the 1-d regression grid.
        map_resolution: Points per side of the two-moons grid.
        digits_epochs: Full-batch Adam steps of the digits classifier (experiment e).
        explained: Test digits shown with their attribution maps.
    """

    coin_prior: tuple[float, float] = (2.0, 2.0)
    coin_tosses: tuple[int, int] = (7, 3)
    reg_n: int = 100
    reg_noise: float = 0.1
    reg_epochs: int = 1000
    reg_lr: float = 0.01
    moons_n_train: int = 200
    moons_n_test: int = 1000
    moons_noise: float = 0.2
    moons_epochs: int = 1000
    moons_lr: float = 0.01
    samples: int = 200
    grid_points: int = 400
    map_resolution: int = 120
    digits_epochs: int = 150
    explained: int = 4


FULL = DemoSettings()
"""The settings of ``bayesdl demo`` (``RUNTIME_S`` on two CPU cores)."""

MEASURED_S = (69.3,)
"""Wall times in seconds of ``bayesdl demo`` (``FULL``, after the install) measured alone on
two CPU cores (``time bayesdl demo --out DIR``)."""

RUNTIME_S = 70
"""The time that the README and ``bayesdl demo --help`` state: the slowest of ``MEASURED_S``,
rounded up to 5 s."""

FAST = DemoSettings(
    reg_epochs=60, moons_epochs=40, moons_n_test=300, samples=20, grid_points=100,
    map_resolution=30,
    digits_epochs=10, explained=2,
)  # fmt: skip
"""A few seconds, for smoke tests: same code paths, pictures not meaningful."""


# -- helpers ---------------------------------------------------------------------------------
@contextmanager
def _single_thread() -> Iterator[None]:
    """Run torch on one intra-op thread, then restore the previous setting.

    The toy networks are so small that thread synchronisation costs more than it saves;
    on a busy two-core machine one thread is several times faster.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")


def _demo_method(name: str, allowed: tuple[type[BaseMethod], ...]) -> type[BaseMethod]:
    names = [cls.cli_name for cls in allowed]
    if name not in names:
        raise ValueError(f"method must be one of {names}, got {name!r}.")
    return get_method(name)


def _construct(cls: type[BaseMethod], model: nn.Module, likelihood: Any = None) -> BaseMethod:
    """The demo's method ``cls`` on ``model``: mean-field VI with a ``Normal(1.0)`` prior and
    the local reparameterisation, the others with their defaults."""
    if cls is bdl.MeanFieldVI:
        return cls(model, likelihood, prior=priors.Normal(1.0), estimator="local")
    if cls is bdl.SNGP:
        return cls(model, likelihood, **SNGP_SETTINGS)
    return cls(model, likelihood)


def _say(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr, flush=True)


# -- a. the coin -----------------------------------------------------------------------------
def coin_posterior(
    heads: int, tails: int, prior_a: float = 2.0, prior_b: float = 2.0, level: float = 0.95
) -> dict[str, Any]:
    """Exact Beta posterior of a coin's probability of heads.

    Args:
        heads: Number of heads, >= 0.
        tails: Number of tails, >= 0.
        prior_a: Beta prior's first parameter, > 0.
        prior_b: Beta prior's second parameter, > 0.
        level: Mass of the equal-tailed credible interval.

    Returns:
        A JSON-ready dict: prior, counts, posterior parameters, posterior mean, maximum
        likelihood estimate and the credible interval.

    Raises:
        ValueError: On negative counts or non-positive prior parameters.

    Examples:
        >>> post = coin_posterior(7, 3)
        >>> post["posterior"], round(post["posterior_mean"], 4)
        ([9.0, 5.0], 0.6429)
    """
    from bayesdl.plotting import beta_interval

    for name, value in (("heads", heads), ("tails", tails)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}.")
    a, b = float(prior_a) + heads, float(prior_b) + tails
    lo, hi = beta_interval(a, b, level)
    return {
        "prior": [float(prior_a), float(prior_b)],
        "heads": heads,
        "tails": tails,
        "posterior": [a, b],
        "posterior_mean": a / (a + b),
        "mle": heads / (heads + tails) if heads + tails else None,
        "interval_level": level,
        "interval": [lo, hi],
    }


# -- b. regression with a gap ----------------------------------------------------------------
def _two_hidden_layers(n_in: int, n_out: int, dropout: float, hidden: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(n_in, hidden), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers += [nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, n_out)]
    return nn.Sequential(*layers)


def regression_mlp(dropout: float = 0.0, hidden: int = 64) -> nn.Sequential:
    """The 1-d toy network: ``1 -> hidden -> hidden -> 1`` with ReLU.

    With ``dropout > 0`` an ``nn.Dropout`` follows the *first* hidden layer only, i.e.
    MC dropout's Bernoulli posterior sits on the rows of the middle weight matrix. With
    dropout after both hidden layers the second layer's ReLUs learn to switch off beyond
    the data and the MC-dropout sd *shrinks* there, below its value on the data; with
    dropout after the first one only it grows, both in the gap and outside.

    Args:
        dropout: Dropout probability p after the first hidden layer; 0 for none.
        hidden: Width of both hidden layers.

    Returns:
        A freshly initialised ``nn.Sequential``.
    """
    return _two_hidden_layers(1, 1, dropout, hidden)


def fit_regression(
    method: RegressionMethod,
    x: Tensor,
    y: Tensor,
    *,
    noise: float | None = None,
    epochs: int = FULL.reg_epochs,
    lr: float = FULL.reg_lr,
    dropout: float = 0.2,
    seed: int = 0,
    progress: bool = False,
) -> BaseMethod:
    """Build and train one of the demo's regression models (full-batch Adam).

    * MAP: :func:`regression_mlp` with ``Gaussian(sigma=None)`` (noise learned)
      and the default ``Normal(1.0)`` prior as weight decay.
    * mean-field VI (local reparameterisation) on the same network with a
      ``Normal(1.0)`` prior. The noise sd is fixed at ``noise`` when given: on 100 points,
      mean-field VI that learns the noise too explains most of the signal as noise (its
      learned sigma comes out several times the true one).
    * MC dropout (every method that ``needs_dropout``): :func:`regression_mlp` with
      ``dropout``, noise learned.

    Weight initialisation and dropout draw from torch's global RNG; it is seeded with
    ``seed`` inside ``torch.random.fork_rng``, so the caller's RNG state is left as it was.

    Args:
        method: The registered name of one of ``REGRESSION_METHODS``.
        x: Inputs, shape (N, 1).
        y: Targets, shape (N, 1).
        noise: Known noise sd for VI; ``None`` learns it (for MAP and MC dropout it is
            always learned).
        epochs: Training epochs (one full-batch step each).
        lr: Adam learning rate.
        dropout: Dropout probability for a method that needs dropout (MC dropout).
        seed: Seed of initialisation, shuffling and training noise.
        progress: Show a progress bar.

    Returns:
        The fitted method.

    Raises:
        ValueError: If ``method`` is unknown or the data have the wrong shape.
    """
    cls = _demo_method(method, REGRESSION_METHODS)
    if x.dim() != 2 or x.shape[1] != 1:
        raise ValueError(f"x must have shape (N, 1), got {tuple(x.shape)}.")
    _check_seed(seed)
    with _single_thread(), seeded_global_rng(seed):
        if cls is bdl.MeanFieldVI:  # the noise is known (see above)
            lik = likelihoods.Gaussian(sigma=noise, init_sigma=noise or 1.0)
        else:
            lik = likelihoods.Gaussian(sigma=None)
        net = regression_mlp(dropout if cls.needs_dropout else 0.0)
        fitted = _construct(cls, net, lik)
        generator = torch.Generator().manual_seed(seed)
        fitted.fit(
            (x, y), epochs=epochs, lr=lr, batch_size=x.shape[0], progress=progress,
            generator=generator,
        )  # fmt: skip
    return fitted


def epistemic_sd_ratios(
    method: BaseMethod,
    x_train: Tensor,
    *,
    samples: int = 200,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """How much larger a 1-d regression model's epistemic sd is far from the data.

    The epistemic sd is the spread of the S sampled predictive means
    (``GaussianPredictive.epistemic_variance ** 0.5``). It is averaged over

    * *on the data*: the training inputs;
    * *gap*: 20 points across the middle half of the widest gap between training inputs;
    * *outside*: 20 points between 1/4 and 1/2 of the data range beyond either end.

    *Far* is the average over the 40 gap and outside points together. All points are
    predicted in one call, i.e. with the same S posterior samples.

    Args:
        method: A fitted regression method with one output.
        x_train: Training inputs, shape (N, 1).
        samples: Monte Carlo samples S.
        generator: Random generator for the posterior samples.

    Returns:
        ``sd_on_data``, ``sd_gap``, ``sd_outside``, ``sd_far`` and the ratios
        ``ratio_gap``, ``ratio_outside``, ``ratio_far`` (each sd over ``sd_on_data``).

    Raises:
        ValueError: If ``x_train`` is not (N, 1) with at least two distinct inputs.
    """
    if x_train.dim() != 2 or x_train.shape[1] != 1:
        raise ValueError(f"x_train must have shape (N, 1), got {tuple(x_train.shape)}.")
    xs = x_train.detach().cpu().flatten().double().sort().values
    lo, hi = float(xs[0]), float(xs[-1])
    span = hi - lo
    if not span > 0:
        raise ValueError("x_train needs at least two distinct inputs to define 'far'.")
    widest = int((xs[1:] - xs[:-1]).argmax())
    a, b = float(xs[widest]), float(xs[widest + 1])
    mid, width = (a + b) / 2, b - a
    gap = torch.linspace(mid - width / 4, mid + width / 4, 20)
    outside = torch.cat(
        [
            torch.linspace(lo - span / 2, lo - span / 4, 10),
            torch.linspace(hi + span / 4, hi + span / 2, 10),
        ]
    )
    n = x_train.shape[0]
    points = torch.cat([x_train.detach().cpu().flatten().float(), gap, outside])[:, None]
    with _single_thread():
        pred = method.predict(points, samples=samples, generator=generator)
    sd = pred.epistemic_variance.sqrt().flatten().double().cpu()
    on, sd_gap, sd_out, far = (
        sd[:n].mean().item(), sd[n : n + 20].mean().item(), sd[n + 20 :].mean().item(),
        sd[n:].mean().item(),
    )  # fmt: skip

    def ratio(v: float) -> float:
        return v / on if on > 0 else math.inf

    return {
        "sd_on_data": on, "sd_gap": sd_gap, "sd_outside": sd_out, "sd_far": far,
        "ratio_gap": ratio(sd_gap), "ratio_outside": ratio(sd_out), "ratio_far": ratio(far),
    }  # fmt: skip


def _regression(out: Path, s: DemoSettings, seed: int, progress: bool) -> dict[str, Any]:
    from bayesdl import data, metrics, plotting

    train = data.regression_gap(s.reg_n, noise=s.reg_noise, seed=seed)
    test = data.regression_gap(1000, noise=s.reg_noise, seed=seed + 1)
    lo, hi = float(train.x.min()), float(train.x.max())
    span = hi - lo
    grid = torch.linspace(lo - span / 2, hi + span / 2, s.grid_points)[:, None]
    predictives, results = {}, {}
    for cls in REGRESSION_METHODS:
        key, name = cls.cli_name, _LABELS[cls] + (" (deterministic)" if cls is bdl.MAP else "")
        _say(progress, f"  fitting {name} on regression_gap ({s.reg_epochs} epochs)")
        start = time.perf_counter()
        model = fit_regression(
            key, train.x, train.y, noise=s.reg_noise, epochs=s.reg_epochs, lr=s.reg_lr,
            seed=seed, progress=progress,
        )  # fmt: skip
        fit_s = time.perf_counter() - start
        gen = torch.Generator().manual_seed(seed)
        with _single_thread():
            predictives[name] = model.predict(grid, samples=s.samples, generator=gen)
            test_pred = model.predict(test.x, samples=s.samples, generator=gen)
            entry: dict[str, Any] = {
                "fit_time_s": fit_s,
                "noise_sd": model.likelihood.sigma.detach().item(),
                "noise_learned": bool(model.likelihood.learned),
                "test_rmse": metrics.rmse(test_pred.mean, test.y),
                "test_nll": float(-test_pred.log_likelihood(test.y).mean()),
            }
            if cls.max_samples != 1:  # a point estimate has no epistemic sd to compare
                entry.update(epistemic_sd_ratios(model, train.x, samples=s.samples, generator=gen))
        results[key] = entry
    plotting.plot_regression(
        train.x, train.y, grid, predictives, ylim=(-2.5, 2.5), path=out / "regression_gap.png"
    )
    return {
        "n_train": s.reg_n, "noise": s.reg_noise, "epochs": s.reg_epochs,
        "grid": [float(grid[0]), float(grid[-1])], "methods": results,
    }  # fmt: skip


# -- c./d. two moons -------------------------------------------------------------------------
def moons_mlp(dropout: float = 0.0, hidden: int = 64) -> nn.Sequential:
    """The two-moons network: ``2 -> hidden -> hidden -> 2`` with ReLU.

    Args:
        dropout: Dropout probability after the first hidden layer (as in
            :func:`regression_mlp`); 0 for none.
        hidden: Width of both hidden layers.

    Returns:
        A freshly initialised ``nn.Sequential``.
    """
    return _two_hidden_layers(2, 2, dropout, hidden)


def fit_classifier(
    method: ClassifierMethod,
    x: Tensor,
    y: Tensor,
    *,
    epochs: int = FULL.moons_epochs,
    lr: float = FULL.moons_lr,
    dropout: float = 0.2,
    seed: int = 0,
    progress: bool = False,
) -> BaseMethod:
    """Build and train a two-moons classifier (full-batch Adam, ``Normal(1.0)`` prior).

    Args:
        method: The registered name of one of ``CLASSIFIER_METHODS``: MAP, mean-field VI
            (local reparameterisation) or MC dropout.
        x: Inputs, shape (N, 2).
        y: Labels, shape (N,).
        epochs: Training epochs (one full-batch step each).
        lr: Adam learning rate.
        dropout: Dropout probability for a method that needs dropout (MC dropout).
        seed: Seed of initialisation, shuffling and training noise (global RNG restored).
        progress: Show a progress bar.

    Returns:
        The fitted method.

    Raises:
        ValueError: If ``method`` is unknown.
    """
    cls = _demo_method(method, CLASSIFIER_METHODS)
    _check_seed(seed)
    with _single_thread(), seeded_global_rng(seed):
        fitted = _construct(cls, moons_mlp(dropout if cls.needs_dropout else 0.0))
        generator = torch.Generator().manual_seed(seed)
        fitted.fit(
            (x, y), epochs=epochs, lr=lr, batch_size=x.shape[0], progress=progress,
            generator=generator,
        )  # fmt: skip
    return fitted


def _two_moons(out: Path, s: DemoSettings, seed: int, progress: bool) -> dict[str, Any]:
    from bayesdl import data, metrics, plotting

    train = data.two_moons(s.moons_n_train, noise=s.moons_noise, seed=seed)
    test = data.two_moons(s.moons_n_test, noise=s.moons_noise, seed=seed + 1)
    lo = train.x.min(0).values - 1.5
    hi = train.x.max(0).values + 1.5
    r = s.map_resolution
    gx, gy = torch.meshgrid(
        torch.linspace(float(lo[0]), float(hi[0]), r),
        torch.linspace(float(lo[1]), float(hi[1]), r),
        indexing="xy",
    )
    grid = torch.stack([gx.flatten(), gy.flatten()], dim=1)
    far = torch.cdist(grid, train.x).min(1).values > 1.0  # grid points > 1 away from data
    point, bnn = CLASSIFIER_METHODS[:2]
    grid_preds, bins, results = {}, {}, {}
    test_mi: dict[str, Tensor] = {}
    for cls in (point, bnn, bdl.SNGP):
        key = cls.cli_name
        speedup = SNGP_SPEEDUP if cls is bdl.SNGP else 1
        epochs, lr = max(1, s.moons_epochs // speedup), s.moons_lr * speedup
        _say(progress, f"  fitting {_LABELS[cls]} on two_moons ({epochs} epochs)")
        start = time.perf_counter()
        model = fit_classifier(
            key, train.x, train.y, epochs=epochs, lr=lr, seed=seed, progress=progress,
        )  # fmt: skip
        fit_s = time.perf_counter() - start
        gen = torch.Generator().manual_seed(seed)
        with _single_thread():
            pred = model.predict(test.x, samples=s.samples, generator=gen)
            grid_preds[key] = model.predict(grid, samples=s.samples, generator=gen)
        probs = pred.probs
        if cls is not bdl.SNGP:
            bins[_LABELS[cls]] = metrics.reliability(probs, test.y)
        g = grid_preds[key]
        test_mi[key] = pred.mutual_information()
        results[key] = {
            "fit_time_s": fit_s,
            "accuracy": metrics.accuracy(probs, test.y),
            "nll": metrics.nll(probs, test.y),
            "ece": metrics.ece(probs, test.y),
            "brier": metrics.brier(probs, test.y),
            "confidence_far": g.probs.max(-1).values[far].mean().item(),
            "entropy_far": g.entropy()[far].mean().item(),
            "mutual_information_far": g.mutual_information()[far].mean().item(),
            "far_field_fraction": metrics.far_field_fraction(
                test_mi[key], g.mutual_information()[far]
            ),
        }
    sngp = bdl.SNGP.cli_name
    plotting.plot_confidence_map_rows(
        train.x, train.y, gx, gy,
        [(_LABELS[point], grid_preds[point.cli_name], _LABELS[bnn], grid_preds[bnn.cli_name]),
         (_LABELS[bdl.SNGP], grid_preds[sngp], _LABELS[bdl.SNGP], grid_preds[sngp])],
        title="Two moons: a point estimate, mean-field VI and the distance-aware SNGP off the data",
        path=out / "two_moons_uncertainty.png",
    )  # fmt: skip
    plotting.plot_reliability(bins, path=out / "reliability.png")
    return {
        "n_train": s.moons_n_train, "n_test": s.moons_n_test, "noise": s.moons_noise,
        "epochs": s.moons_epochs, "far_threshold": 1.0, "methods": results,
    }  # fmt: skip


# -- e. what a prior means ---------------------------------------------------------------------
DEMO_PRIORS: dict[str, priors.Prior] = {
    "Normal(0.1)": priors.Normal(0.1),
    "Normal(1)": priors.Normal(1.0),
    "Horseshoe(1)": priors.Horseshoe(1.0),
}
"""The priors of the priors figure (each bound afresh by the method it is given to)."""


def prior_figure(
    out: str | os.PathLike | None, s: DemoSettings = FULL, seed: int = 0, progress: bool = False
) -> dict[str, Any]:
    """Prior predictive and posterior function draws on the regression with a gap.

    For each prior of ``DEMO_PRIORS``: 30 functions drawn from the prior predictive of
    :func:`regression_mlp` (``bdl.prior_predictive``) and 30 from the mean-field VI
    posterior with that prior (noise sd known, as in :func:`fit_regression`), on a grid
    reaching half the data range beyond the data. ``Normal(1)`` on a 64-unit ReLU net
    draws wild functions, ``Normal(0.1)`` nearly flat ones (the posterior then cannot
    fit the data and is confident about it), and the horseshoe draws mostly flat
    functions with a few large jumps.

    Args:
        out: Directory for ``priors.png``; ``None``: no picture (numbers only).
        s: Demo settings (``reg_n``, ``reg_noise``, ``reg_epochs``, ``reg_lr``, ``samples``,
            ``grid_points``).
        seed: Seed of the data, the initialisations and the draws.
        progress: Print what is being fitted.

    Returns:
        Per prior: the prior predictive's median absolute deviation of f, averaged over
        the data's range (``prior_mad``; robust to the horseshoe's Cauchy tails), the
        posterior's test RMSE and its :func:`epistemic_sd_ratios`.
    """
    from bayesdl import data, metrics, plotting

    train = data.regression_gap(s.reg_n, noise=s.reg_noise, seed=seed)
    test = data.regression_gap(1000, noise=s.reg_noise, seed=seed + 1)
    lo, hi = float(train.x.min()), float(train.x.max())
    span = hi - lo
    grid = torch.linspace(lo - span / 2, hi + span / 2, s.grid_points)[:, None]
    inside = (grid[:, 0] >= lo) & (grid[:, 0] <= hi)
    draws, results = {}, {}
    for name, prior in DEMO_PRIORS.items():
        _say(progress, f"  prior predictive and VI posterior with a {name} prior")
        with _single_thread(), seeded_global_rng(seed):
            lik = likelihoods.Gaussian(sigma=s.reg_noise)
            vi = bdl.MeanFieldVI(regression_mlp(), lik, prior=prior, estimator="local")
            gen = torch.Generator().manual_seed(seed)
            before = bdl.prior_predictive(vi, grid, samples=30, generator=gen).samples[..., 0]
            vi.fit((train.x, train.y), epochs=s.reg_epochs, lr=s.reg_lr,
                   batch_size=train.x.shape[0], progress=progress, generator=gen)  # fmt: skip
            after = vi.predict(grid, samples=30, generator=gen).samples[..., 0]
            test_pred = vi.predict(test.x, samples=s.samples, generator=gen)
            entry = {
                "prior_mad": float(
                    before[:, inside]
                    .sub(before[:, inside].median(0).values)
                    .abs()
                    .median(0)
                    .values.mean()
                ),  # fmt: skip
                "test_rmse": metrics.rmse(test_pred.mean, test.y),
            }
            entry.update(epistemic_sd_ratios(vi, train.x, samples=s.samples, generator=gen))
        draws[name], results[name] = (before, after), entry
    if out is not None:
        plotting.plot_function_draws(train.x, train.y, grid, draws, path=Path(out) / "priors.png")
    return {"n_train": s.reg_n, "epochs": s.reg_epochs, "priors": results}


# -- why is the model unsure? ----------------------------------------------------------------
def _attribution_digits(out: Path, s: DemoSettings, seed: int, progress: bool) -> dict[str, Any]:
    from bayesdl import data, explain, plotting

    train, test = data.digits("train", seed=seed), data.digits("test", seed=seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.25),
                          nn.Linear(128, 10))  # fmt: skip
    method = bdl.MCDropout(model)
    _say(progress, f"  fitting MC dropout on digits ({s.digits_epochs} full-batch steps)")
    start = time.perf_counter()
    method.fit((train.x, train.y), epochs=s.digits_epochs, lr=0.01, batch_size=len(train),
               progress=False, generator=torch.Generator().manual_seed(seed))  # fmt: skip
    fit_s = time.perf_counter() - start
    gen = torch.Generator().manual_seed(seed)
    pred = method.predict(test.x, samples=s.samples, generator=gen)
    top = pred.entropy().argsort(descending=True)[: s.explained]
    attr = explain.attribute(method, test.x[top], "epistemic", samples=50, steps=32,
                             generator=torch.Generator().manual_seed(seed))  # fmt: skip
    sub = pred.cpu()
    shown = bdl.CategoricalPredictive(sub.samples[:, top])
    titles = [f"label {int(test.y[i])}, predicted {int(sub.predicted()[i])}" for i in top]
    plotting.plot_explanations(test.x[top], attr, shown, titles=titles,
                               path=out / "attribution_digits.png")  # fmt: skip
    return {
        "n_train": len(train), "epochs": s.digits_epochs, "fit_time_s": fit_s,
        "accuracy": float((sub.predicted() == test.y).double().mean()),
        "explained": [int(i) for i in top],
        "mutual_information": [float(v) for v in shown.mutual_information()],
    }  # fmt: skip


# -- the whole demo --------------------------------------------------------------------------
def run_demo(
    out: str | os.PathLike,
    *,
    fast: bool = False,
    seed: int = 0,
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Run the five experiments, write the PNGs and ``metrics.json`` into ``out``.

    Built-in data only (``bayesdl.data.regression_gap`` and ``two_moons``); nothing is
    downloaded. Torch's global RNG is seeded inside ``torch.random.fork_rng`` (restored
    on return) and predictions use their own ``torch.Generator``, so a seed gives the
    same numbers every time on the same machine. Torch runs on one thread meanwhile.

    Args:
        out: Output directory; created if missing.
        fast: Tiny settings (``FAST``) that finish in seconds, for smoke tests.
        seed: Seed of the data, the initialisations and the Monte Carlo samples.
        progress: Print what is being done and show progress bars (on stderr).
        overwrite: Replace earlier demo files in ``out``; refused by default.

    Returns:
        Everything written to ``metrics.json``: ``coin``, ``regression``,
        ``two_moons``, ``priors``, ``attribution``, plus ``seed``, ``fast``, ``settings``,
        ``files``, ``runtime_s``.

    Raises:
        FileExistsError: If a demo file already exists in ``out`` and not ``overwrite``.
        NotADirectoryError: If ``out`` exists and is not a directory.
        ValueError: If ``seed`` is not a non-negative integer.
        ImportError: If matplotlib or scikit-learn is missing.
    """
    _check_seed(seed)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} exists and is not a directory.")
    existing = [name for name in OUTPUT_FILES if (out / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{out / existing[0]} already exists; choose another output directory or "
            "pass --overwrite (overwrite=True in Python) to replace its files."
        )
    from bayesdl import plotting

    plotting.figure_class()  # fail on a missing matplotlib before training anything
    settings = FAST if fast else FULL
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results: dict[str, Any] = {
        "bayesdl_version": bdl.__version__,
        "torch_version": torch.__version__,
        "seed": seed,
        "fast": fast,
        "settings": asdict(settings),
    }
    with _single_thread(), seeded_global_rng(seed):
        _say(progress, "[1/5] Bayes' theorem on a coin")
        (a, b), (heads, tails) = settings.coin_prior, settings.coin_tosses
        results["coin"] = coin_posterior(heads, tails, a, b)
        plotting.plot_coin_posterior(heads, tails, a, b, path=out / "coin_posterior.png")
        _say(progress, "[2/5] 1-d regression with a gap: MAP vs VI vs MC dropout")
        results["regression"] = _regression(out, settings, seed, progress)
        _say(progress, "[3/5] two moons: confidence maps and reliability, MAP vs VI vs SNGP")
        results["two_moons"] = _two_moons(out, settings, seed, progress)
        _say(progress, "[4/5] what a prior means: prior and posterior draws, three priors")
        results["priors"] = prior_figure(out, settings, seed, progress)
        _say(progress, "[5/5] why is the model unsure? attribution maps on digits")
        results["attribution"] = _attribution_digits(out, settings, seed, progress)
    results["files"] = list(OUTPUT_FILES)
    results["runtime_s"] = time.perf_counter() - start
    tmp = out / "metrics.json.tmp"
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(out / "metrics.json")
    return results


def format_summary(results: dict[str, Any]) -> str:
    """A plain-text table of :func:`run_demo`'s results, for the terminal.

    Args:
        results: The dict returned by :func:`run_demo` (or read from ``metrics.json``).

    Returns:
        The table, several lines without a trailing newline.
    """
    coin = results["coin"]
    (pa, pb), (qa, qb) = coin["prior"], coin["posterior"]
    lo, hi = coin["interval"]
    lines = [
        f"bayesdl demo (seed {results['seed']}{', fast' if results['fast'] else ''}) "
        f"in {results['runtime_s']:.1f} s",
        "",
        f"a. coin: Beta({pa:g}, {pb:g}) prior, {coin['heads']} heads / {coin['tails']} tails "
        f"-> Beta({qa:g}, {qb:g}); mean {coin['posterior_mean']:.3f}, "
        f"{coin['interval_level']:.0%} interval [{lo:.3f}, {hi:.3f}]",
        "",
        "b. regression with a gap (epistemic sd far from the data / on the data)",
        f"   {'method':<12}{'test RMSE':>10}{'noise sd':>10}{'sd on data':>12}"
        f"{'gap':>8}{'outside':>9}{'far':>8}",
    ]
    for name, m in results["regression"]["methods"].items():
        if "ratio_far" in m:
            extra = (
                f"{m['sd_on_data']:>12.4f}{m['ratio_gap']:>7.1f}x{m['ratio_outside']:>8.1f}x"
                f"{m['ratio_far']:>7.1f}x"
            )
        else:
            extra = f"{'-':>12}{'-':>8}{'-':>9}{'-':>8}"
        lines.append(f"   {name:<12}{m['test_rmse']:>10.3f}{m['noise_sd']:>10.3f}{extra}")
    moons = results["two_moons"]
    lines += [
        "",
        f"c./d. two moons, {moons['n_test']} held-out points "
        "(confidence / entropy / MI: mean over the grid far from the data)",
        f"   {'method':<12}{'accuracy':>9}{'NLL':>8}{'ECE':>8}{'Brier':>8}"
        f"{'conf far':>10}{'entropy far':>13}{'MI far':>8}",
    ]
    for name, m in moons["methods"].items():
        lines.append(
            f"   {name:<12}{m['accuracy']:>9.3f}{m['nll']:>8.3f}{m['ece']:>8.3f}"
            f"{m['brier']:>8.3f}{m['confidence_far']:>10.3f}{m['entropy_far']:>13.3f}"
            f"{m['mutual_information_far']:>8.3f}"
        )
    lines += ["", "files: " + ", ".join(results["files"])]
    return "\n".join(lines)
