"""Pictures of posteriors, predictive uncertainty and calibration.

Every function returns a ``matplotlib.figure.Figure`` and, given ``path``, also saves it
as a PNG. Figures are built with the object-oriented API (``Figure``, not ``pyplot``), so
nothing here selects a backend or touches pyplot's global state: the functions work
headless (no display, any backend, ``matplotlib.use("Agg")`` included) and do not leak
figures when called in a loop. Pass ``ax`` to draw into your own axes instead.

matplotlib is an optional dependency, imported inside the functions:
``pip install bayesdl[plot]``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from bayesdl.predictive import CategoricalPredictive, GaussianPredictive

if TYPE_CHECKING:  # pragma: no cover - typing only
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from bayesdl.metrics import ReferralCurve, ReliabilityBins
    from bayesdl.types import FitReport

__all__ = [
    "beta_interval",
    "plot_coin_posterior",
    "plot_confidence_maps",
    "plot_confidence_map_rows",
    "plot_regression",
    "plot_reliability",
    "plot_learning_curves",
    "plot_fit",
    "plot_referral",
    "plot_score_histograms",
    "plot_explanations",
]

PathLike = str | os.PathLike

_BLUE, _ORANGE, _GREY, _RED = "#1f77b4", "#ff7f0e", "#7f7f7f", "#d62728"
_METHOD_COLOURS = ["#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2"]
_CLASS_COLOURS = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]


# -- helpers ---------------------------------------------------------------------------------
def figure_class() -> type[Figure]:
    """matplotlib's ``Figure`` class (no pyplot state); a one-line ``ImportError`` naming the
    extra to install when matplotlib is missing."""
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(
            "bayesdl.plotting needs matplotlib; install it with `pip install bayesdl[plot]`."
        ) from err
    return Figure


_MAX_COLUMNS = 4
"""Panels per row of a new figure: more methods wrap onto further rows, so each panel
stays readable when the figure is shrunk to a page's width."""


def _new_axes(
    n: int, ax: Axes | Sequence[Axes] | None, panel_size: tuple[float, float], **kw: Any
) -> tuple[Figure, list[Axes]]:
    """``n`` axes in rows of at most ``_MAX_COLUMNS`` in a new figure, or the caller's
    ``ax`` checked for length."""
    if ax is None:
        cols = min(n, _MAX_COLUMNS)
        rows = math.ceil(n / cols)
        size = (panel_size[0] * cols, panel_size[1] * rows)
        fig = figure_class()(figsize=size, layout="constrained")
        axes = list(fig.subplots(rows, cols, squeeze=False, **kw).ravel())
        for extra in axes[n:]:
            fig.delaxes(extra)
        return fig, axes[:n]
    axes = list(np.ravel(np.asarray(ax, dtype=object)))  # one Axes, a list or an array
    if len(axes) != n:
        raise ValueError(f"ax must hold {n} Axes (one per panel), got {len(axes)}.")
    return axes[0].figure, axes


def _save(fig: Figure, path: PathLike | None, dpi: int = 150) -> None:
    if path is not None:
        fig.savefig(Path(path), dpi=dpi)


def _np(t: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(t, Tensor):
        return t.detach().to("cpu", torch.float64).numpy()
    return np.asarray(t, dtype=np.float64)


def _beta_logpdf(theta: np.ndarray, a: float, b: float) -> np.ndarray:
    log_norm = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    return (a - 1) * np.log(theta) + (b - 1) * np.log1p(-theta) - log_norm


def _check_beta(a: float, b: float, names: str = "prior_a, prior_b") -> None:
    for value in (a, b):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{names} must be positive numbers, got {a!r}, {b!r}.")


def beta_interval(a: float, b: float, level: float = 0.95) -> tuple[float, float]:
    """Equal-tailed credible interval of a ``Beta(a, b)`` distribution.

    Computed from the CDF on a fine grid (error below 1e-4 for ``a, b >= 1``), so no
    SciPy is needed.

    Args:
        a: First shape parameter, > 0.
        b: Second shape parameter, > 0.
        level: Probability mass inside the interval, in (0, 1).

    Returns:
        ``(lower, upper)``, the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles.

    Raises:
        ValueError: If ``a`` or ``b`` is not positive or ``level`` is not in (0, 1).

    Examples:
        >>> lo, hi = beta_interval(1.0, 1.0, 0.9)  # uniform: [0.05, 0.95]
        >>> round(lo, 3), round(hi, 3)
        (0.05, 0.95)
    """
    _check_beta(a, b, "a, b")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}.")
    n = 200_000
    theta = (np.arange(n) + 0.5) / n
    pdf = np.exp(_beta_logpdf(theta, a, b))
    cdf = np.concatenate([[0.0], np.cumsum(pdf)])
    cdf /= cdf[-1]
    edges = np.arange(n + 1) / n
    tail = (1.0 - level) / 2
    lo, hi = np.interp([tail, 1.0 - tail], cdf, edges)
    return float(lo), float(hi)


