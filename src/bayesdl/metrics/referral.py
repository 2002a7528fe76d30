"""Referral (selective prediction) metrics.

A model that knows when it is unsure can refer its most uncertain cases to a human and
keep the rest (Leibig et al., 2017). These functions sort the examples by an uncertainty
``score`` (higher = refer first), refer a fraction of them and measure the accuracy on
the cases kept. Ties in ``score`` are broken by index: among equal scores, the example
with the lower index is referred first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from bayesdl.metrics._validate import (
    as_fraction_tensor,
    check_fraction,
    check_labels,
    check_probs,
    check_scores,
)

__all__ = ["ReferralCurve", "accuracy_at_referral", "aurc", "referral_curve"]

DEFAULT_FRACTIONS: tuple[float, ...] = tuple(i / 20 for i in range(20))
"""Fractions referred by default: 0, 0.05, ..., 0.95."""


@dataclass(frozen=True, eq=False)
class ReferralCurve:
    """Accuracy on the retained cases as a function of the fraction referred.

    All tensors have shape (F,) and live on the CPU.

    Attributes:
        fraction_referred: Requested fractions of examples referred (float64).
        accuracy_retained: Accuracy on the examples kept (float64).
        n_referred: Number of examples actually referred, ``floor(fraction * N)``
            (int64).
        n_total: Number of examples N.
    """

    fraction_referred: Tensor
    accuracy_retained: Tensor
    n_referred: Tensor
    n_total: int


def _sorted_correct(probs: object, y: object, score: object) -> Tensor:
    """Correctness (float64, 0/1) of each prediction, most uncertain first."""
    p = check_probs(probs)
    labels = check_labels(y, p.shape[0], p.shape[1], p.device)
    s = check_scores(score, "score", n=p.shape[0]).to(p.device)
    correct = (p.argmax(dim=1) == labels).double()
    order = torch.argsort(s, descending=True, stable=True)
    return correct[order]


def referral_curve(
    probs: Tensor,
    y: Tensor,
    score: Tensor,
    *,
    fractions: Sequence[float] | Tensor | None = None,
) -> ReferralCurve:
    """Accuracy on the kept examples after referring the most uncertain ones.

    For each fraction f, the ``floor(f * N)`` examples with the highest ``score`` are
    referred and the accuracy of the arg-max prediction on the other examples is
    reported. With a useful uncertainty score the curve rises with f.

    Args:
        probs: Class probabilities, shape (N, C); rows sum to 1.
        y: True class indices, integer tensor of shape (N,) with values in [0, C).
        score: Uncertainty per example, shape (N,); higher is referred first (e.g.
            predictive entropy, mutual information, or ``1 - max prob``).
        fractions: Fractions to refer, each in [0, 1) so at least one example is kept.
            Defaults to 0, 0.05, ..., 0.95. For every possible count pass
            ``torch.arange(N) / N``.

    Returns:
        A :class:`ReferralCurve`.

    Raises:
        TypeError: If ``probs`` is not a float tensor, ``y`` not an integer tensor or
            ``score`` not a real tensor.
        ValueError: If the inputs are empty, shapes disagree, an input has NaN, ``probs``
            rows do not sum to 1, a label is out of range, or a fraction is outside
            [0, 1).

    Examples:
        >>> import torch
        >>> probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.7, 0.3]])
        >>> y = torch.tensor([0, 1, 1, 0])  # the second prediction is wrong
        >>> curve = referral_curve(probs, y, torch.tensor([0.1, 0.9, 0.2, 0.3]),
        ...                        fractions=[0.0, 0.25, 0.5])
        >>> curve.accuracy_retained.tolist()
        [0.75, 1.0, 1.0]
    """
    f = as_fraction_tensor(DEFAULT_FRACTIONS if fractions is None else fractions, "fractions")
    c_sorted = _sorted_correct(probs, y, score).cpu()
    n = c_sorted.shape[0]
    # cum[k] = number of correct predictions among the k referred examples.
    cum = torch.cat([torch.zeros(1, dtype=torch.float64), c_sorted.cumsum(0)])
    # The tiny offset keeps e.g. 0.29 * 100 = 28.999999999999996 from flooring to 28.
    k = torch.floor(f * n + 1e-9).to(torch.int64).clamp(0, n - 1)
    acc = (cum[-1] - cum[k]) / (n - k).double()
    return ReferralCurve(fraction_referred=f, accuracy_retained=acc, n_referred=k, n_total=n)


def accuracy_at_referral(probs: Tensor, y: Tensor, score: Tensor, fraction: float) -> float:
    """Accuracy on the kept examples after referring a fraction of the most uncertain.

    Args:
        probs: Class probabilities, shape (N, C); rows sum to 1.
        y: True class indices, integer tensor of shape (N,) with values in [0, C).
        score: Uncertainty per example, shape (N,); higher is referred first.
        fraction: Fraction of examples to refer, in [0, 1); ``floor(fraction * N)`` are
            referred.

    Returns:
        Accuracy in [0, 1] on the ``N - floor(fraction * N)`` examples kept.

    Raises:
        TypeError: If an input tensor has the wrong dtype (see :func:`referral_curve`).
        ValueError: If the inputs are invalid (see :func:`referral_curve`) or
            ``fraction`` is not in [0, 1).

    Examples:
        >>> import torch
        >>> probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.7, 0.3]])
        >>> y, score = torch.tensor([0, 1, 1, 0]), torch.tensor([0.1, 0.9, 0.2, 0.3])
        >>> accuracy_at_referral(probs, y, score, 0.25)
        1.0
    """
    fraction = check_fraction(fraction, "fraction", low_closed=True, high_closed=False)
    curve = referral_curve(probs, y, score, fractions=[fraction])
    return curve.accuracy_retained[0].item()


def aurc(probs: Tensor, y: Tensor, score: Tensor) -> float:
    r"""Area under the risk-coverage curve (Geifman et al., 2019).

    Keeping the k least uncertain examples gives coverage k / N and risk (error rate on
    the kept examples) r_k; the area is the average over every coverage,

    .. math:: \mathrm{AURC} = \frac{1}{N}\sum_{k=1}^{N} r_k .

    Lower is better; a perfect score (all errors more uncertain than all correct
    predictions) with error rate e gives about ``e + (1 - e) log(1 - e)``.

    Args:
        probs: Class probabilities, shape (N, C); rows sum to 1.
        y: True class indices, integer tensor of shape (N,) with values in [0, C).
        score: Uncertainty per example, shape (N,); higher is referred first.

    Returns:
        AURC in [0, 1].

    Raises:
        TypeError: If an input tensor has the wrong dtype (see :func:`referral_curve`).
        ValueError: If the inputs are invalid (see :func:`referral_curve`).

    Examples:
        >>> import torch
        >>> probs = torch.tensor([[0.9, 0.1], [0.6, 0.4]])
        >>> aurc(probs, torch.tensor([0, 1]), torch.tensor([0.1, 0.9]))  # risks 0, 1/2
        0.25

    References:
        Geifman, Uziel and El-Yaniv, "Bias-Reduced Uncertainty Estimation for Deep
        Neural Classifiers", ICLR 2019.
    """
    c_sorted = _sorted_correct(probs, y, score)
    # Least uncertain first: the kept set of size k is the first k of this order.
    errors = (1 - c_sorted).flip(0)
    n = errors.shape[0]
    k = torch.arange(1, n + 1, dtype=torch.float64, device=errors.device)
    return (errors.cumsum(0) / k).mean().item()
