"""How far is an approximation from the exact posterior? Distances between predictives.

Every method returns a ``Predictive``, so an approximate posterior can be measured against a
reference one (full-batch NUTS, ``bdl.HMC``, or a closed form) on the same inputs:

* classification (Izmailov et al., 2021): ``agreement``, the fraction of inputs where the
  two model averages predict the same class, and ``total_variation``, the mean over inputs
  of ``1/2 sum_c |p_c - q_c|``;
* regression: each predictive is moment-matched, per input and output, by the Gaussian
  ``N(mean, variance)`` with its total (epistemic + aleatoric) variance; then the mean over
  inputs of the 2-Wasserstein distance ``wasserstein2`` and of ``KL(reference ||
  approximation)`` (``gaussian_kl``), and the ratio of predictive variances
  (``variance_ratio``);
* ``compare`` picks the measures for the likelihood; ``vi_summary`` looks inside a
  per-weight Gaussian posterior (mean-field VI) for layers that collapsed to the prior;
* ``nuts_reference`` fits the reference posterior and reports its convergence
  (split R-hat and ESS on the predictions, on every weight, and on ``weight_invariants``,
  functions of the weights that the network's symmetries leave unchanged).

This module is a leaf: it uses methods and predictives through their public interface, and
nothing under ``bayesdl.methods`` imports it.

References:
    Izmailov, Vikram, Hoffman & Wilson, "What Are Bayesian Neural Network Posteriors Really
    Like?", ICML 2021.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from bayesdl.likelihoods import Likelihood
from bayesdl.methods import HMC
from bayesdl.methods.hmc import chain_stats
from bayesdl.predictive import CategoricalPredictive, GaussianPredictive, Predictive
from bayesdl.priors import Prior
from bayesdl.types import DataLike

__all__ = [
    "agreement", "total_variation", "wasserstein2", "gaussian_kl", "variance_ratio",
    "compare", "LayerSummary", "vi_summary", "ReferenceReport", "nuts_reference",
    "check_nuts_size", "MAX_NUTS_COST", "REFERENCE_NUTS", "reference_columns",
    "weight_invariants",
]  # fmt: skip

SNR_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
"""Quantiles of the signal-to-noise ratio ``|mu| / sigma`` reported by ``vi_summary``."""

MAX_NUTS_COST = 2e7
"""Largest ``training examples x network parameters`` that ``check_nuts_size`` accepts: one
NUTS gradient costs about that many multiply-adds, and a reference run needs ~10^5 of them
(chains x draws x leapfrog steps), about half an hour on two CPU cores at this size."""


# -- argument checks -------------------------------------------------------------------------
def _pair(p: Predictive, q: Predictive, kind: type[Predictive], names: str = "p, q") -> None:
    """Refuse predictives of another likelihood or of other inputs / outputs."""
    a, b = names.split(", ")
    for name, pred in ((a, p), (b, q)):
        if not isinstance(pred, kind):
            raise TypeError(
                f"{name} must be a {kind.__name__} (from predict() with the "
                f"{'Categorical' if kind is CategoricalPredictive else 'Gaussian'} likelihood), "
                f"got {type(pred).__name__}."
            )
    if p.samples.shape[1:] != q.samples.shape[1:]:
        raise ValueError(
            f"{a} and {b} describe different inputs or outputs: (N, ...) = "
            f"{tuple(p.samples.shape[1:])} vs {tuple(q.samples.shape[1:])}; predict both "
            "on the same inputs with the same network."
        )
    if p.samples.shape[1] == 0:
        raise ValueError(f"{a} and {b} hold no inputs; predict on at least one input.")


def _moments(p: GaussianPredictive, like: Tensor) -> tuple[Tensor, Tensor]:
    """Moment-matched mean and total variance (N, D), in float64 on ``like``'s device."""
    return (
        p.mean.to(like.device, torch.float64),
        p.variance.to(like.device, torch.float64),
    )


