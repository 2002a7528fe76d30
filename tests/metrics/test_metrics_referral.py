"""Tests for bayesdl.metrics.referral."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch.testing import assert_close

from bayesdl.metrics import ReferralCurve, accuracy, accuracy_at_referral, aurc, referral_curve

# Five examples, two classes; predictions 0, 0, 1, 0, 1.
#   example  probs        y  correct  score  referral rank
#   0        [0.9, 0.1]   0  yes      0.1    5
#   1        [0.6, 0.4]   1  no       0.9    1
#   2        [0.2, 0.8]   1  yes      0.2    4
#   3        [0.7, 0.3]   1  no       0.3    3
#   4        [0.4, 0.6]   1  yes      0.5    2
PROBS = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6]])
Y = torch.tensor([0, 1, 1, 1, 1])
SCORE = torch.tensor([0.1, 0.9, 0.2, 0.3, 0.5])


def test_referral_curve_hand_computed():
    # Referral order by score: 1 (0.9, wrong), 4 (0.5, right), 3 (0.3, wrong), 2, 0.
    #   f = 0.0 -> refer 0: kept 3 right of 5         -> 0.6
    #   f = 0.2 -> refer 1 (ex 1): 3 right of 4       -> 0.75
    #   f = 0.4 -> refer 2 (ex 1, 4): 2 right of 3    -> 2/3
    #   f = 0.5 -> refer floor(2.5) = 2               -> 2/3
    #   f = 0.6 -> refer 3 (ex 1, 4, 3): 2 right of 2 -> 1.0
    curve = referral_curve(PROBS, Y, SCORE, fractions=[0.0, 0.2, 0.4, 0.5, 0.6])
    assert isinstance(curve, ReferralCurve)
    assert curve.n_total == 5
    assert curve.n_referred.tolist() == [0, 1, 2, 2, 3]
    assert_close(
        curve.accuracy_retained,
        torch.tensor([0.6, 0.75, 2 / 3, 2 / 3, 1.0], dtype=torch.float64),
    )
    assert_close(
        curve.fraction_referred, torch.tensor([0.0, 0.2, 0.4, 0.5, 0.6], dtype=torch.float64)
    )


def test_accuracy_at_referral_hand_computed():
    assert accuracy_at_referral(PROBS, Y, SCORE, 0.0) == accuracy(PROBS, Y)
    assert_close(accuracy_at_referral(PROBS, Y, SCORE, 0.2), 0.75)
    assert accuracy_at_referral(PROBS, Y, SCORE, 0.6) == 1.0


def test_default_fractions():
    curve = referral_curve(PROBS, Y, SCORE)
    assert_close(curve.fraction_referred, torch.arange(20, dtype=torch.float64) / 20)
    assert curve.accuracy_retained[0].item() == pytest.approx(0.6)


def test_floor_is_robust_to_rounding():
    # 0.29 * 100 = 28.999999999999996 in floating point; 29 examples must be referred.
    probs = torch.full((100, 2), 0.5)
    y = torch.zeros(100, dtype=torch.int64)
    curve = referral_curve(probs, y, torch.arange(100.0), fractions=[0.29, 0.57])
    assert curve.n_referred.tolist() == [29, 57]


def test_ties_are_referred_in_index_order():
    probs = torch.tensor([[0.6, 0.4], [0.6, 0.4]])
    y = torch.tensor([1, 0])  # example 0 wrong, example 1 right
    # Equal scores: example 0 goes first, so the kept example is the correct one.
    assert accuracy_at_referral(probs, y, torch.zeros(2), 0.5) == 1.0


def test_aurc_hand_computed():
    # Keep least uncertain first: 0 (right), 2 (right), 3 (wrong), 4 (right), 1 (wrong).
    # Risks at k = 1..5: 0, 0, 1/3, 1/4, 2/5; AURC = (1/3 + 1/4 + 2/5) / 5.
    assert_close(aurc(PROBS, Y, SCORE), (1 / 3 + 1 / 4 + 2 / 5) / 5)


def test_aurc_perfect_score_matches_closed_form():
    # With all n_err errors referred first, risk_k = max(0, k - n_ok) / k; with e = error
    # rate the sum tends to e + (1 - e) log(1 - e) as N grows.
    n, n_err = 1000, 200
    probs = torch.tensor([[0.8, 0.2]]).expand(n, 2)
    y = torch.zeros(n, dtype=torch.int64)
    y[:n_err] = 1
    score = (y == 1).double()
    exact = sum(max(0, k - (n - n_err)) / k for k in range(1, n + 1)) / n
    assert_close(aurc(probs, y, score), exact)
    e = n_err / n
    assert abs(exact - (e + (1 - e) * math.log(1 - e))) < 1e-3


def _cases():
    return st.integers(1, 40).flatmap(
        lambda n: st.integers(2, 5).flatmap(
            lambda c: st.tuples(
                hnp.arrays(np.float64, (n, c), elements=st.floats(-10, 10)),
                hnp.arrays(np.int64, (n,), elements=st.integers(0, c - 1)),
            )
        )
    )


@settings(max_examples=60, deadline=None)
@given(case=_cases())
def test_perfect_score_curve_is_monotone_and_reaches_one(case):
    logits, labels = case
    probs, y = torch.from_numpy(logits).softmax(dim=1), torch.from_numpy(labels)
    n = y.shape[0]
    correct = probs.argmax(dim=1) == y
    score = (~correct).double()  # 1 for wrong predictions, 0 for right ones
    curve = referral_curve(probs, y, score, fractions=torch.arange(n) / n)
    acc = curve.accuracy_retained
    assert (acc[1:] >= acc[:-1] - 1e-12).all()
    n_wrong = int((~correct).sum())
    reached = curve.n_referred >= n_wrong
    if n_wrong < n:  # with every prediction wrong nothing correct is left to keep
        assert (acc[reached] == 1.0).all()
    assert acc[0].item() == pytest.approx(accuracy(probs, y))
    assert 0.0 <= aurc(probs, y, score) <= aurc(probs, y, -score) + 1e-12


@settings(max_examples=60, deadline=None)
@given(case=_cases(), data=st.data())
def test_matches_brute_force(case, data):
    logits, labels = case
    probs, y = torch.from_numpy(logits).softmax(dim=1), torch.from_numpy(labels)
    n = y.shape[0]
    score = torch.from_numpy(
        data.draw(hnp.arrays(np.float64, (n,), elements=st.sampled_from([0.0, 0.5, 1.0, 2.0])))
    )
    fraction = data.draw(st.floats(0.0, 0.999))
    correct = (probs.argmax(dim=1) == y).tolist()
    # Brute force: stable sort by descending score, drop the first floor(f * n).
    order = sorted(range(n), key=lambda i: -score[i].item())
    kept = order[math.floor(fraction * n + 1e-9) :]
    expected = sum(correct[i] for i in kept) / len(kept)
    assert_close(accuracy_at_referral(probs, y, score, fraction), expected)
    risks = [1 - sum(correct[i] for i in order[n - k :]) / k for k in range(1, n + 1)]
    assert_close(aurc(probs, y, score), sum(risks) / n)


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"score must have shape \(N,\) = \(5,\).*\(4,\)"):
        referral_curve(PROBS, Y, SCORE[:4])
    nan_score = SCORE.clone()
    nan_score[2] = float("nan")
    with pytest.raises(ValueError, match=r"score contains 1 NaN value\(s\).*\[2\]"):
        aurc(PROBS, Y, nan_score)
    with pytest.raises(ValueError, match=r"fractions must lie in \[0, 1\)"):
        referral_curve(PROBS, Y, SCORE, fractions=[0.0, 1.0])
    with pytest.raises(ValueError, match="fractions must be a non-empty 1-D"):
        referral_curve(PROBS, Y, SCORE, fractions=[])
    with pytest.raises(ValueError, match=r"fraction must lie in \[0, 1\)"):
        accuracy_at_referral(PROBS, Y, SCORE, 1.0)
    with pytest.raises(ValueError, match=r"y must hold class indices in \[0, 2\)"):
        referral_curve(PROBS, torch.tensor([0, 1, 2, 0, 0]), SCORE)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_inputs():
    assert_close(accuracy_at_referral(PROBS.cuda(), Y.cuda(), SCORE, 0.2), 0.75)
    assert_close(aurc(PROBS.cuda(), Y, SCORE.cuda()), (1 / 3 + 1 / 4 + 2 / 5) / 5)