# -- Bayes' theorem on a coin ----------------------------------------------------------------
def plot_coin_posterior(
    heads: int,
    tails: int,
    prior_a: float = 1.0,
    prior_b: float = 1.0,
    ax: Axes | None = None,
    *,
    level: float = 0.95,
    path: PathLike | None = None,
) -> Figure:
    r"""Prior, likelihood and exact posterior of a coin's probability of heads.

    With a ``Beta(a, b)`` prior and ``h`` heads, ``t`` tails from Bernoulli tosses the
    posterior is ``Beta(a + h, b + t)``:

    .. math:: p(\theta \mid D) \propto \theta^h (1 - \theta)^t \cdot
        \theta^{a-1} (1 - \theta)^{b-1}.

    The likelihood is drawn normalised to integrate to one (it is not a density in
    ``theta``), so the three curves share an axis.

    Args:
        heads: Number of heads observed, >= 0.
        tails: Number of tails observed, >= 0.
        prior_a: First Beta prior parameter (pseudo-heads), > 0.
        prior_b: Second Beta prior parameter (pseudo-tails), > 0.
        ax: Axes to draw into; a new figure when ``None``.
        level: Mass of the shaded equal-tailed credible interval, in (0, 1).
        path: Save the figure here as well (PNG).

    Returns:
        The figure (one axes).

    Raises:
        ValueError: On negative counts or non-positive prior parameters.
        ImportError: If matplotlib is not installed.
    """
    for name, value in (("heads", heads), ("tails", tails)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}.")
    _check_beta(prior_a, prior_b)
    fig, (axis,) = _new_axes(1, ax, (6.4, 4.2))
    post_a, post_b = prior_a + heads, prior_b + tails
    theta = np.linspace(0.0, 1.0, 801)[1:-1]
    prior = np.exp(_beta_logpdf(theta, prior_a, prior_b))
    lik = np.exp(_beta_logpdf(theta, heads + 1.0, tails + 1.0))  # normalised likelihood
    post = np.exp(_beta_logpdf(theta, post_a, post_b))
    lo, hi = beta_interval(post_a, post_b, level)
    mean = post_a / (post_a + post_b)

    axis.plot(theta, prior, "--", color=_GREY, lw=2, label=f"prior Beta({prior_a:g}, {prior_b:g})")
    axis.plot(
        theta, lik, ":", color=_ORANGE, lw=2.5,
        label=f"likelihood of {heads} H / {tails} T (normalised)",
    )  # fmt: skip
    axis.plot(
        theta, post, "-", color=_BLUE, lw=2.5, label=f"posterior Beta({post_a:g}, {post_b:g})"
    )
    inside = (theta >= lo) & (theta <= hi)
    axis.fill_between(
        theta[inside], post[inside], color=_BLUE, alpha=0.18,
        label=f"{level:.0%} credible interval [{lo:.2f}, {hi:.2f}]",
    )  # fmt: skip
    axis.axvline(mean, color=_BLUE, lw=1, alpha=0.8)
    axis.annotate(
        f"posterior mean {mean:.3f}", (mean, post.max() * 1.02), ha="center", va="bottom",
        color=_BLUE, fontsize=9,
    )  # fmt: skip
    axis.set_xlim(0, 1)
    axis.set_ylim(0, max(prior.max(), lik.max(), post.max()) * 1.15)
    axis.set_xlabel(r"$\theta$ = P(heads)")
    axis.set_ylabel("density")
    axis.set_title("Bayes' theorem on a coin: posterior $\\propto$ likelihood $\\times$ prior")
    axis.legend(loc="upper left", fontsize=8, frameon=False)
    axis.grid(alpha=0.25)
    _save(fig, path)
    return fig


