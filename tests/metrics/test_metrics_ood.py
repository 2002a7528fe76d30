"""Tests for bayesdl.metrics.ood (see the seed note in test_metrics_calibration.py)."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch.testing import assert_close

from bayesdl.metrics import fpr_at_tpr, ood_aupr, ood_auroc

S_IN = torch.tensor([0.1, 0.4])
S_OUT = torch.tensor([0.3, 0.5])


def test_auroc_hand_computed():
    # (out, in) pairs: (0.3, 0.1) yes, (0.3, 0.4) no, (0.5, 0.1) yes, (0.5, 0.4) yes -> 3/4.
    assert ood_auroc(S_IN, S_OUT) == 0.75


def test_auroc_ties_count_half():
    # Pairs: (1, 1) tie -> 1/2, (1, 0) -> 1; total 1.5 / 2.
    assert ood_auroc(torch.tensor([1.0, 0.0]), torch.tensor([1.0])) == 0.75


def test_aupr_hand_computed():
    # Ranked by score: 0.5 out, 0.4 in, 0.3 out, 0.1 in.
    # AP = sum over OOD hits of (recall step) * precision = 0.5 * 1/1 + 0.5 * 2/3 = 5/6.
    assert_close(ood_aupr(S_IN, S_OUT), 5 / 6)


def test_fpr_at_tpr_hand_computed():
    s_in = torch.tensor([0.1, 0.2, 0.3, 0.4])
    s_out = torch.tensor([0.35, 0.5, 0.6, 0.7])
    # TPR 0.95 needs all four OOD scores: threshold 0.35 also flags 0.4 -> FPR 1/4.
    assert fpr_at_tpr(s_in, s_out, tpr=0.95) == 0.25
    # TPR 0.75 is reached at threshold 0.5, which flags no in-distribution example.
    assert fpr_at_tpr(s_in, s_out, tpr=0.75) == 0.0
    assert fpr_at_tpr(s_in, s_out, tpr=1.0) == 0.25


def _brute_force_auroc(s_in: np.ndarray, s_out: np.ndarray) -> float:
    diff = s_out[:, None] - s_in[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def test_auroc_matches_pairwise_definition():
    g = torch.Generator().manual_seed(0)
    s_in = torch.randint(0, 10, (80,), generator=g).double()  # many ties
    s_out = torch.randint(2, 12, (60,), generator=g).double()
    assert_close(ood_auroc(s_in, s_out), _brute_force_auroc(s_in.numpy(), s_out.numpy()))


def test_auroc_of_identical_distributions_is_near_half():
    n_in, n_out = 3000, 2000
    g = torch.Generator().manual_seed(1)
    s_in = torch.randn(n_in, generator=g)
    s_out = torch.randn(n_out, generator=g)
    # Under the null (AUROC = 0.5) the Mann-Whitney statistic has variance
    # (n1 + n2 + 1) / (12 n1 n2) (Hanley & McNeil, 1982); allow 4 standard errors.
    se = math.sqrt((n_in + n_out + 1) / (12 * n_in * n_out))
    assert abs(ood_auroc(s_in, s_out) - 0.5) <= 4 * se
    # AUPR is then near the OOD base rate n_out / (n_in + n_out).
    assert abs(ood_aupr(s_in, s_out) - n_out / (n_in + n_out)) <= 0.05


@settings(max_examples=50, deadline=None)
@given(
    s_in=hnp.arrays(np.float64, st.integers(1, 30), elements=st.floats(-1e3, 1e3)),
    s_out=hnp.arrays(np.float64, st.integers(1, 30), elements=st.floats(0, 1e3)),
)
def test_perfect_separation(s_in, s_out):
    shifted_out = torch.from_numpy(s_out + s_in.max() + 1.0)
    s_in_t = torch.from_numpy(s_in)
    # scikit-learn integrates step by step, so allow rounding (a few ulp) off 1 and 0.
    assert_close(ood_auroc(s_in_t, shifted_out), 1.0)
    assert_close(ood_aupr(s_in_t, shifted_out), 1.0)
    assert fpr_at_tpr(s_in_t, shifted_out) == 0.0
    # Swapping the roles reverses the ranking completely.
    assert_close(ood_auroc(shifted_out, s_in_t), 0.0)


@settings(max_examples=50, deadline=None)
@given(
    s_in=hnp.arrays(np.float64, st.integers(1, 30), elements=st.floats(-10, 10)),
    s_out=hnp.arrays(np.float64, st.integers(1, 30), elements=st.floats(-10, 10)),
    tpr=st.floats(0.01, 1.0),
)
def test_property_ranges(s_in, s_out, tpr):
    a, b = torch.from_numpy(s_in), torch.from_numpy(s_out)
    auroc = ood_auroc(a, b)
    assert 0.0 <= auroc <= 1.0
    assert_close(auroc, _brute_force_auroc(s_in, s_out))
    assert 0.0 <= ood_aupr(a, b) <= 1.0
    assert 0.0 <= fpr_at_tpr(a, b, tpr=tpr) <= 1.0


def test_accepts_integer_and_float32_scores():
    assert ood_auroc(torch.tensor([0, 1]), torch.tensor([2, 3])) == 1.0
    assert ood_auroc(S_IN.float(), S_OUT.double()) == 0.75


@pytest.mark.parametrize("fn", [ood_auroc, ood_aupr, fpr_at_tpr])
def test_nan_is_rejected_with_count_and_indices(fn):
    s_out = torch.tensor([0.1, float("nan"), 0.3, float("nan"), 0.5])
    with pytest.raises(ValueError, match=r"score_out contains 2 NaN value\(s\).*\[1, 3\]"):
        fn(S_IN, s_out)
    with pytest.raises(ValueError, match=r"score_in contains 1 inf"):
        fn(torch.tensor([float("inf")]), S_OUT)


@pytest.mark.parametrize("fn", [ood_auroc, ood_aupr, fpr_at_tpr])
def test_bad_shapes_and_types(fn):
    with pytest.raises(ValueError, match="score_in is empty"):
        fn(torch.tensor([]), S_OUT)
    with pytest.raises(ValueError, match=r"score_out must have shape \(N,\), got shape \(2, 1\)"):
        fn(S_IN, S_OUT[:, None])
    with pytest.raises(TypeError, match="score_in must be a torch.Tensor"):
        fn([0.1, 0.2], S_OUT)


@pytest.mark.parametrize("tpr", [0.0, -0.1, 1.5, float("nan")])
def test_fpr_at_tpr_rejects_bad_tpr(tpr):
    with pytest.raises(ValueError, match=r"tpr must lie in \(0, 1\]"):
        fpr_at_tpr(S_IN, S_OUT, tpr=tpr)


@pytest.mark.parametrize("fn", [ood_auroc, ood_aupr, fpr_at_tpr])
def test_missing_sklearn_names_the_extra(fn, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.metrics", None)
    with pytest.raises(ImportError, match=r"pip install bayesdl\[metrics\]"):
        fn(S_IN, S_OUT)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_inputs():
    assert ood_auroc(S_IN.cuda(), S_OUT) == 0.75


def test_far_field_fraction_counts_points_above_the_in_data_quantile():
    from bayesdl.metrics import far_field_fraction

    s_in = torch.arange(101.0)  # quantile 0.95 by linear interpolation: exactly 95.0
    far = torch.tensor([94.0, 95.0, 95.5, 200.0, -1.0])  # strictly above 95: two of five
    assert far_field_fraction(s_in, far) == 0.4
    assert far_field_fraction(s_in, far, quantile=0.5) == 0.8  # above 50: all but -1
    assert far_field_fraction(torch.zeros(10), torch.zeros(5)) == 0.0  # no epistemic part


def test_far_field_fraction_of_scores_that_ignore_distance_is_one_minus_the_quantile():
    from _policy import Z

    from bayesdl.metrics import far_field_fraction

    g = torch.Generator().manual_seed(0)
    s_in, s_far = torch.rand(20000, generator=g), torch.rand(20000, generator=g)
    # binomial error of the far fraction, and as much again from the estimated quantile
    se = math.sqrt(2 * 0.05 * 0.95 / 20000)
    assert abs(far_field_fraction(s_in, s_far) - 0.05) <= Z * se


@pytest.mark.parametrize("quantile", [0.0, 1.0, 1.5, True])
def test_far_field_fraction_rejects_a_bad_quantile(quantile):
    from bayesdl.metrics import far_field_fraction

    with pytest.raises(ValueError, match="quantile"):
        far_field_fraction(S_IN, S_OUT, quantile=quantile)
