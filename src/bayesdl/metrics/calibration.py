"""Classification metrics: accuracy, NLL, Brier score and calibration error.

All functions take model-averaged class probabilities ``probs`` of shape (N, C) and
integer labels ``y`` of shape (N,), on any device, and return Python floats (or, for
:func:`reliability`, a small :class:`ReliabilityBins` summary on the CPU). Calibration
is measured on the *confidence*, the largest class probability of each example.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from bayesdl.metrics._validate import check_labels, check_n_bins, check_probs

__all__ = [
    "ReliabilityBins",
    "accuracy",
    "adaptive_ece",
    "brier",
    "ece",
    "mce",
    "nll",
    "reliability",
]

BinStrategy = Literal["uniform", "quantile"]
"""How :func:`reliability` bins the confidences.

- ``"uniform"``: equal-width bins ``(lo, hi]`` on [0, 1], the first one also holding 0.
- ``"quantile"``: equal-mass bins, each holding N // n_bins or N // n_bins + 1 examples.
"""


def _validate(probs: object, y: object) -> tuple[Tensor, Tensor]:
    p = check_probs(probs)
    labels = check_labels(y, p.shape[0], p.shape[1], p.device)
    return p, labels


def accuracy(probs: Tensor, y: Tensor) -> float:
    """Fraction of examples whose most probable class is the true one.

    Ties between classes go to the lowest class index (``torch.argmax``).

    Args:
        probs: Class probabilities, shape (N, C); rows sum to 1.
        y: True class indices, integer tensor of shape (N,) with values in [0, C).

    Returns:
        Accuracy in [0, 1].

    Raises:
        TypeError: If ``probs`` is not a float tensor or ``y`` not an integer tensor.
        ValueError: If the inputs are empty, have the wrong shapes, contain NaN, ``probs``
            rows do not sum to 1, or a label is out of range.

    Examples:
        >>> import torch
        >>> probs = torch.tensor([[0.9, 0.1], [0.4, 0.6], [0.7, 0.3]])
        >>> accuracy(probs, torch.tensor([0, 0, 0]))
        0.6666666666666666
    """
    p, labels = _validate(probs, y)
    return (p.argmax(dim=1) == labels).double().mean().item()


def nll(probs: Tensor, y: Tensor, eps: float = 1e-12) -> float:
    r"""Mean negative log probability of the true class, in nats.

    .. math:: \mathrm{NLL} = -\frac{1}{N}\sum_i \log \max(p_{i, y_i}, \epsilon)

    Args:
        probs: Class probabilities, shape (N, C); rows sum to 1.
        y: True class indices, integer tensor of shape (N,) with values in [0, C).
        eps: Floor on the true-class probability, so a confident mistake costs
            ``-log(eps)`` instead of infinity. Must be in [0, 1); 0 disables the floor.

    Returns:
        Mean negative log-likelihood (>= 0; infinite only when ``eps`` is 0 and a true
        class has probability 0).

    Raises:
        TypeError: If ``probs`` is not a float tensor or ``y`` not an integer tensor.
        ValueError: If the inputs are invalid (see :func:`accuracy`) or ``eps`` is not
            in [0, 1).

    Examples:
        >>> import torch
        >>> probs = torch.tensor([[0.5, 0.5], [0.25, 0.75]])
        >>> round(nll(probs, torch.tensor([0, 1])), 6)  # (log 2 + log 4/3) / 2
        0.490415
    """
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 <= eps < 1:
        raise ValueError(f"eps must be a number in [0, 1), got {eps!r}.")
    p, labels = _validate(probs, y)
    p_true = p.gather(1, labels[:, None]).squeeze(1)
    return (-p_true.clamp_min(eps).log()).mean().item()


def brier(probs: Tensor, y: Tensor) -> float:
    r"""Multi-class Brier score (Brier, 1950).

    .. math:: \mathrm{BS} = \frac{1}{N}\sum_i \sum_c (p_{ic} - [y_i = c])^2

    Args:
        probs: Class probabilities, shape (N, C); rows sum to 1.
        y: True class indices, integer tensor of shape (N,) with values in [0, C).

    Returns:
        Brier score in [0, 2]; 0 for confident correct predictions.

    Raises:
        TypeError: If ``probs`` is not a float tensor or ``y`` not an integer tensor.
        ValueError: If the inputs are invalid (see :func:`accuracy`).

    Examples:
        >>> import torch
        >>> brier(torch.tensor([[1.0, 0.0], [0.5, 0.5]]), torch.tensor([0, 1]))
        0.25
    """
    p, labels = _validate(probs, y)
    onehot = torch.nn.functional.one_hot(labels, p.shape[1]).to(p.dtype)
    return ((p - onehot) ** 2).sum(dim=1).mean().item()


@dataclass(frozen=True, eq=False)
class ReliabilityBins:
    """Per-bin confidence and accuracy, the data of a reliability diagram.

    All tensors have shape (n_bins,) and live on the CPU. Empty bins have ``count`` 0
    and NaN ``confidence`` and ``accuracy`` (quantile bins also NaN bounds), so plots
    skip them and :attr:`ece` / :attr:`mce` ignore them.

    Attributes:
        bin_lower: Lower bin edge (float64). Uniform bins are ``(lower, upper]``, the
            first one also holding 0; quantile bins report the smallest confidence in
            the bin.
        bin_upper: Upper bin edge (float64); for quantile bins, the largest confidence.
        confidence: Mean confidence (max class probability) in each bin (float64).
        accuracy: Fraction of correct predictions in each bin (float64).
        count: Number of examples in each bin (int64).
        strategy: ``"uniform"`` or ``"quantile"``, how the bins were made.
    """

    bin_lower: Tensor
    bin_upper: Tensor
    confidence: Tensor
    accuracy: Tensor
    count: Tensor
    strategy: BinStrategy = "uniform"

    @property
    def n_total(self) -> int:
        """Number of examples over all bins."""
        return int(self.count.sum())

    @property
    def gap(self) -> Tensor:
        """Accuracy minus confidence per bin; negative means overconfident (NaN if empty)."""
        return self.accuracy - self.confidence

    @property
    def ece(self) -> float:
        """Expected calibration error, ``sum_b (n_b / N) |acc_b - conf_b|``."""
        mask = self.count > 0
        weights = self.count[mask].double() / self.n_total
        return (weights * self.gap[mask].abs()).sum().item()

    @property
    def mce(self) -> float:
        """Maximum calibration error, ``max_b |acc_b - conf_b|`` over non-empty bins."""
        mask = self.count > 0
        return self.gap[mask].abs().max().item()


def _uniform_bins(conf: Tensor, n_bins: int, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    # Edges i / n_bins, rounded to the caller's dtype so that a float32 confidence equal to
    # an edge (e.g. 0.2) lands in the bin whose right end it is, as the (lo, hi] rule says.
    edges = (torch.arange(n_bins + 1, dtype=torch.float64) / n_bins).to(dtype).double()
    # bucketize with right=False returns i with edges[i] < x <= edges[i + 1] (using the
    # interior edges only), so 0 goes to the first bin and 1.0 to the last.
    idx = torch.bucketize(conf, edges[1:-1].to(conf.device), right=False)
    return idx, edges[:-1], edges[1:]


def _quantile_bins(conf: Tensor, n_bins: int) -> Tensor:
    # Split the sorted confidences into n_bins consecutive runs whose sizes differ by at
    # most one (the first N % n_bins runs are one longer), as numpy.array_split does.
    n = conf.shape[0]
    q, r = divmod(n, n_bins)
    sizes = torch.full((n_bins,), q, dtype=torch.int64)
    sizes[:r] += 1
    sorted_bin = torch.repeat_interleave(torch.arange(n_bins), sizes).to(conf.device)
    order = torch.argsort(conf, stable=True)
    idx = torch.empty_like(sorted_bin)
    idx[order] = sorted_bin
    return idx


def reliability(
    probs: Tensor, y: Tensor, n_bins: int = 15, strategy: BinStrategy = "uniform"
) -> ReliabilityBins:
    """Bin examples by confidence and compare mean confidence with accuracy per bin.

    The confidence of an example is its largest class probability and its prediction the
    arg-max class (Guo et al., 2017). With ``strategy="uniform"`` the bins are
    ``[0, 1/B], (1/B, 2/B], ..., ((B-1)/B, 1]``; with ``"quantile"`` they hold equal
    numbers of examples (Nixon et al., 2019), ties in confidence broken by index.

    Args:
        probs: Class probabilities, shape (N, C); rows sum to 1.
        y: True class indices, integer tensor of shape (N,) with values in [0, C).
        n_bins: Number of bins B, a positive integer.
        strategy: ``"uniform"`` (equal width) or ``"quantile"`` (equal mass).

    Returns:
        A :class:`ReliabilityBins` with per-bin statistics and ``.ece`` / ``.mce``.

    Raises:
        TypeError: If ``probs`` is not a float tensor or ``y`` not an integer tensor.
        ValueError: If the inputs are invalid (see :func:`accuracy`), ``n_bins`` is not a
            positive integer or ``strategy`` is unknown.

    Examples:
        >>> import torch
        >>> probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
        >>> bins = reliability(probs, torch.tensor([0, 1, 1, 0]), n_bins=2)
        >>> bins.count.tolist(), bins.accuracy.tolist()
        ([0, 4], [nan, 0.5])
        >>> round(bins.ece, 6)  # |0.5 - mean(0.9, 0.6, 0.7, 0.8)|
        0.25

    References:
        Guo, Pleiss, Sun and Weinberger, "On Calibration of Modern Neural Networks",
        ICML 2017. Nixon et al., "Measuring Calibration in Deep Learning", CVPR
        Workshops 2019.
    """
    n_bins = check_n_bins(n_bins)
    if strategy not in ("uniform", "quantile"):
        raise ValueError(f"strategy must be 'uniform' or 'quantile', got {strategy!r}.")
    in_dtype = probs.dtype if isinstance(probs, Tensor) else torch.float64
    p, labels = _validate(probs, y)
    conf, pred = p.max(dim=1)
    correct = (pred == labels).double()

    if strategy == "uniform":
        idx, lower, upper = _uniform_bins(conf, n_bins, in_dtype)
    else:
        idx = _quantile_bins(conf, n_bins)

    count = torch.zeros(n_bins, dtype=torch.int64, device=p.device)
    count.index_add_(0, idx, torch.ones_like(idx))
    sum_conf = torch.zeros(n_bins, dtype=torch.float64, device=p.device).index_add_(0, idx, conf)
    sum_acc = torch.zeros(n_bins, dtype=torch.float64, device=p.device).index_add_(0, idx, correct)
    denom = count.double()
    nan = torch.tensor(float("nan"), dtype=torch.float64, device=p.device)
    mean_conf = torch.where(count > 0, sum_conf / denom.clamp_min(1), nan)
    mean_acc = torch.where(count > 0, sum_acc / denom.clamp_min(1), nan)

    if strategy == "quantile":
        init = torch.full((n_bins,), float("nan"), dtype=torch.float64, device=p.device)
        lower = init.scatter_reduce(0, idx, conf, reduce="amin", include_self=False)
        upper = init.scatter_reduce(0, idx, conf, reduce="amax", include_self=False)

    return ReliabilityBins(
        bin_lower=lower.cpu(),
        bin_upper=upper.cpu(),
        confidence=mean_conf.cpu(),
        accuracy=mean_acc.cpu(),
        count=count.cpu(),
        strategy=strategy,
    )


def ece(probs: Tensor, y: Tensor, n_bins: int = 15) -> float:
    r"""Expected calibration error over equal-width confidence bins (Guo et al., 2017).

    .. math:: \mathrm{ECE} = \sum_b \frac{n_b}{N}\,|\mathrm{acc}_b - \mathrm{conf}_b|

    Bins are ``[0, 1/B], (1/B, 2/B], ..., ((B-1)/B, 1]``; see :func:`reliability`.

    Args:
        probs: Class probabilities, shape (N, C); rows sum to 1.
        y: True class indices, integer tensor of shape (N,) with values in [0, C).
        n_bins: Number of equal-width bins B, a positive integer.

    Returns:
        ECE in [0, 1]; 0 for a perfectly calibrated model.

    Raises:
        TypeError: If ``probs`` is not a float tensor or ``y`` not an integer tensor.
        ValueError: If the inputs are invalid (see :func:`accuracy`) or ``n_bins`` is not
            a positive integer.

    Examples:
        >>> import torch
        >>> probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
        >>> round(ece(probs, torch.tensor([0, 1, 1, 0]), n_bins=2), 6)
        0.25
    """
    return reliability(probs, y, n_bins=n_bins, strategy="uniform").ece


def mce(probs: Tensor, y: Tensor, n_bins: int = 15) -> float:
    """Maximum calibration error: the largest ``|acc_b - conf_b|`` over non-empty bins.

    Uses the same equal-width bins as :func:`ece`.

    Args:
        probs: Class probabilities, shape (N, C); rows sum to 1.
        y: True class indices, integer tensor of shape (N,) with values in [0, C).
        n_bins: Number of equal-width bins, a positive integer.

    Returns:
        MCE in [0, 1].

    Raises:
        TypeError: If ``probs`` is not a float tensor or ``y`` not an integer tensor.
        ValueError: If the inputs are invalid (see :func:`accuracy`) or ``n_bins`` is not
            a positive integer.
    """
    return reliability(probs, y, n_bins=n_bins, strategy="uniform").mce


def adaptive_ece(probs: Tensor, y: Tensor, n_bins: int = 15) -> float:
    """Expected calibration error over equal-mass bins (Nixon et al., 2019).

    Examples are sorted by confidence and split into ``n_bins`` runs whose sizes differ
    by at most one; then ECE is computed as in :func:`ece`.

    Args:
        probs: Class probabilities, shape (N, C); rows sum to 1.
        y: True class indices, integer tensor of shape (N,) with values in [0, C).
        n_bins: Number of equal-mass bins, a positive integer.

    Returns:
        Adaptive ECE in [0, 1].

    Raises:
        TypeError: If ``probs`` is not a float tensor or ``y`` not an integer tensor.
        ValueError: If the inputs are invalid (see :func:`accuracy`) or ``n_bins`` is not
            a positive integer.
    """
    return reliability(probs, y, n_bins=n_bins, strategy="quantile").ece