# -- 1-d regression --------------------------------------------------------------------------
def plot_regression(
    x_train: Tensor,
    y_train: Tensor,
    x_grid: Tensor,
    predictives: Mapping[str, GaussianPredictive],
    ax: Axes | Sequence[Axes] | None = None,
    *,
    ylim: tuple[float, float] | None = None,
    path: PathLike | None = None,
) -> Figure:
    """Predictive mean +- 2 sd of several methods on a 1-d input, one panel per method.

    Each panel shows the training points, the predictive mean, a light band of +- 2 total
    predictive sd (noise + weights) and a darker band of +- 2 epistemic sd (spread of
    the sampled means, the part that should grow away from the data).

    Args:
        x_train: Training inputs, shape (N,) or (N, 1).
        y_train: Training targets, shape (N,) or (N, 1).
        x_grid: Sorted inputs at which the predictives were computed, shape (G,) or (G, 1).
        predictives: Method name -> ``GaussianPredictive`` on ``x_grid`` (one output).
        ax: One Axes per method, in the order of ``predictives``; new figure if ``None``.
        ylim: y-axis limits; by default the data range padded by 1.5 times its width.
        path: Save the figure here as well (PNG).

    Returns:
        The figure (``len(predictives)`` axes sharing the y-axis).

    Raises:
        ValueError: If ``predictives`` is empty or a predictive does not match ``x_grid``.
        TypeError: If a value is not a ``GaussianPredictive``.
        ImportError: If matplotlib is not installed.
    """
    if not predictives:
        raise ValueError("predictives is empty; pass at least one name -> GaussianPredictive.")
    xg = _np(x_grid).reshape(-1)
    for name, pred in predictives.items():
        if not isinstance(pred, GaussianPredictive):
            raise TypeError(f"predictives[{name!r}] must be a GaussianPredictive, got {pred!r}.")
        if pred.mean.shape != (xg.shape[0], 1):
            raise ValueError(
                f"predictives[{name!r}] has mean shape {tuple(pred.mean.shape)}; expected "
                f"({xg.shape[0]}, 1) to match x_grid."
            )
    xt, yt = _np(x_train).reshape(-1), _np(y_train).reshape(-1)
    fig, axes = _new_axes(len(predictives), ax, (4.6, 3.8), sharey=True)
    if ylim is None:
        span = yt.max() - yt.min()
        ylim = (yt.min() - 1.5 * span / 2, yt.max() + 1.5 * span / 2)
    for i, (axis, (name, pred)) in enumerate(zip(axes, predictives.items(), strict=True)):
        colour = _METHOD_COLOURS[i % len(_METHOD_COLOURS)]
        mean = _np(pred.mean).reshape(-1)
        sd = _np(pred.stddev).reshape(-1)
        epi = _np(pred.epistemic_variance.sqrt()).reshape(-1)
        axis.fill_between(
            xg, mean - 2 * sd, mean + 2 * sd, color=colour, alpha=0.18, lw=0,
            label="$\\pm$2 sd (total)",
        )  # fmt: skip
        if pred.num_samples > 1:
            axis.fill_between(
                xg, mean - 2 * epi, mean + 2 * epi, color=colour, alpha=0.35, lw=0,
                label="$\\pm$2 sd (epistemic)",
            )  # fmt: skip
        axis.plot(xg, mean, color=colour, lw=2, label="predictive mean")
        axis.scatter(xt, yt, s=10, color="black", alpha=0.7, zorder=3, label="training data")
        axis.set_xlim(xg.min(), xg.max())
        axis.set_ylim(*ylim)
        axis.set_title(name)
        axis.set_xlabel("x")
        axis.grid(alpha=0.25)
        axis.legend(loc="upper center", fontsize=7, frameon=False, ncol=2)
    axes[0].set_ylabel("y")
    if ax is None:
        fig.suptitle("Predictive mean $\\pm$ 2 sd: does the uncertainty grow away from the data?")
    _save(fig, path)
    return fig


