"""Bad inputs to the classification metrics raise clear errors naming the argument."""

from __future__ import annotations

import pytest
import torch

from bayesdl.metrics import (
    accuracy,
    accuracy_at_referral,
    adaptive_ece,
    aurc,
    brier,
    ece,
    mce,
    nll,
    referral_curve,
    reliability,
)

PROBS = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.5, 0.25, 0.25]])
Y = torch.tensor([0, 1, 2, 1])
SCORE = torch.tensor([0.3, 0.2, 0.9, 0.6])

# Validation of probs and y happens before score, so SCORE (N = 4) can stay fixed.
CLASSIFICATION = [
    accuracy,
    nll,
    brier,
    ece,
    mce,
    adaptive_ece,
    reliability,
    lambda p, y: referral_curve(p, y, SCORE),
    lambda p, y: accuracy_at_referral(p, y, SCORE, 0.25),
    lambda p, y: aurc(p, y, SCORE),
]
IDS = [
    "accuracy",
    "nll",
    "brier",
    "ece",
    "mce",
    "adaptive_ece",
    "reliability",
    "referral_curve",
    "accuracy_at_referral",
    "aurc",
]
parametrize = pytest.mark.parametrize("fn", CLASSIFICATION, ids=IDS)


@parametrize
def test_valid_inputs_pass(fn):
    fn(PROBS, Y)


@parametrize
def test_nan_probs(fn):
    probs = PROBS.clone()
    probs[2, 1] = float("nan")
    with pytest.raises(ValueError, match=r"probs contains 1 NaN value\(s\) in 1 row\(s\).*\[2\]"):
        fn(probs, Y)


@parametrize
def test_label_shape_mismatch(fn):
    with pytest.raises(ValueError, match=r"y must have shape \(N,\) = \(4,\).*got shape \(3,\)"):
        fn(PROBS, Y[:3])
    with pytest.raises(ValueError, match=r"got shape \(4, 1\)"):
        fn(PROBS, Y[:, None])


@parametrize
def test_probs_wrong_rank(fn):
    with pytest.raises(ValueError, match=r"probs must have shape \(N, C\), got shape \(4,\)"):
        fn(PROBS[:, 0], Y)


@parametrize
def test_label_out_of_range(fn):
    for bad in (3, -1):
        y = Y.clone()
        y[1] = bad
        with pytest.raises(
            ValueError, match=rf"y must hold class indices in \[0, 3\).*\[1\].*{bad}"
        ):
            fn(PROBS, y)


@parametrize
def test_probs_not_summing_to_one(fn):
    probs = PROBS.clone()
    probs[3] = torch.tensor([0.5, 0.3, 0.3])
    with pytest.raises(ValueError, match=r"each row of probs must sum to 1.*\[3\]"):
        fn(probs, Y)


@parametrize
def test_logits_are_rejected(fn):
    with pytest.raises(ValueError, match=r"probs must lie in \[0, 1\].*softmax"):
        fn(PROBS.log(), Y)


@parametrize
def test_empty(fn):
    with pytest.raises(ValueError, match=r"probs is empty.*\(0, 3\)"):
        fn(torch.zeros(0, 3), torch.zeros(0, dtype=torch.int64))


@parametrize
def test_wrong_types(fn):
    with pytest.raises(TypeError, match="y must be an integer tensor.*float32"):
        fn(PROBS, Y.float())
    with pytest.raises(TypeError, match="probs must be a torch.Tensor, got list"):
        fn(PROBS.tolist(), Y)
    with pytest.raises(TypeError, match="probs must be a floating-point tensor"):
        fn(torch.tensor([[1, 0], [0, 1]]), torch.tensor([0, 1]))


def test_small_sum_error_is_accepted():
    # Rows may be off by up to 1e-3 (e.g. float16 model averaging).
    probs = PROBS.clone()
    probs[0, 0] += 5e-4
    assert accuracy(probs, Y) == 0.75  # predictions 0, 1, 2, 0; the last one is wrong
    probs[0, 0] += 1e-3  # now off by 1.5e-3
    with pytest.raises(ValueError, match="each row of probs must sum to 1"):
        accuracy(probs, Y)


@pytest.mark.parametrize("n_bins", [0, -3, 2.5, True, "15"])
@pytest.mark.parametrize("fn", [ece, mce, adaptive_ece, reliability])
def test_bad_n_bins(fn, n_bins):
    with pytest.raises(ValueError, match="n_bins must be a positive integer"):
        fn(PROBS, Y, n_bins=n_bins)


def test_bad_strategy():
    with pytest.raises(ValueError, match="strategy must be 'uniform' or 'quantile'"):
        reliability(PROBS, Y, strategy="equal")  # type: ignore[arg-type]


@pytest.mark.parametrize("eps", [-1e-3, 1.0, float("nan"), "small"])
def test_bad_eps(eps):
    with pytest.raises(ValueError, match=r"eps must be a number in \[0, 1\)"):
        nll(PROBS, Y, eps=eps)


def test_half_precision_is_accepted():
    assert accuracy(PROBS.half(), Y) == accuracy(PROBS, Y)
    assert abs(ece(PROBS.half(), Y) - ece(PROBS, Y)) < 1e-3