# -- classification --------------------------------------------------------------------------
def agreement(p: CategoricalPredictive, q: CategoricalPredictive) -> float:
    """Fraction of inputs where two model averages predict the same class.

    ``1/N sum_n [argmax_c p(c|x_n) = argmax_c q(c|x_n)]`` (Izmailov et al., 2021); 1 for
    identical predictions.

    Args:
        p: A categorical predictive, samples (S, N, C).
        q: Another one on the same N inputs and C classes (any number of samples).

    Returns:
        The agreement, in [0, 1].

    Raises:
        TypeError: If either is not a ``CategoricalPredictive``.
        ValueError: If their inputs or classes differ.

    Examples:
        >>> import torch
        >>> p = CategoricalPredictive(torch.tensor([[[0.9, 0.1], [0.2, 0.8]]]).log())
        >>> q = CategoricalPredictive(torch.tensor([[[0.6, 0.4], [0.7, 0.3]]]).log())
        >>> agreement(p, q)
        0.5
    """
    _pair(p, q, CategoricalPredictive)
    same = p.predicted() == q.predicted().to(p.samples.device)
    return float(same.double().mean())


def total_variation(p: CategoricalPredictive, q: CategoricalPredictive) -> float:
    """Mean over inputs of the total variation distance between two model averages.

    ``1/N sum_n 1/2 sum_c |p(c|x_n) - q(c|x_n)|`` (Izmailov et al., 2021); 0 for identical
    predictions, 1 for disjoint ones.

    Args:
        p: A categorical predictive, samples (S, N, C).
        q: Another one on the same N inputs and C classes.

    Returns:
        The mean total variation, in [0, 1].

    Raises:
        TypeError: If either is not a ``CategoricalPredictive``.
        ValueError: If their inputs or classes differ.

    Examples:
        >>> import torch
        >>> p = CategoricalPredictive(torch.tensor([[[0.9, 0.1]]]).log())
        >>> q = CategoricalPredictive(torch.tensor([[[0.6, 0.4]]]).log())
        >>> round(total_variation(p, q), 6)
        0.3
    """
    _pair(p, q, CategoricalPredictive)
    diff = p.probs.double() - q.probs.to(p.samples.device, torch.float64)
    return float(0.5 * diff.abs().sum(-1).mean())


# -- regression ------------------------------------------------------------------------------
def wasserstein2(p: GaussianPredictive, q: GaussianPredictive) -> float:
    """Mean over inputs of the 2-Wasserstein distance between moment-matched Gaussians.

    Each predictive is replaced, per input, by ``N(mean, diag(variance))`` with its total
    predictive mean and variance (D outputs independent); between two such Gaussians
    ``W2^2 = sum_d (m_pd - m_qd)^2 + (s_pd - s_qd)^2`` with ``s`` the standard deviations.

    Args:
        p: A Gaussian predictive, means (S, N, D).
        q: Another one on the same N inputs and D outputs.

    Returns:
        ``1/N sum_n W2(p_n, q_n)``, in the units of the targets.

    Raises:
        TypeError: If either is not a ``GaussianPredictive``.
        ValueError: If their inputs or outputs differ.

    Examples:
        >>> import torch
        >>> p = GaussianPredictive(torch.zeros(1, 1, 1), torch.tensor(1.0))
        >>> q = GaussianPredictive(torch.full((1, 1, 1), 3.0), torch.tensor(25.0))
        >>> wasserstein2(p, q)  # sqrt(3^2 + (1 - 5)^2)
        5.0
    """
    _pair(p, q, GaussianPredictive)
    (mp, vp), (mq, vq) = _moments(p, p.samples), _moments(q, p.samples)
    w2_sq = ((mp - mq).square() + (vp.sqrt() - vq.sqrt()).square()).sum(-1)
    return float(w2_sq.sqrt().mean())


def gaussian_kl(reference: GaussianPredictive, approximation: GaussianPredictive) -> float:
    """Mean over inputs of ``KL(reference || approximation)`` between moment-matched Gaussians.

    Per input and output, with means ``m_r, m_a`` and total variances ``v_r, v_a``:
    ``1/2 (log(v_a / v_r) + (v_r + (m_r - m_a)^2) / v_a - 1)``, summed over the D outputs.
    The direction penalises an approximation that is too narrow where the reference has
    mass (over-confidence) more than one too wide.

    Args:
        reference: The reference predictive (e.g. NUTS), means (S, N, D).
        approximation: The approximate one on the same N inputs and D outputs.

    Returns:
        The mean KL divergence, in nats.

    Raises:
        TypeError: If either is not a ``GaussianPredictive``.
        ValueError: If their inputs or outputs differ.

    Examples:
        >>> import torch
        >>> r = GaussianPredictive(torch.zeros(1, 1, 1), torch.tensor(1.0))
        >>> a = GaussianPredictive(torch.ones(1, 1, 1), torch.tensor(1.0))
        >>> gaussian_kl(r, a)  # (m_r - m_a)^2 / 2
        0.5
    """
    _pair(reference, approximation, GaussianPredictive, "reference, approximation")
    (mr, vr), (ma, va) = (
        _moments(reference, reference.samples),
        _moments(approximation, reference.samples),
    )
    kl = 0.5 * ((va / vr).log() + (vr + (mr - ma).square()) / va - 1.0)
    return float(kl.sum(-1).mean())