# -- 2-d classification maps -----------------------------------------------------------------
def plot_confidence_maps(
    x_train: Tensor,
    y_train: Tensor,
    grid_x: Tensor,
    grid_y: Tensor,
    map_predictive: CategoricalPredictive,
    bnn_predictive: CategoricalPredictive,
    ax: Sequence[Axes] | None = None,
    *,
    bnn_name: str = "BNN",
    path: PathLike | None = None,
    map_name: str = "MAP",
) -> Figure:
    """A deterministic net's confidence next to a BNN's entropy and mutual information.

    Three maps over a 2-d input grid: the MAP network's max-softmax probability (its
    confidence, usually high far from the data too), the BNN's predictive entropy (total
    uncertainty) and its mutual information between label and weights (epistemic
    uncertainty, high where the data say nothing).

    Args:
        x_train: Training inputs, shape (N, 2).
        y_train: Training labels, shape (N,).
        grid_x: First coordinate of the grid, shape (H, W) (``torch.meshgrid(...,
            indexing="xy")``).
        grid_y: Second coordinate of the grid, shape (H, W).
        map_predictive: The MAP net's predictive on the flattened grid (H * W points, in
            ``grid_x.flatten()`` order).
        bnn_predictive: The BNN's predictive on the same points.
        ax: Three Axes to draw into; a new figure (with colour bars) when ``None``.
        bnn_name: How the BNN is called in the titles.
        path: Save the figure here as well (PNG).
        map_name: How the first panel's network is called in its title.

    Returns:
        The figure: three map axes plus one colour bar axes each.

    Raises:
        ValueError: If the grids or predictives have inconsistent shapes.
        TypeError: If a predictive is not a ``CategoricalPredictive``.
        ImportError: If matplotlib is not installed.
    """
    gx, gy = _np(grid_x), _np(grid_y)
    if gx.ndim != 2 or gx.shape != gy.shape:
        raise ValueError(
            f"grid_x and grid_y must be equal (H, W) arrays, got {gx.shape} and {gy.shape}."
        )
    for name, pred in (("map_predictive", map_predictive), ("bnn_predictive", bnn_predictive)):
        if not isinstance(pred, CategoricalPredictive):
            raise TypeError(f"{name} must be a CategoricalPredictive, got {type(pred).__name__}.")
        if len(pred) != gx.size:
            raise ValueError(f"{name} has {len(pred)} points; the grid has {gx.size}.")
    n_classes = map_predictive.samples.shape[-1]
    fig, axes = _new_axes(3, ax, (4.6, 4.0))
    conf = _np(map_predictive.probs.max(-1).values).reshape(gx.shape)
    ent = _np(bnn_predictive.entropy()).reshape(gx.shape)
    mi = _np(bnn_predictive.mutual_information()).reshape(gx.shape)
    panels = [
        (conf, f"{map_name}: confidence (max softmax)", "viridis", 1.0 / n_classes, 1.0),
        (ent, f"{bnn_name}: predictive entropy (nats)", "magma", 0.0, math.log(n_classes)),
        (mi, f"{bnn_name}: mutual information (nats)", "magma", 0.0, max(float(mi.max()), 1e-6)),
    ]
    xt, yt = _np(x_train), _np(y_train).astype(int)
    for axis, (values, title, cmap, vmin, vmax) in zip(axes, panels, strict=True):
        mesh = axis.pcolormesh(gx, gy, values, cmap=cmap, vmin=vmin, vmax=vmax, shading="auto")
        fig.colorbar(mesh, ax=axis, shrink=0.85)
        for c in np.unique(yt):
            sel = yt == c
            axis.scatter(
                xt[sel, 0], xt[sel, 1], s=9, color=_CLASS_COLOURS[c % len(_CLASS_COLOURS)],
                edgecolors="white", linewidths=0.4, label=f"class {c}",
            )  # fmt: skip
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("$x_1$")
        axis.set_aspect("equal")
    axes[0].set_ylabel("$x_2$")
    axes[0].legend(loc="lower left", fontsize=7, framealpha=0.8)
    if ax is None:
        fig.suptitle("Two moons: what a point estimate and a Bayesian net say off the data")
    _save(fig, path)
    return fig


