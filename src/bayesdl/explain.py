"""Why is the model unsure? Uncertainty attribution, sparsity and signal-to-noise pruning.

* ``attribute(method, x, target)``: how much each input feature contributes to the
  epistemic, aleatoric or total uncertainty of a prediction, by integrated gradients,
  the plain gradient or occlusion (Captum's implementations; the extra ``explain``). The
  function explained is the uncertainty of the model average over S posterior draws with
  **common random numbers**: every evaluation, at every point of an integrated-gradients
  path, uses the same S draws (``BaseMethod.predict_differentiable`` with a generator reset
  to one state), so it is one deterministic, differentiable function of the input.
* ``sparsity(method)``: what the method knows about which weights it uses, per layer:
  the signal-to-noise ratio ``|mean| / sd`` of a Gaussian weight posterior, the
  probability that an L0 gate is open, and a horseshoe prior's posterior unit scales.
* ``prune(method, fraction, by)``: Blundell et al.'s (2015) signal-to-noise pruning: a copy
  of the method with the weights of lowest ``|mean| / sd`` (or lowest ``|mean|``) fixed at
  exactly zero in every posterior draw.

Uncertainty targets, per input (nats for classification, squared output units for
regression, summed over output dimensions):

=============  ==============================  ==========================
target         classification                  regression
=============  ==============================  ==========================
``epistemic``  mutual information (BALD)       variance of the sampled means
``aleatoric``  expected entropy                expected noise variance
``total``      predictive entropy              their sum
=============  ==============================  ==========================

References:
    Sundararajan et al., "Axiomatic Attribution for Deep Networks", ICML 2017.
    Blundell et al., "Weight Uncertainty in Neural Networks", ICML 2015.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from bayesdl._checks import check_model_input, check_positive_int
from bayesdl.methods.base import BaseMethod
from bayesdl.predictive import CategoricalPredictive, GaussianPredictive, Predictive
from bayesdl.runtime import default_chunk_rows

__all__ = ["Target", "How", "uncertainty", "attribute", "sparsity", "prune", "Pruning"]

Target = Literal["epistemic", "aleatoric", "total"]
"""Which uncertainty to explain: ``"epistemic"`` (about the weights), ``"aleatoric"``
(noise in the data) or ``"total"`` (their sum)."""

How = Literal["integrated_gradients", "gradient", "occlusion"]
"""``"integrated_gradients"`` (complete: the attributions sum to the change of the target
from the baseline), ``"gradient"`` (local slope, one backward pass) or ``"occlusion"``
(the drop of the target when a window of features is set to the baseline)."""

_TARGETS = ("epistemic", "aleatoric", "total")
_HOWS = ("integrated_gradients", "gradient", "occlusion")


def uncertainty(predictive: Predictive, target: Target = "epistemic") -> Tensor:
    """The uncertainty ``target`` of each input of a predictive, shape (N,).

    Classification: mutual information, expected entropy, entropy (nats). Regression: the
    epistemic variance, aleatoric variance, or their sum, summed over output dimensions.

    Args:
        predictive: A ``CategoricalPredictive`` or ``GaussianPredictive``.
        target: ``"epistemic"``, ``"aleatoric"`` or ``"total"``.

    Returns:
        One value per input, shape (N,), differentiable when the predictive is.

    Raises:
        ValueError: For an unknown ``target``.
        TypeError: For another kind of predictive.
    """
    if target not in _TARGETS:
        raise ValueError(f"target must be one of {_TARGETS}, got {target!r}.")
    if isinstance(predictive, CategoricalPredictive):
        if target == "total":
            return predictive.entropy()
        aleatoric = predictive.expected_entropy()
        if target == "aleatoric":
            return aleatoric
        # entropy - expected entropy, not clamped: a clamp would cut the gradient at 0
        return predictive.entropy() - aleatoric
    if isinstance(predictive, GaussianPredictive):
        parts = {
            "epistemic": lambda: predictive.epistemic_variance,
            "aleatoric": lambda: predictive.aleatoric_variance,
            "total": lambda: predictive.variance,
        }
        return parts[target]().sum(-1)
    raise TypeError(
        f"predictive must be a CategoricalPredictive or GaussianPredictive, got "
        f"{type(predictive).__name__}."
    )


def _captum() -> Any:
    try:
        import captum.attr
    except ImportError as err:  # pragma: no cover - the extra is installed in CI
        raise ImportError(
            "bayesdl.explain.attribute needs Captum: pip install 'bayesdl[explain]'."
        ) from err
    return captum.attr


def uncertainty_function(
    method: BaseMethod,
    target: Target = "epistemic",
    samples: int = 50,
    *,
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
) -> Callable[[Tensor], Tensor]:
    """The uncertainty of ``method`` as a deterministic, differentiable function of inputs.

    Each call draws the same S posterior samples (common random numbers): a fresh generator,
    seeded once from ``generator`` here, for every block of at most ``chunk_size //
    samples`` inputs, so the draws depend neither on the batch nor on the chunking.

    Args:
        method: A fitted method.
        target: ``"epistemic"``, ``"aleatoric"`` or ``"total"``.
        samples: Posterior draws S.
        generator: Random generator that picks the draws (``None``: torch's global RNG).
        chunk_size: Most (sample, input) pairs per vectorised call; default
            ``runtime.default_chunk_rows``.

    Returns:
        ``f(x) -> (N,)``, the uncertainty of each row of ``x``.

    Raises:
        ValueError: For an unknown ``target``, ``samples < 1`` or ``chunk_size < 1``.
    """
    if target not in _TARGETS:
        raise ValueError(f"target must be one of {_TARGETS}, got {target!r}.")
    check_positive_int(samples, "samples")
    rows = default_chunk_rows(method.device) if chunk_size is None else chunk_size
    check_positive_int(rows, "chunk_size")
    block = max(1, rows // samples)
    seed = int(torch.randint(2**62, (), generator=generator, dtype=torch.int64))
    device = method.device

    def forward(inputs: Tensor) -> Tensor:
        out = []
        for xb in inputs.split(block):
            gen = torch.Generator(device).manual_seed(seed)
            pred = method.predict_differentiable(xb, samples, chunk_size=rows, generator=gen)
            out.append(uncertainty(pred, target))
        return torch.cat(out)

    return forward


def attribute(
    method: BaseMethod,
    x: Tensor,
    target: Target = "epistemic",
    how: How = "integrated_gradients",
    samples: int = 50,
    *,
    baseline: Tensor | float | None = None,
    generator: torch.Generator | None = None,
    steps: int = 50,
    window: tuple[int, ...] | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    """How much each input feature contributes to the model's uncertainty about ``x``.

    The explained function is ``u(x)``, the ``target`` uncertainty of the model average over
    ``samples`` posterior draws, the same draws at every evaluation (common random
    numbers), so attributions are not blurred by Monte Carlo noise. With
    ``how="integrated_gradients"`` the attributions of an input sum to
    ``u(x) - u(baseline)`` up to the path's quadrature error (completeness); positive
    values are features that raise the uncertainty. Works for every method, through
    ``BaseMethod.predict_differentiable``; memory is bounded by processing at most
    ``chunk_size // samples`` path points per call.

    Args:
        method: A fitted method (any registered approximation).
        x: Inputs, shape (N, ...) as the model takes them (floating point).
        target: ``"epistemic"``, ``"aleatoric"`` or ``"total"`` (see the module docstring).
        how: ``"integrated_gradients"``, ``"gradient"`` (the signed gradient ``du/dx``,
            Captum's ``Saliency`` without the absolute value) or ``"occlusion"``
            (``u(x) - u(x with a window set to the baseline)``, per window position).
        samples: Posterior draws S of the model average.
        baseline: Reference input for integrated gradients and occlusion: a tensor of the
            shape of ``x`` (or of one input), or a number; ``None``: zeros.
        generator: Random generator that picks the S draws (reproducible attributions).
        steps: Points of the integrated-gradients path (Gauss-Legendre quadrature).
        window: Occlusion window shape over one input's dimensions; ``None``: one feature.
        chunk_size: Most (sample, input) pairs per vectorised call; default
            ``runtime.default_chunk_rows``.

    Returns:
        Attributions, the same shape as ``x``.

    Raises:
        ValueError: For an unknown ``target`` or ``how``, ``x`` or ``baseline`` of the wrong
            shape, ``samples`` or ``steps < 1``.
        TypeError: If ``method`` is not a bayesdl method or ``x`` not a floating tensor.
        ImportError: Without Captum (``pip install 'bayesdl[explain]'``).
    """
    if not isinstance(method, BaseMethod):
        raise TypeError(f"method must be a bayesdl method, got {type(method).__name__}.")
    if how not in _HOWS:
        raise ValueError(f"how must be one of {_HOWS}, got {how!r}.")
    check_positive_int(steps, "steps")
    x = check_model_input(method.model, x)
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating tensor to attribute to it, got {x.dtype}.")
    x = method.to_model(x)
    base = _baseline(baseline, x)
    forward = uncertainty_function(
        method, target, samples, generator=generator, chunk_size=chunk_size
    )
    per_call = max(1, (default_chunk_rows(method.device) if chunk_size is None else chunk_size)
                   // samples)  # fmt: skip
    attr = _captum()
    if how == "integrated_gradients":
        ig = attr.IntegratedGradients(forward)
        out = ig.attribute(x, baselines=base, n_steps=steps, internal_batch_size=per_call)
    elif how == "gradient":
        out = torch.cat([attr.Saliency(forward).attribute(xb.clone().requires_grad_(), abs=False)
                         for xb in x.split(per_call)])  # fmt: skip
    else:
        shape = (1,) * (x.dim() - 1) if window is None else tuple(window)
        if len(shape) != x.dim() - 1 or any(not isinstance(w, int) or w < 1 for w in shape):
            raise ValueError(
                f"window must be {x.dim() - 1} positive integers (one input's dimensions "
                f"{tuple(x.shape[1:])}), got {window!r}."
            )
        occ = attr.Occlusion(forward)
        out = occ.attribute(x, sliding_window_shapes=shape, baselines=base,
                            perturbations_per_eval=max(1, per_call // x.shape[0]))  # fmt: skip
    return out.detach()


def _baseline(baseline: Tensor | float | None, x: Tensor) -> Tensor:
    if baseline is None:
        return torch.zeros_like(x)
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        return torch.full_like(x, float(baseline))
    if not isinstance(baseline, Tensor):
        raise TypeError(f"baseline must be a tensor or a number, got {type(baseline).__name__}.")
    if baseline.shape == x.shape[1:]:
        baseline = baseline.unsqueeze(0)
    if baseline.shape[1:] != x.shape[1:] or baseline.shape[0] not in (1, x.shape[0]):
        raise ValueError(
            f"baseline must have the shape of x {tuple(x.shape)} or of one input "
            f"{tuple(x.shape[1:])}, got {tuple(baseline.shape)}."
        )
    return baseline.to(x.device, x.dtype).expand_as(x).contiguous()


# -- what the model uses -----------------------------------------------------------------------
def _weight_posterior(method: BaseMethod, who: str) -> dict[str, tuple[Tensor, Tensor]]:
    if not isinstance(method, BaseMethod):
        raise TypeError(f"method must be a bayesdl method, got {type(method).__name__}.")
    post = method.weight_posterior()
    if post is None:
        raise ValueError(
            f"{who} needs a Gaussian weight posterior; {type(method).__name__} has none "
            "(use MeanFieldVI, Laplace or SWAG)."
        )
    return {n: ms for n, ms in post.items() if ms[0].dim() >= 2}  # weights, not biases


def _snr(mean: Tensor, sd: Tensor) -> Tensor:
    """``|mean| / sd``; ``inf`` for a weight of zero width (and 0 for one fixed at zero)."""
    return torch.where(sd > 0, mean.abs() / sd.clamp_min(torch.finfo(sd.dtype).tiny),
                       torch.where(mean == 0, 0.0, torch.inf))  # fmt: skip


def sparsity(method: BaseMethod) -> list[dict[str, Any]]:
    """One per-layer table of what the method knows about which weights it needs.

    Gathers, where the method has them: the signal-to-noise ratio ``|mean| / sd`` of a
    Gaussian weight posterior (``BaseMethod.weight_posterior``: MeanFieldVI, Laplace,
    SWAG), the probability that each L0 gate is open (``L0.prob_nonzero``), and the
    posterior scales of a prior with latent scales (``Prior.unit_scales``: the horseshoe's
    per-unit or per-weight scales; small ones are units the data switched off). Weights
    only (parameters with two or more dimensions); biases are not pruned.

    Args:
        method: A fitted method.

    Returns:
        One dict per weight tensor: ``name``, ``weights`` (count), ``zero`` (weights fixed
        at zero), ``snr_median``, ``snr_below_1`` (fraction with SNR < 1; both ``None``
        without a weight posterior), ``gates_open`` (mean probability that the layer's
        gates are open; ``None`` without gates), ``scale_median`` (median posterior scale
        of the tensor's groups under a prior with latent scales; ``None`` without one).

    Raises:
        TypeError: If ``method`` is not a bayesdl method.
    """
    if not isinstance(method, BaseMethod):
        raise TypeError(f"method must be a bayesdl method, got {type(method).__name__}.")
    post = method.weight_posterior() or {}
    gates_of = getattr(method, "prob_nonzero", None)
    gates = {k: float(v.detach().mean()) for k, v in gates_of().items()} if callable(gates_of) else {}
    try:
        scales = method.prior.unit_scales()
    except ValueError:  # a prior without latent scales
        scales = {}
    rows = []
    for name, p in method.model.named_parameters():
        if p.dim() < 2:
            continue
        layer = name.rsplit(".", 1)[0] if "." in name else ""
        scale = scales.get(name)
        row: dict[str, Any] = {"name": name, "weights": p.numel(), "zero": None,
                               "snr_median": None, "snr_below_1": None,
                               "gates_open": gates.get(layer),
                               "scale_median": None if scale is None
                               else float(scale.flatten().median())}  # fmt: skip
        if name in post:
            mean, sd = post[name]
            snr = _snr(mean, sd).flatten()
            row.update(zero=int(((mean == 0) & (sd == 0)).sum()),
                       snr_median=float(snr.median()),
                       snr_below_1=float((snr < 1).double().mean()))  # fmt: skip
        if name in post or row["gates_open"] is not None or scale is not None:
            rows.append(row)
    return rows


@dataclass
class Pruning:
    """What ``prune`` removed.

    Attributes:
        by: ``"snr"`` or ``"magnitude"``.
        fraction: Fraction of all the posterior's weights asked to be removed.
        removed: Weight tensor name -> number of weights fixed at zero.
        total: Weight tensor name -> number of weights.
    """

    by: str
    fraction: float
    removed: dict[str, int] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)

    def table(self) -> list[dict[str, Any]]:
        """One row per weight tensor: ``name``, ``removed``, ``total``, ``fraction``."""
        return [{"name": n, "removed": self.removed[n], "total": self.total[n],
                 "fraction": self.removed[n] / self.total[n]} for n in self.total]  # fmt: skip


def prune(
    method: BaseMethod, fraction: float, by: Literal["snr", "magnitude"] = "snr"
) -> tuple[BaseMethod, Pruning]:
    """Remove the weights the posterior is least sure are needed (Blundell et al., 2015).

    Scores every weight of the Gaussian weight posterior (``BaseMethod.weight_posterior``)
    by its signal-to-noise ratio ``|mean| / sd`` (``by="snr"``) or by ``|mean|``
    (``by="magnitude"``), and fixes the lowest-scoring ``fraction`` of them, over all layers
    together, at exactly zero in every posterior draw (``fix_weights_at_zero``). Biases and
    other one-dimensional parameters are kept. The input method is not changed.

    Args:
        method: A fitted ``MeanFieldVI``, ``Laplace(hessian="diag")`` or ``SWAG``.
        fraction: Fraction of the weights to remove, in [0, 1).
        by: ``"snr"`` or ``"magnitude"``.

    Returns:
        ``(pruned, report)``: a copy of the method of the same kind (saved and loaded with
        ``bayesdl.save`` / ``load`` like any other) and a ``Pruning`` with what was removed
        per layer.

    Raises:
        ValueError: If ``fraction`` is not in [0, 1), ``by`` is unknown, or the method has
            no Gaussian weight posterior.
        TypeError: If the method cannot fix single weights at zero (Laplace with a KFAC or
            full Hessian).

    Examples:
        >>> import torch, bayesdl as bdl
        >>> vi = bdl.MeanFieldVI(torch.nn.Sequential(torch.nn.Linear(4, 3)))
        >>> pruned, report = bdl.prune(vi, 0.5)
        >>> report.removed
        {'0.weight': 6}
    """
    if (
        isinstance(fraction, bool)
        or not isinstance(fraction, (int, float))
        or not (0 <= fraction < 1)
    ):
        raise ValueError(f"fraction must be a number in [0, 1), got {fraction!r}.")
    if by not in ("snr", "magnitude"):
        raise ValueError(f"by must be 'snr' or 'magnitude', got {by!r}.")
    post = _weight_posterior(method, f"prune(by={by!r})")
    scores = {n: (_snr(m, s) if by == "snr" else m.abs()) for n, (m, s) in post.items()}
    flat = torch.cat([s.flatten().double().cpu() for s in scores.values()])
    k = int(round(fraction * flat.numel()))
    drop = torch.zeros(flat.numel(), dtype=torch.bool)
    drop[torch.argsort(flat, stable=True)[:k]] = True
    report = Pruning(by, float(fraction))
    keep, start = {}, 0
    for name, s in scores.items():
        d = drop[start : start + s.numel()].view(s.shape)
        start += s.numel()
        keep[name] = ~d
        report.removed[name], report.total[name] = int(d.sum()), s.numel()
    pruned = copy.deepcopy(method)
    pruned.fix_weights_at_zero(keep)
    return pruned, report