def variance_ratio(
    approximation: GaussianPredictive, reference: GaussianPredictive, *, epistemic: bool = False
) -> float:
    """Mean over inputs and outputs of ``variance(approximation) / variance(reference)``.

    Below 1: the approximation is over-confident (too narrow); above 1: under-confident.

    Args:
        approximation: The approximate predictive, means (S, N, D).
        reference: The reference one on the same N inputs and D outputs.
        epistemic: Compare only the epistemic variances (the spread of the sampled means),
            without the observation noise; the total variances otherwise.

    Returns:
        The mean variance ratio.

    Raises:
        TypeError: If either is not a ``GaussianPredictive``.
        ValueError: If their inputs or outputs differ, or a reference variance is zero.

    Examples:
        >>> import torch
        >>> a = GaussianPredictive(torch.zeros(1, 2, 1), torch.tensor(1.0))
        >>> r = GaussianPredictive(torch.zeros(1, 2, 1), torch.tensor(4.0))
        >>> variance_ratio(a, r)
        0.25
    """
    _pair(approximation, reference, GaussianPredictive, "approximation, reference")
    if epistemic:
        va, vr = approximation.epistemic_variance, reference.epistemic_variance
    else:
        va, vr = approximation.variance, reference.variance
    vr = vr.double()
    if not (vr > 0).all():
        raise ValueError(
            "the reference has zero predictive variance at some inputs, so the ratio is "
            "undefined; use a reference with more than one distinct posterior sample."
        )
    return float((va.to(vr.device, torch.float64) / vr).mean())


# -- compare: the measures of a likelihood, picked by the predictive's type ------------------
_MEASURES: dict[type[Predictive], dict[str, Callable[[Any, Any], float]]] = {
    CategoricalPredictive: {
        "agreement": lambda p, r: agreement(p, r),
        "total_variation": lambda p, r: total_variation(p, r),
    },
    GaussianPredictive: {
        "w2": lambda p, r: wasserstein2(p, r),
        "kl": lambda p, r: gaussian_kl(r, p),
        "variance_ratio": lambda p, r: variance_ratio(p, r),
        "epistemic_variance_ratio": lambda p, r: (
            variance_ratio(p, r, epistemic=True) if (r.epistemic_variance > 0).all() else math.nan
        ),
    },
}
"""Predictive type -> measure name -> ``f(predictive, reference)``. A new likelihood whose
predictive is a new class registers its measures here."""


def compare(predictive: Predictive, reference: Predictive) -> dict[str, float]:
    """Every distance of ``predictive`` from ``reference`` that suits their likelihood.

    Categorical: ``agreement`` and ``total_variation``. Gaussian: ``w2`` (the mean
    2-Wasserstein distance), ``kl`` (mean ``KL(reference || predictive)``, nats),
    ``variance_ratio`` (total predictive variance, predictive / reference) and
    ``epistemic_variance_ratio`` (the same without the noise; ``nan`` where the reference
    has no epistemic spread).

    Only shapes can be checked: predict both on the very same inputs.

    Args:
        predictive: The approximation's predictive.
        reference: The reference predictive (NUTS or exact) on the same inputs.

    Returns:
        Measure name -> value.

    Raises:
        TypeError: If the two come from different likelihoods, or of one without measures.
        ValueError: If they hold different numbers of inputs, classes or outputs.

    Examples:
        >>> import torch
        >>> p = CategoricalPredictive(torch.tensor([[[0.9, 0.1]]]).log())
        >>> compare(p, p)
        {'agreement': 1.0, 'total_variation': 0.0}
    """
    if type(predictive) is not type(reference):
        raise TypeError(
            f"predictive is a {type(predictive).__name__} but reference a "
            f"{type(reference).__name__}: compare predictions of the same likelihood."
        )
    measures = _MEASURES.get(type(predictive))
    if measures is None:
        raise TypeError(
            f"no distance measures for {type(predictive).__name__}; known: "
            f"{[t.__name__ for t in _MEASURES]}."
        )
    _pair(predictive, reference, type(predictive), "predictive, reference")
    return {name: f(predictive, reference) for name, f in measures.items()}