def plot_confidence_map_rows(
    x_train: Tensor,
    y_train: Tensor,
    grid_x: Tensor,
    grid_y: Tensor,
    rows: Sequence[tuple[str, CategoricalPredictive, str, CategoricalPredictive]],
    *,
    title: str | None = None,
    path: PathLike | None = None,
) -> Figure:
    """Several rows of :func:`plot_confidence_maps` in one figure, one row per comparison.

    Args:
        x_train: Training inputs, shape (N, 2).
        y_train: Training labels, shape (N,).
        grid_x: First coordinate of the grid, shape (H, W).
        grid_y: Second coordinate of the grid, shape (H, W).
        rows: Per row ``(map_name, map_predictive, bnn_name, bnn_predictive)``: the first
            panel shows the confidence of ``map_predictive``, the other two the entropy and
            mutual information of ``bnn_predictive``.
        title: The figure's title.
        path: Save the figure here as well (PNG).

    Returns:
        The figure (three map axes per row, each with its colour bar).

    Raises:
        ValueError: If ``rows`` is empty (or as :func:`plot_confidence_maps`).
        ImportError: If matplotlib is not installed.
    """
    if not rows:
        raise ValueError("rows is empty; pass at least one (name, predictive, name, predictive).")
    fig = figure_class()(figsize=(4.6 * 3, 4.0 * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), 3, squeeze=False)
    for row_axes, (map_name, map_pred, bnn_name, bnn_pred) in zip(axes, rows, strict=True):
        plot_confidence_maps(x_train, y_train, grid_x, grid_y, map_pred, bnn_pred,
                             list(row_axes), bnn_name=bnn_name, map_name=map_name)  # fmt: skip
    if title is not None:
        fig.suptitle(title)
    _save(fig, path)
    return fig


# -- calibration -----------------------------------------------------------------------------
def plot_reliability(
    bins_by_method: Mapping[str, ReliabilityBins],
    ax: Axes | Sequence[Axes] | None = None,
    *,
    path: PathLike | None = None,
) -> Figure:
    """Reliability diagrams: accuracy against confidence per bin, one panel per method.

    Bars show the accuracy in each confidence bin; hatched red bars the gap to the mean
    confidence in that bin (below the diagonal: overconfident). The diagonal is perfect
    calibration. Empty bins are skipped.

    Args:
        bins_by_method: Method name -> ``bayesdl.metrics.reliability(probs, y)`` result.
        ax: One Axes per method, in order; a new figure when ``None``.
        path: Save the figure here as well (PNG).

    Returns:
        The figure (``len(bins_by_method)`` axes).

    Raises:
        ValueError: If ``bins_by_method`` is empty.
        ImportError: If matplotlib is not installed.
    """
    if not bins_by_method:
        raise ValueError("bins_by_method is empty; pass at least one name -> ReliabilityBins.")
    fig, axes = _new_axes(len(bins_by_method), ax, (4.0, 4.0), sharey=True)
    for i, (axis, (name, bins)) in enumerate(zip(axes, bins_by_method.items(), strict=True)):
        colour = _METHOD_COLOURS[i % len(_METHOD_COLOURS)]
        keep = _np(bins.count) > 0
        lower, upper = _np(bins.bin_lower)[keep], _np(bins.bin_upper)[keep]
        acc, conf = _np(bins.accuracy)[keep], _np(bins.confidence)[keep]
        width = np.where(upper > lower, upper - lower, 1.0 / max(len(keep), 1))
        axis.bar(
            lower, acc, width=width, align="edge", color=colour, alpha=0.8,
            edgecolor="white", label="accuracy",
        )  # fmt: skip
        axis.bar(
            lower, conf - acc, bottom=acc, width=width, align="edge", fill=False,
            edgecolor=_RED, hatch="//", lw=0.8, label="gap to confidence",
        )  # fmt: skip
        axis.plot([0, 1], [0, 1], "--", color=_GREY, lw=1.2, label="perfect calibration")
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1)
        axis.set_aspect("equal")
        axis.set_xlabel("confidence (max class probability)")
        axis.set_title(f"{name}: ECE = {bins.ece:.3f}  (n = {bins.n_total})", fontsize=10)
        axis.grid(alpha=0.25)
    for first in axes[::_MAX_COLUMNS]:  # the first panel of each row
        first.set_ylabel("accuracy")
    axes[0].legend(loc="upper left", fontsize=8, frameon=False)
    if ax is None:
        fig.suptitle("Reliability on held-out points")
    _save(fig, path)
    return fig


