"""Metrics on model-averaged predictions: pure functions of tensors.

Classification metrics take probabilities ``probs`` (N, C) and labels ``y`` (N,);
regression metrics take ``mean``, ``variance`` and targets ``y`` of shape (N, D);
OOD metrics take uncertainty scores of in- and out-of-distribution examples. Scalar
metrics return Python floats. OOD metrics need the ``metrics`` extra (scikit-learn).
"""

from bayesdl.metrics.calibration import (
    BinStrategy,
    ReliabilityBins,
    accuracy,
    adaptive_ece,
    brier,
    ece,
    mce,
    nll,
    reliability,
)
from bayesdl.metrics.ood import far_field_fraction, fpr_at_tpr, ood_aupr, ood_auroc
from bayesdl.metrics.referral import ReferralCurve, accuracy_at_referral, aurc, referral_curve
from bayesdl.metrics.regression import gaussian_nll, rmse

__all__ = [
    "BinStrategy",
    "ReferralCurve",
    "ReliabilityBins",
    "accuracy",
    "accuracy_at_referral",
    "adaptive_ece",
    "aurc",
    "brier",
    "ece",
    "far_field_fraction",
    "fpr_at_tpr",
    "gaussian_nll",
    "mce",
    "nll",
    "ood_aupr",
    "ood_auroc",
    "referral_curve",
    "reliability",
    "rmse",
]