# -- inside a mean-field Gaussian posterior --------------------------------------------------
@dataclass
class LayerSummary:
    """What ``vi_summary`` finds in one layer's per-weight Gaussian posterior.

    Attributes:
        layer: Module name of the layer (``""`` for a model that is one layer).
        n_weights: Number of weights and biases of the layer in the posterior.
        collapsed_fraction: Fraction whose ``KL(q_i || p_i)`` is below the threshold: the
            data did not move them from the prior.
        mean_kl: Mean per-weight KL, nats.
        snr_quantiles: Quantile level -> quantile of ``|mu| / sigma`` over the layer.
        mean_sigma: Mean posterior standard deviation.
        prior_sigma: Mean prior standard deviation of the layer's weights.
    """

    layer: str
    n_weights: int
    collapsed_fraction: float
    mean_kl: float
    snr_quantiles: dict[float, float]
    mean_sigma: float
    prior_sigma: float


def vi_summary(
    method: Any, *, threshold: float = 0.01, warn_fraction: float = 0.5
) -> dict[str, LayerSummary]:
    """Per layer of a per-weight Gaussian posterior: how much of it collapsed to the prior.

    A weight whose posterior ``q_i = N(mu_i, sigma_i^2)`` stays within ``threshold`` nats of
    its prior (``KL(q_i || p_i) < threshold``) carries no information from the data. When
    more than ``warn_fraction`` of a layer has collapsed, the KL term has won over the
    likelihood (too narrow a prior, too little data for the width, or too few epochs) and a
    ``UserWarning`` says so.

    Args:
        method: A fitted method with a per-weight Gaussian posterior: ``mean()`` and
            ``std()`` (name -> tensor) and a ``prior`` with ``kl_elements`` and
            ``marginal_std``, such as ``MeanFieldVI``.
        threshold: Per-weight KL, in nats, below which a weight counts as collapsed.
        warn_fraction: Warn for layers with a larger collapsed fraction, in [0, 1].

    Returns:
        Layer (module) name -> ``LayerSummary``, in model order.

    Raises:
        TypeError: If ``method`` has no per-weight Gaussian posterior.
        ValueError: On a non-positive ``threshold`` or ``warn_fraction`` outside [0, 1].
        NotImplementedError: If its prior has no closed-form per-weight KL.
    """
    mean_fn, std_fn = getattr(method, "mean", None), getattr(method, "std", None)
    prior = getattr(method, "prior", None)
    if not (callable(mean_fn) and callable(std_fn) and isinstance(prior, Prior)):
        raise TypeError(
            "vi_summary needs a method with a per-weight Gaussian posterior (mean() and std()) "
            f"and a prior, such as MeanFieldVI; got {type(method).__name__}."
        )
    if not threshold > 0:
        raise ValueError(f"threshold must be positive (nats), got {threshold}.")
    if not 0 <= warn_fraction <= 1:
        raise ValueError(f"warn_fraction must lie in [0, 1], got {warn_fraction}.")
    means, stds = mean_fn(), std_fn()
    groups: dict[str, list[str]] = {}
    for name in means:
        groups.setdefault(name.rpartition(".")[0], []).append(name)
    out = {}
    levels = torch.tensor(SNR_QUANTILES, dtype=torch.float64)
    with torch.no_grad():
        for layer, names in groups.items():
            mu = torch.cat([means[n].detach().double().flatten() for n in names])
            sigma = torch.cat([stds[n].detach().double().flatten() for n in names])
            kl = torch.cat(
                [
                    prior.kl_elements(
                        n, means[n].detach().double(), stds[n].detach().double()
                    ).flatten()
                    for n in names
                ]
            )
            prior_sd = sum(prior.marginal_std(n) * means[n].numel() for n in names) / mu.numel()
            snr = torch.quantile((mu.abs() / sigma).cpu(), levels)
            summary = LayerSummary(
                layer=layer, n_weights=mu.numel(),
                collapsed_fraction=float((kl < threshold).double().mean()),
                mean_kl=float(kl.mean()),
                snr_quantiles={q: float(v) for q, v in zip(SNR_QUANTILES, snr, strict=True)},
                mean_sigma=float(sigma.mean()), prior_sigma=float(prior_sd),
            )  # fmt: skip
            out[layer] = summary
            if summary.collapsed_fraction > warn_fraction:
                warnings.warn(
                    f"layer {layer or '<model>'!r}: {summary.collapsed_fraction:.0%} of its "
                    f"{summary.n_weights} weights have collapsed to the prior (KL < "
                    f"{threshold} nats): this layer is not learning; the KL term dominates. "
                    "Try a wider prior, KL annealing, more epochs or a smaller layer.",
                    UserWarning,
                    stacklevel=2,
                )
    return out