def plot_learning_curves(
    curves: Mapping[str, Sequence[tuple[Sequence[int], Sequence[float]]]],
    ax: Axes | None = None,
    *,
    title: str = "Active learning",
    path: PathLike | None = None,
) -> Figure:
    """Test accuracy against the number of labels, mean +- sd over repeats, per series.

    Args:
        curves: Series name (e.g. acquisition function) -> one ``(labels, accuracy)`` pair
            per repeat; repeats of a series must share the same ``labels``.
        ax: Axes to draw into; a new figure when ``None``.
        title: Figure title.
        path: Save the figure here as well (PNG).

    Returns:
        The figure (one axes).

    Raises:
        ValueError: If ``curves`` is empty or the repeats of a series have other labels.
    """
    if not curves:
        raise ValueError("curves is empty; pass at least one name -> [(labels, accuracy)].")
    fig, (axis,) = _new_axes(1, ax, (7.0, 4.5))
    for i, (name, runs) in enumerate(curves.items()):
        labels = np.asarray(runs[0][0])
        if any(not np.array_equal(np.asarray(r[0]), labels) for r in runs):
            raise ValueError(f"the repeats of {name!r} were evaluated at different label counts.")
        acc = np.array([r[1] for r in runs], dtype=float) * 100
        mean, sd = acc.mean(0), acc.std(0)
        colour = _METHOD_COLOURS[i % len(_METHOD_COLOURS)]
        axis.plot(labels, mean, color=colour, lw=1.8, label=f"{name} (n={len(runs)})")
        if len(runs) > 1:
            axis.fill_between(labels, mean - sd, mean + sd, color=colour, alpha=0.2, lw=0)
    low = min(float(np.min(np.array(r[1]))) for runs in curves.values() for r in runs) * 100
    axis.set_ylim(max(0.0, math.floor(low / 10) * 10), 100)
    for level in (90, 95, 98):
        axis.axhline(level, color=_GREY, lw=0.6, ls=":")
    axis.set_xlabel("number of labelled images")
    axis.set_ylabel("test accuracy (%)")
    axis.set_title(title)
    axis.grid(alpha=0.25)
    axis.legend(loc="lower right", fontsize=9)
    _save(fig, path)
    return fig


def plot_fit(
    report: FitReport,
    ax: Sequence[Axes] | None = None,
    *,
    title: str = "Training objective",
    path: PathLike | None = None,
) -> Figure:
    """The two parts of the objective per epoch: the data term and the prior / KL term.

    For variational methods the objective is the negative ELBO per example, the mean NLL
    plus ``KL / N``: a KL term that stays large while the NLL stalls means the prior wins
    (see ``diagnostics.vi_summary``).

    Args:
        report: A ``FitReport`` with ``data_loss`` and ``prior_loss`` (one value per epoch).
        ax: Two axes to draw into (data term, prior term); a new figure when ``None``.
        title: Figure title.
        path: Save the figure here as well (PNG).

    Returns:
        The figure (two axes).

    Raises:
        ValueError: If the report does not separate the two terms, or their lengths differ.
    """
    if not report.data_loss or not report.prior_loss:
        raise ValueError(
            "report has no per-epoch data_loss / prior_loss (the method's fit does not "
            "separate them); plot report.losses instead."
        )
    if len(report.data_loss) != len(report.prior_loss):
        raise ValueError(
            f"data_loss has {len(report.data_loss)} epochs but prior_loss "
            f"{len(report.prior_loss)}; both need one value per epoch."
        )
    fig, (left, right) = _new_axes(2, ax, (4.5, 3.5))
    epochs = np.arange(1, len(report.data_loss) + 1)
    left.plot(epochs, report.data_loss, color=_BLUE, lw=1.8, label="data term (mean NLL)")
    if len(report.losses) == len(epochs):
        left.plot(epochs, report.losses, color=_GREY, lw=1.2, ls="--", label="total")
    left.set_ylabel("nats per example")
    left.legend(fontsize=9)
    right.plot(epochs, report.prior_loss, color=_ORANGE, lw=1.8, label="prior / KL term")
    right.set_ylabel("nats per example")
    right.legend(fontsize=9)
    for axis in (left, right):
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.25)
    fig.suptitle(title)
    _save(fig, path)
    return fig


