"""Out-of-distribution detection metrics from uncertainty scores.

Each function takes scores of in-distribution examples ``score_in`` (N_in,) and of
out-of-distribution examples ``score_out`` (N_out,), where a higher score means "more
likely OOD" (e.g. predictive entropy or mutual information). OOD is the positive class.
These functions need scikit-learn (``pip install bayesdl[metrics]``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from bayesdl.metrics._validate import check_fraction, check_scores

__all__ = ["far_field_fraction", "fpr_at_tpr", "ood_aupr", "ood_auroc"]


def _sklearn_metrics(caller: str) -> Any:
    try:
        import sklearn.metrics as skm
    except ImportError as err:
        raise ImportError(
            f"{caller} needs scikit-learn; install it with `pip install bayesdl[metrics]`."
        ) from err
    return skm


def _labels_and_scores(score_in: Tensor, score_out: Tensor) -> tuple[np.ndarray, np.ndarray]:
    s_in = check_scores(score_in, "score_in").cpu()
    s_out = check_scores(score_out, "score_out").cpu()
    scores = torch.cat([s_in, s_out]).numpy()
    labels = np.concatenate([np.zeros(s_in.shape[0]), np.ones(s_out.shape[0])]).astype(np.int64)
    return labels, scores


def ood_auroc(score_in: Tensor, score_out: Tensor) -> float:
    """Area under the ROC curve for telling OOD examples from in-distribution ones.

    Equals the probability that a random OOD example scores higher than a random
    in-distribution one, ties counting one half.

    Args:
        score_in: Scores of in-distribution examples, shape (N_in,).
        score_out: Scores of OOD examples, shape (N_out,). Higher means more likely OOD.

    Returns:
        AUROC in [0, 1]; 0.5 is chance, 1 perfect separation.

    Raises:
        ImportError: If scikit-learn is not installed.
        TypeError: If a score is not a real tensor.
        ValueError: If a score tensor is not 1-D, is empty or has NaN/inf.

    Examples:
        >>> import torch
        >>> ood_auroc(torch.tensor([0.1, 0.4]), torch.tensor([0.3, 0.5]))
        0.75
    """
    skm = _sklearn_metrics("ood_auroc")
    labels, scores = _labels_and_scores(score_in, score_out)
    return float(skm.roc_auc_score(labels, scores))


def ood_aupr(score_in: Tensor, score_out: Tensor) -> float:
    """Area under the precision-recall curve with OOD as the positive class.

    Computed as average precision (scikit-learn's ``average_precision_score``), the
    step-wise area without interpolation. Chance level is ``N_out / (N_in + N_out)``.

    Args:
        score_in: Scores of in-distribution examples, shape (N_in,).
        score_out: Scores of OOD examples, shape (N_out,). Higher means more likely OOD.

    Returns:
        AUPR (average precision) in [0, 1].

    Raises:
        ImportError: If scikit-learn is not installed.
        TypeError: If a score is not a real tensor.
        ValueError: If a score tensor is not 1-D, is empty or has NaN/inf.

    Examples:
        >>> import torch
        >>> round(ood_aupr(torch.tensor([0.1, 0.4]), torch.tensor([0.3, 0.5])), 6)
        0.833333
    """
    skm = _sklearn_metrics("ood_aupr")
    labels, scores = _labels_and_scores(score_in, score_out)
    # a sum of precision x recall steps can round a hair above 1 (1.0000000000000002)
    return min(1.0, float(skm.average_precision_score(labels, scores)))


def fpr_at_tpr(score_in: Tensor, score_out: Tensor, tpr: float = 0.95) -> float:
    """False-positive rate at the first threshold that detects a fraction ``tpr`` of OOD.

    Flagging every example with score >= t as OOD, take the largest threshold t whose
    true-positive rate (fraction of OOD examples flagged) is at least ``tpr``, and return
    the fraction of in-distribution examples flagged at t. Commonly reported as FPR95.

    Args:
        score_in: Scores of in-distribution examples, shape (N_in,).
        score_out: Scores of OOD examples, shape (N_out,). Higher means more likely OOD.
        tpr: Required true-positive rate, in (0, 1].

    Returns:
        FPR in [0, 1]; lower is better.

    Raises:
        ImportError: If scikit-learn is not installed.
        TypeError: If a score is not a real tensor.
        ValueError: If a score tensor is not 1-D, is empty or has NaN/inf, or ``tpr`` is
            not in (0, 1].

    Examples:
        >>> import torch
        >>> s_in, s_out = torch.tensor([0.1, 0.2, 0.3, 0.4]), torch.tensor([0.35, 0.5, 0.6, 0.7])
        >>> fpr_at_tpr(s_in, s_out, tpr=0.95)  # all OOD caught at t=0.35; 0.4 flagged too
        0.25
    """
    tpr = check_fraction(tpr, "tpr", low_closed=False, high_closed=True)
    skm = _sklearn_metrics("fpr_at_tpr")
    labels, scores = _labels_and_scores(score_in, score_out)
    fpr_curve, tpr_curve, _ = skm.roc_curve(labels, scores, drop_intermediate=False)
    # tpr_curve is non-decreasing and ends at 1, so the search always finds an index.
    i = int(np.searchsorted(tpr_curve, tpr, side="left"))
    return float(fpr_curve[i])


def far_field_fraction(score_in: Tensor, score_far: Tensor, quantile: float = 0.95) -> float:
    """Fraction of far-field points whose uncertainty exceeds a high quantile of the in-data one.

    A distance-aware model's epistemic uncertainty grows away from the data in every
    direction, so nearly every far-field point (e.g. a grid beyond the data's range, or
    inputs from another distribution) scores above almost every in-data point. With
    ``t = quantile(score_in, quantile)`` (linear interpolation, as ``torch.quantile``)
    this returns ``mean(score_far > t)``: about ``1 - quantile`` for a score that does not
    depend on the distance to the data, 1 for one that always rises beyond it, and 0 for a
    model without epistemic uncertainty (every score 0, none above ``t = 0``).

    Args:
        score_in: Uncertainty of in-data points, shape (N_in,) (e.g. mutual information).
        score_far: Uncertainty of far-field points, shape (N_far,).
        quantile: Quantile of ``score_in`` taken as the threshold, in (0, 1).

    Returns:
        The fraction in [0, 1]; higher is more distance-aware.

    Raises:
        TypeError: If a score is not a real tensor.
        ValueError: If a score tensor is not 1-D, is empty or has NaN/inf, or ``quantile``
            is not in (0, 1).

    Examples:
        >>> import torch
        >>> s_in = torch.arange(101.0)  # the 95th percentile is 95
        >>> far_field_fraction(s_in, torch.tensor([94.0, 95.0, 96.0, 200.0]))
        0.5
    """
    quantile = check_fraction(quantile, "quantile", low_closed=False, high_closed=False)
    s_in = check_scores(score_in, "score_in").double()
    s_far = check_scores(score_far, "score_far").double()
    threshold = torch.quantile(s_in, quantile)
    return float((s_far > threshold).double().mean())