# -- the reference posterior: full-batch NUTS ------------------------------------------------
def check_nuts_size(
    n_data: int, n_params: int, *, max_cost: float = MAX_NUTS_COST, what: str = "a NUTS reference"
) -> None:
    """Refuse data and networks too large for full-batch NUTS.

    Args:
        n_data: Number of training examples (each NUTS gradient sees all of them).
        n_params: Number of network parameters (all are sampled).
        max_cost: Largest ``n_data * n_params`` accepted; see ``MAX_NUTS_COST``.
        what: What would run NUTS, for the message (``evaluate``'s reference, or a method
            under evaluation).

    Raises:
        ValueError: Naming both sizes and the limit, when ``n_data * n_params > max_cost``.
    """
    if n_data * n_params > max_cost:
        raise ValueError(
            f"too large for {what}: {n_data} training examples x {n_params} network "
            f"parameters = {n_data * n_params:.3g} > {max_cost:.3g}; use fewer examples "
            "(--train-size) or a smaller network."
        )


@dataclass
class ReferenceReport:
    """Convergence and cost of a NUTS reference posterior (see ``nuts_reference``).

    Attributes:
        chains: Number of chains; ``draws`` per chain were kept after ``warmup``.
        draws: Draws kept per chain.
        warmup: Warm-up iterations per chain.
        max_r_hat_weights: Largest split R-hat over every weight (symmetries of the network,
            such as permuted hidden units, can keep it high while predictions agree).
        min_ess_weights: Smallest effective sample size over the weights.
        max_r_hat_weight_invariants: Largest split R-hat of ``weight_invariants`` (sorted
            unit norms of every parameter tensor, unchanged by permuting units): the
            weights' convergence with the permutation symmetry factored out.
        min_ess_weight_invariants: Their smallest effective sample size.
        max_r_hat_predictions: Largest split R-hat of the predictions (class probabilities
            or predictive means) on the inputs given.
        median_r_hat_predictions: Their median.
        min_ess_predictions: Smallest ESS of the predictions.
        median_ess_predictions: Their median ESS.
        divergences: Divergent transitions after warm-up, all chains.
        wall_time_s: Seconds for the whole fit (MAP initialisation and every chain).
        converged: Whether the largest R-hat of the predictions and of the weight
            invariants are both at most the threshold.
        extras: ``n_params`` and ``n_data``, the sizes behind the cost.
    """

    chains: int
    draws: int
    warmup: int
    max_r_hat_weights: float
    min_ess_weights: float
    max_r_hat_predictions: float
    median_r_hat_predictions: float
    min_ess_predictions: float
    median_ess_predictions: float
    divergences: int
    wall_time_s: float
    max_r_hat_weight_invariants: float = math.nan
    min_ess_weight_invariants: float = math.nan
    converged: bool = False
    extras: dict[str, float] = field(default_factory=dict)


def _n_data(data: DataLike) -> int:
    """Number of training examples in ``(X, y)``, a ``Dataset`` or a ``DataLoader``."""
    if isinstance(data, tuple):
        return len(data[0])
    if isinstance(data, DataLoader):
        return len(data.dataset)  # type: ignore[arg-type]
    return len(data)  # type: ignore[arg-type]