# -- decisions: referral and out-of-distribution alarms --------------------------------------
def plot_referral(
    curves_by_method: Mapping[str, ReferralCurve],
    ax: Axes | None = None,
    *,
    score_name: str = "predictive entropy",
    path: PathLike | None = None,
) -> Figure:
    """Accuracy on the cases kept against the fraction referred to a human, per method.

    Each curve refers the most uncertain cases first; a useful uncertainty makes it rise.

    Args:
        curves_by_method: Method name -> ``bayesdl.metrics.referral_curve(...)`` result.
        ax: Axes to draw into; a new figure when ``None``.
        score_name: The uncertainty score the curves were sorted by (axis title).
        path: Save the figure here as well (PNG).

    Returns:
        The figure (one axes).

    Raises:
        ValueError: If ``curves_by_method`` is empty.
    """
    if not curves_by_method:
        raise ValueError("curves_by_method is empty; pass at least one name -> ReferralCurve.")
    fig, (axis,) = _new_axes(1, ax, (5.5, 4.0))
    for i, (name, curve) in enumerate(curves_by_method.items()):
        colour = _METHOD_COLOURS[i % len(_METHOD_COLOURS)]
        axis.plot(
            _np(curve.fraction_referred) * 100, _np(curve.accuracy_retained) * 100,
            color=colour, lw=1.8, marker="o", ms=3, label=name,
        )  # fmt: skip
    axis.set_xlabel("cases referred to a human (%)")
    axis.set_ylabel("accuracy on the cases kept (%)")
    axis.set_title(f"Referral by {score_name}")
    axis.grid(alpha=0.25)
    axis.legend(loc="lower right", fontsize=9)
    _save(fig, path)
    return fig


def plot_score_histograms(
    scores_by_method: Mapping[str, tuple[Tensor, Tensor]],
    ax: Axes | Sequence[Axes] | None = None,
    *,
    score_name: str = "predictive entropy",
    labels: tuple[str, str] = ("in distribution", "out of distribution"),
    bins: int = 40,
    path: PathLike | None = None,
) -> Figure:
    """Histograms of an uncertainty score on in- and out-of-distribution inputs, per method.

    The less the two histograms overlap, the better the score works as an OOD alarm.

    Args:
        scores_by_method: Method name -> ``(score_in, score_out)``, 1-d tensors.
        ax: One Axes per method, in order; a new figure when ``None``.
        score_name: What the score is (x-axis label).
        labels: Legend names of the two sets.
        bins: Histogram bins, shared by both sets of a panel.
        path: Save the figure here as well (PNG).

    Returns:
        The figure (``len(scores_by_method)`` axes).

    Raises:
        ValueError: If ``scores_by_method`` is empty.
    """
    if not scores_by_method:
        raise ValueError("scores_by_method is empty; pass at least one name -> (in, out).")
    fig, axes = _new_axes(len(scores_by_method), ax, (4.0, 3.2))
    for axis, (name, (score_in, score_out)) in zip(axes, scores_by_method.items(), strict=True):
        s_in, s_out = _np(score_in), _np(score_out)
        top = max(float(np.max(s_in, initial=0.0)), float(np.max(s_out, initial=0.0)), 1e-6)
        edges = np.linspace(0.0, top, bins + 1)
        axis.hist(s_in, bins=edges, density=True, alpha=0.6, color=_BLUE, label=labels[0])
        axis.hist(s_out, bins=edges, density=True, alpha=0.6, color=_ORANGE, label=labels[1])
        axis.set_yscale("log")
        axis.set_xlabel(score_name)
        axis.set_title(name, fontsize=10)
        axis.grid(alpha=0.25)
    for first in axes[::_MAX_COLUMNS]:
        first.set_ylabel("density (log scale)")
    axes[0].legend(fontsize=8, frameon=False)
    _save(fig, path)
    return fig


def plot_explanations(
    inputs: Tensor,
    attributions: Tensor,
    predictive: CategoricalPredictive,
    *,
    titles: Sequence[str] | None = None,
    feature_names: Sequence[str] | None = None,
    attribution_name: str = "epistemic attribution",
    path: PathLike | None = None,
) -> Figure:
    """Why is the model unsure? One row per input: the input, its attribution, its predictive.

    For images (inputs of shape (N, C, H, W) or (N, H, W)) the attribution is a heat map
    over the image (summed over channels; red raises the uncertainty, blue lowers it, the
    scale symmetric about zero); for tabular inputs (N, F) the input panel is left out and
    the attribution is a bar chart per feature. The last panel shows the class
    probabilities of the model average, titled with the aleatoric (expected entropy) and
    epistemic (mutual information) parts of the predictive entropy, in nats.

    Args:
        inputs: The N inputs, (N, C, H, W), (N, H, W) or (N, F).
        attributions: Attributions of the same shape (``bayesdl.explain.attribute``).
        predictive: The model average for the N inputs.
        titles: A title per row (e.g. ``"label 3"``); ``None``: none.
        feature_names: Tabular inputs: a name per feature (``None``: ``x0, x1, ...``).
        attribution_name: What the attributions are (the panel's title).
        path: Save the figure here as well (PNG).

    Returns:
        The figure (``N`` rows of 3 axes for images, 2 for tabular inputs).

    Raises:
        ValueError: If the shapes disagree or there are no inputs.
    """
    if inputs.shape != attributions.shape or inputs.shape[0] == 0:
        raise ValueError(
            f"inputs and attributions must have one shape with N >= 1, got "
            f"{tuple(inputs.shape)} and {tuple(attributions.shape)}."
        )
    if len(predictive) != inputs.shape[0]:
        raise ValueError(f"predictive holds {len(predictive)} inputs, expected {inputs.shape[0]}.")
    n, image = inputs.shape[0], inputs.dim() >= 3
    cols = 3 if image else 2
    fig = figure_class()(figsize=(3.0 * cols, 2.4 * n), layout="constrained")
    axes = fig.subplots(n, cols, squeeze=False)
    probs, ale, epi = _np(predictive.probs), _np(predictive.expected_entropy()), _np(
        predictive.mutual_information()
    )  # fmt: skip
    for i in range(n):
        row = axes[i]
        att = _np(attributions[i])
        if image:
            pic = _np(inputs[i]).reshape(-1, *inputs.shape[-2:]).mean(0)
            heat = att.reshape(-1, *inputs.shape[-2:]).sum(0)
            row[0].imshow(pic, cmap="gray")
            row[0].set_title(titles[i] if titles else "input", fontsize=9)
            top = float(np.abs(heat).max()) or 1.0
            row[1].imshow(pic, cmap="gray", alpha=0.35)
            shown = row[1].imshow(heat, cmap="RdBu_r", vmin=-top, vmax=top, alpha=0.8)
            fig.colorbar(shown, ax=row[1], fraction=0.046, pad=0.02)
            row[1].set_title(attribution_name, fontsize=9)
            for axis in row[:2]:
                axis.set_xticks([])
                axis.set_yticks([])
        else:
            names = list(feature_names or [f"x{j}" for j in range(att.size)])
            colours = [_RED if v > 0 else _BLUE for v in att.ravel()]
            row[0].barh(names, att.ravel(), color=colours)
            row[0].axvline(0.0, color=_GREY, lw=0.8)
            row[0].invert_yaxis()
            label = f"{titles[i]}: " if titles else ""
            row[0].set_title(f"{label}{attribution_name}", fontsize=9)
        bars = row[-1]
        bars.bar(range(probs.shape[1]), probs[i], color=_GREY)
        bars.bar(int(probs[i].argmax()), probs[i].max(), color=_BLUE)
        bars.set_ylim(0, 1)
        bars.set_xticks(range(probs.shape[1]))
        bars.tick_params(labelsize=7)
        bars.set_title(f"aleatoric {ale[i]:.2f}, epistemic {epi[i]:.2f} nats", fontsize=9)
    _save(fig, path, dpi=100)
    return fig


def plot_function_draws(
    x: Tensor,
    y: Tensor,
    grid: Tensor,
    draws: dict[str, tuple[Tensor, Tensor]],
    *,
    path: PathLike | None = None,
) -> Figure:
    """Function draws before and after the data, one column per prior (the demo's priors
    figure): prior-predictive draws on top, posterior draws below with the data.

    Args:
        x: Training inputs, shape (N, 1).
        y: Training targets, shape (N, 1).
        grid: The inputs the functions are drawn on, shape (G, 1).
        draws: Prior name -> (prior draws, posterior draws), each of shape (S, G).
        path: Save the figure there when given.

    Returns:
        The figure.
    """
    fig = figure_class()(figsize=(4 * len(draws), 6.5))
    axes = fig.subplots(2, len(draws), squeeze=False)
    g = _np(grid[:, 0])
    for j, (name, (before, after)) in enumerate(draws.items()):
        for i, (f, when) in enumerate(((before, "prior"), (after, "posterior (VI)"))):
            ax = axes[i][j]
            ax.plot(g, _np(f).T, color=_BLUE if i == 0 else _ORANGE, alpha=0.35, lw=0.8)
            if i == 1:
                ax.scatter(_np(x[:, 0]), _np(y[:, 0]), s=6, color="k", zorder=3)
            ax.set_ylim(-3, 3)
            ax.set_title(f"{name}: {when}", fontsize=10)
    fig.suptitle("Function draws before and after the data (regression with a gap)")
    fig.tight_layout()
    _save(fig, path, dpi=100)
    return fig