def _chain_stats(samples: Tensor, chains: int) -> tuple[Tensor, Tensor]:
    """Split R-hat and ESS of every output entry of draws ordered chain after chain."""
    return chain_stats(samples.reshape(chains, samples.shape[0] // chains, -1))


def weight_invariants(draws: Mapping[str, Tensor]) -> Tensor:
    """Functions of a network's weights that permuting its units leaves unchanged.

    A network's posterior is symmetric under permutations of its hidden units (rows of one
    layer's weight and bias, columns of the next layer's weight), so chains can sit in
    equivalent modes and per-weight R-hat stays large however well they mix. For every
    parameter tensor of shape ``(d0, d1, ...)`` this returns the L2 norms of its
    ``d0`` slices along the first axis (a unit's incoming weights; ``|b|`` for a bias),
    sorted, and for two or more axes also the sorted norms of its ``d1`` slices along the
    second (a unit's outgoing weights): any permutation of any layer's units only reorders
    each sorted list. These are the quantities whose R-hat says whether the chains agree
    on the weights up to that symmetry.

    Args:
        draws: Parameter name -> draws of shape (n, *param.shape) (``HMC.bank()``).

    Returns:
        Shape (n, q): ``q`` invariants per draw, in the mapping's order.

    Examples:
        >>> import torch
        >>> w = torch.tensor([[[3.0, 4.0], [0.0, 1.0]]])  # one draw of a 2 x 2 weight
        >>> weight_invariants({"w": w})
        tensor([[1.0000, 5.0000, 3.0000, 4.1231]])
    """
    parts: list[Tensor] = []
    for name, t in draws.items():
        if t.ndim < 2:
            raise ValueError(f"draws[{name!r}] must have shape (n, *param.shape), got "
                             f"{tuple(t.shape)}.")  # fmt: skip
        t = t.detach()
        parts.append(t.reshape(*t.shape[:2], -1).norm(dim=2).sort(dim=1).values)
        if t.ndim >= 3:
            cols = t.transpose(1, 2)
            parts.append(cols.reshape(*cols.shape[:2], -1).norm(dim=2).sort(dim=1).values)
    return torch.cat(parts, dim=1)


def nuts_reference(
    model: nn.Module,
    data: DataLike,
    x_eval: Tensor,
    *,
    likelihood: Likelihood | None = None,
    prior: Prior | None = None,
    chains: int = 4,
    draws: int = 100,
    warmup: int = 200,
    max_tree_depth: int = 8,
    full_mass: bool = False,
    init_epochs: int = 200,
    lr: float = 3e-3,
    batch_size: int = 64,
    max_r_hat: float = 1.01,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> tuple[HMC, Predictive, ReferenceReport]:
    """Fit a full-batch NUTS reference posterior and measure its convergence.

    Runs ``bdl.HMC`` (Pyro's NUTS) with ``chains`` chains, each started at a MAP fit of
    ``init_epochs`` epochs plus a little jitter, then predicts on ``x_eval`` with every
    draw and computes split R-hat and ESS (Gelman et al.; Stan's estimators, via Pyro) of
    those predictions, of every weight and of ``weight_invariants``. ``converged`` is
    ``R-hat <= max_r_hat`` on the predictions and on the weight invariants; the R-hat of
    the raw weights is reported, not required (permuting hidden units gives equivalent
    modes between which chains need not mix).

    Args:
        model: The network (its parameters are sampled; it is changed in place).
        data: Training data, ``(X, y)``, a ``Dataset`` or a ``DataLoader``; NUTS uses all of
            it in every step.
        x_eval: Inputs at which to predict and check convergence, shape (M, ...).
        likelihood: Observation model; ``Categorical()`` by default.
        prior: Weight prior; ``priors.Normal(1.0)`` by default.
        chains: Number of chains (at least 2, for R-hat).
        draws: Draws kept per chain.
        warmup: Warm-up (adaptation) iterations per chain.
        max_tree_depth: Most doublings of a NUTS trajectory.
        full_mass: Adapt a dense mass matrix (strongly correlated, small posteriors).
        init_epochs: Epochs of the Adam MAP fit that initialises every chain.
        lr: Learning rate of that MAP fit.
        batch_size: Minibatch size of that MAP fit.
        max_r_hat: R-hat of the predictions and weight invariants at or below which
            ``converged`` is true.
        generator: Random generator (reproducible runs).
        progress: Show progress bars.

    Returns:
        The fitted ``HMC`` method, its predictive on ``x_eval`` (every draw, chain after
        chain) and a ``ReferenceReport``.

    Raises:
        ImportError: Without Pyro (``pip install bayesdl[mcmc]``).
        ValueError: On fewer than 2 chains or data too large (``check_nuts_size``).
    """
    if chains < 2:
        raise ValueError(f"chains must be at least 2 to compute R-hat, got {chains}.")
    hmc = HMC(
        model, likelihood=likelihood, prior=prior, num_samples=draws, num_chains=chains,
        max_tree_depth=max_tree_depth, full_mass=full_mass,
    )  # fmt: skip
    n_params, n_data = sum(p.numel() for p in model.parameters()), _n_data(data)
    check_nuts_size(n_data, n_params)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the report below says it
        hmc.fit(
            data, warmup=warmup, epochs=init_epochs, lr=lr, batch_size=batch_size,
            progress=progress, generator=generator,
        )  # fmt: skip
        diag = hmc.diagnostics()
    wall = time.perf_counter() - start
    gen = None if generator is None else torch.Generator(hmc.device).manual_seed(0)
    pred = hmc.predict(x_eval, samples=chains * draws, generator=gen)
    outputs = pred.sample_probs if isinstance(pred, CategoricalPredictive) else pred.samples
    r_hat, ess = _chain_stats(outputs, chains)
    r_hat = torch.nan_to_num(r_hat, nan=1.0)  # constant outputs (a saturated class) agree
    w_r_hat, w_ess = _chain_stats(weight_invariants(hmc.bank()), chains)
    report = ReferenceReport(
        chains=chains, draws=draws, warmup=warmup,
        max_r_hat_weights=diag.max_r_hat, min_ess_weights=diag.min_ess,
        max_r_hat_predictions=float(r_hat.max()), median_r_hat_predictions=float(r_hat.median()),
        min_ess_predictions=float(ess.min()), median_ess_predictions=float(ess.median()),
        divergences=diag.divergences, wall_time_s=wall,
        max_r_hat_weight_invariants=float(w_r_hat.max()),
        min_ess_weight_invariants=float(w_ess.min()),
        converged=bool(r_hat.max() <= max_r_hat and w_r_hat.max() <= max_r_hat),
    )  # fmt: skip
    report.extras["n_params"], report.extras["n_data"] = float(n_params), float(n_data)
    return hmc, pred, report


REFERENCE_NUTS: dict[str, int] = {"chains": 4, "draws": 100, "warmup": 100, "max_tree_depth": 6}
"""NUTS settings of ``reference_columns`` (the reference behind ``evaluate --reference hmc``)."""


def reference_columns(
    model: nn.Module,
    train: DataLike,
    x: Tensor,
    predictives: Mapping[str, Predictive],
    *,
    likelihood: Likelihood | None = None,
    init_epochs: int = 100,
    lr: float = 1e-3,
    batch_size: int = 128,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> tuple[dict[str, dict[str, float]], ReferenceReport]:
    """Distances of several methods' predictives from a NUTS reference fitted here.

    Checks the size first (``check_nuts_size``), fits ``nuts_reference`` with the settings
    in ``REFERENCE_NUTS`` and compares every predictive with it (``compare``).

    Args:
        model: A fresh network of the architecture the methods used (sampled in place).
        train: The training data the methods were fitted on.
        x: The inputs the predictives were computed on, shape (M, ...).
        predictives: Method name -> its predictive on ``x``.
        likelihood: Observation model; ``Categorical()`` by default.
        init_epochs: Epochs of the MAP fit that starts the chains.
        lr: Learning rate of that MAP fit.
        batch_size: Minibatch size of that MAP fit.
        generator: Random generator (reproducible runs).
        progress: Show progress bars.

    Returns:
        Method name -> ``{"ref_<measure>": value}``, and the reference's ``ReferenceReport``.

    Raises:
        ValueError: If the data and network are too large for NUTS, naming both sizes.
    """
    check_nuts_size(_n_data(train), sum(p.numel() for p in model.parameters()))
    _, ref, report = nuts_reference(
        model, train, x, likelihood=likelihood, init_epochs=init_epochs, lr=lr,
        batch_size=batch_size, generator=generator, progress=progress, **REFERENCE_NUTS,
    )  # fmt: skip
    columns = {
        name: {f"ref_{k}": v for k, v in compare(pred, ref).items()}
        for name, pred in predictives.items()
    }
    return columns, report
