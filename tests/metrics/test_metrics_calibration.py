"""Tests for bayesdl.metrics.calibration: hand-computed cases, references, statistics.

Note on randomized statistical tests: every random test uses a fixed torch.Generator
seed, so it is deterministic. Its tolerance is still derived from the Monte Carlo
standard error (z = 3 or 4), so a different seed would fail with probability well
below 1e-3; the tolerance is never tuned to the seed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch.testing import assert_close

from bayesdl.metrics import (
    ReliabilityBins,
    accuracy,
    adaptive_ece,
    brier,
    ece,
    mce,
    nll,
    reliability,
)

# Four examples, three classes.
#   example  probs               y  pred  conf  correct
#   0        [0.8, 0.1, 0.1]     0  0     0.8   yes
#   1        [0.5, 0.3, 0.2]     1  0     0.5   no
#   2        [0.2, 0.7, 0.1]     1  1     0.7   yes
#   3        [0.4, 0.35, 0.25]   2  0     0.4   no
PROBS = torch.tensor(
    [[0.8, 0.1, 0.1], [0.5, 0.3, 0.2], [0.2, 0.7, 0.1], [0.4, 0.35, 0.25]],
    dtype=torch.float64,
)
Y = torch.tensor([0, 1, 1, 2])


def test_accuracy_hand_computed():
    assert accuracy(PROBS, Y) == 0.5


def test_nll_hand_computed():
    # True-class probabilities 0.8, 0.3, 0.7, 0.25.
    expected = -(math.log(0.8) + math.log(0.3) + math.log(0.7) + math.log(0.25)) / 4
    assert_close(nll(PROBS, Y), expected)


def test_nll_eps_floors_zero_probability():
    probs = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    y = torch.tensor([1, 0])
    assert_close(nll(probs, y, eps=1e-6), (-math.log(1e-6) + math.log(2)) / 2)
    assert nll(probs, y, eps=0.0) == math.inf


def test_brier_hand_computed():
    # Per example sum_c (p_c - onehot_c)^2:
    #   0: 0.2^2 + 0.1^2 + 0.1^2         = 0.06
    #   1: 0.5^2 + 0.7^2 + 0.2^2         = 0.78
    #   2: 0.2^2 + 0.3^2 + 0.1^2         = 0.14
    #   3: 0.4^2 + 0.35^2 + 0.75^2       = 0.845
    # mean = 1.825 / 4 = 0.45625
    assert_close(brier(PROBS, Y), 0.45625)


def test_brier_extremes():
    assert brier(torch.tensor([[1.0, 0.0]]), torch.tensor([0])) == 0.0
    assert brier(torch.tensor([[1.0, 0.0]]), torch.tensor([1])) == 2.0


def test_ece_mce_hand_computed_three_bins():
    # Bins [0, 1/3], (1/3, 2/3], (2/3, 1]:
    #   bin 0: empty
    #   bin 1: confs 0.5, 0.4 (both wrong): conf 0.45, acc 0 -> |gap| 0.45
    #   bin 2: confs 0.8, 0.7 (both right): conf 0.75, acc 1 -> |gap| 0.25
    # ECE = 2/4 * 0.45 + 2/4 * 0.25 = 0.35; MCE = 0.45.
    assert_close(ece(PROBS, Y, n_bins=3), 0.35)
    assert_close(mce(PROBS, Y, n_bins=3), 0.45)
    bins = reliability(PROBS, Y, n_bins=3)
    assert isinstance(bins, ReliabilityBins)
    assert bins.count.tolist() == [0, 2, 2]
    assert_close(bins.bin_lower, torch.tensor([0.0, 1 / 3, 2 / 3], dtype=torch.float64))
    assert_close(bins.bin_upper, torch.tensor([1 / 3, 2 / 3, 1.0], dtype=torch.float64))
    assert math.isnan(bins.confidence[0]) and math.isnan(bins.accuracy[0])
    assert_close(bins.confidence[1:], torch.tensor([0.45, 0.75], dtype=torch.float64))
    assert_close(bins.accuracy[1:], torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert_close(bins.gap[1:], torch.tensor([-0.45, 0.25], dtype=torch.float64))
    assert bins.n_total == 4


def test_one_bin_ece_is_gap_of_means():
    # One bin: |accuracy - mean confidence| = |0.5 - (0.8 + 0.5 + 0.7 + 0.4) / 4| = 0.1.
    assert_close(ece(PROBS, Y, n_bins=1), 0.1)
    assert_close(adaptive_ece(PROBS, Y, n_bins=1), 0.1)


def test_adaptive_ece_hand_computed():
    # Equal mass, 3 bins over N=4 sorted confidences 0.4, 0.5 | 0.7 | 0.8 (sizes 2, 1, 1):
    #   bin 0: conf 0.45, acc 0 -> 0.45;  bin 1: 0.7 vs 1 -> 0.3;  bin 2: 0.8 vs 1 -> 0.2
    # adaptive ECE = 2/4 * 0.45 + 1/4 * 0.3 + 1/4 * 0.2 = 0.35.
    assert_close(adaptive_ece(PROBS, Y, n_bins=3), 0.35)
    bins = reliability(PROBS, Y, n_bins=3, strategy="quantile")
    assert bins.strategy == "quantile"
    assert bins.count.tolist() == [2, 1, 1]
    assert_close(bins.bin_lower, torch.tensor([0.4, 0.7, 0.8], dtype=torch.float64))
    assert_close(bins.bin_upper, torch.tensor([0.5, 0.7, 0.8], dtype=torch.float64))


def test_quantile_more_bins_than_examples_leaves_empty_bins():
    bins = reliability(PROBS, Y, n_bins=6, strategy="quantile")
    assert bins.count.tolist() == [1, 1, 1, 1, 0, 0]
    assert torch.isnan(bins.confidence[4:]).all()
    # One example per bin: ECE = mean |correct - conf| = (0.4 + 0.5 + 0.3 + 0.2) / 4.
    assert_close(bins.ece, 0.35)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bin_edges_are_right_closed(dtype):
    # n_bins = 5: [0, .2], (.2, .4], (.4, .6], (.6, .8], (.8, 1].
    probs = torch.tensor(
        [
            [0.2, 0.2, 0.2, 0.2, 0.2],  # conf 0.2 -> bin 0 (right end of the first bin)
            [0.6, 0.4, 0.0, 0.0, 0.0],  # conf 0.6 -> bin 2
            [0.8, 0.2, 0.0, 0.0, 0.0],  # conf 0.8 -> bin 3
            [1.0, 0.0, 0.0, 0.0, 0.0],  # conf 1.0 -> bin 4 (last bin)
            [0.41, 0.39, 0.2, 0.0, 0.0],  # conf 0.41 -> bin 2
        ],
        dtype=dtype,
    )
    y = torch.zeros(5, dtype=torch.int64)
    assert reliability(probs, y, n_bins=5).count.tolist() == [1, 0, 2, 1, 1]


def test_confidence_zero_goes_to_first_bin():
    # A max probability of 0 can't happen for a valid row, so check through the binning
    # helper directly.
    from bayesdl.metrics.calibration import _uniform_bins

    idx, _, _ = _uniform_bins(torch.tensor([0.0, 1.0], dtype=torch.float64), 4, torch.float64)
    assert idx.tolist() == [0, 3]


def _reference_ece(probs: np.ndarray, y: np.ndarray, n_bins: int) -> tuple[float, float]:
    """Loop-over-bins ECE/MCE straight from the definition."""
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y).astype(float)
    total, worst = 0.0, 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        in_bin = (conf > lo) & (conf <= hi)
        if b == 0:
            in_bin |= conf == 0
        if in_bin.any():
            gap = abs(correct[in_bin].mean() - conf[in_bin].mean())
            total += in_bin.sum() / len(conf) * gap
            worst = max(worst, gap)
    return total, worst


def _reference_adaptive_ece(probs: np.ndarray, y: np.ndarray, n_bins: int) -> float:
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y).astype(float)
    order = np.argsort(conf, kind="stable")
    total = 0.0
    for chunk in np.array_split(order, n_bins):
        if len(chunk):
            total += len(chunk) / len(conf) * abs(correct[chunk].mean() - conf[chunk].mean())
    return total


@pytest.mark.parametrize("n_bins", [1, 2, 7, 15, 40])
def test_ece_matches_reference(n_bins):
    g = torch.Generator().manual_seed(n_bins)
    logits = 3 * torch.randn(500, 4, generator=g, dtype=torch.float64)
    probs = logits.softmax(dim=1)
    y = torch.randint(0, 4, (500,), generator=g)
    ref_ece, ref_mce = _reference_ece(probs.numpy(), y.numpy(), n_bins)
    assert_close(ece(probs, y, n_bins=n_bins), ref_ece)
    assert_close(mce(probs, y, n_bins=n_bins), ref_mce)
    ref_adaptive = _reference_adaptive_ece(probs.numpy(), y.numpy(), n_bins)
    assert_close(adaptive_ece(probs, y, n_bins=n_bins), ref_adaptive)


def _synthetic(n: int, n_classes: int, accuracy_of, seed: int):
    """Predictions with confidence c ~ U(0.5, 1), correct with probability accuracy_of(c).

    The predicted class is random; the remaining mass 1 - c (< 0.5) is spread evenly
    over the other classes, so c is the max probability. Wrong labels are uniform over
    the other classes.
    """
    g = torch.Generator().manual_seed(seed)
    c = 0.5 + 0.5 * torch.rand(n, generator=g, dtype=torch.float64)
    pred = torch.randint(0, n_classes, (n,), generator=g)
    probs = ((1 - c) / (n_classes - 1))[:, None].expand(n, n_classes).clone()
    probs[torch.arange(n), pred] = c
    p_correct = accuracy_of(c)
    correct = torch.rand(n, generator=g, dtype=torch.float64) < p_correct
    offset = torch.randint(1, n_classes, (n,), generator=g)
    y = torch.where(correct, pred, (pred + offset) % n_classes)
    return probs, y, p_correct


def _calibrated_ece_scale(p_correct: torch.Tensor, idx: torch.Tensor, n_bins: int) -> float:
    """Expected ECE of a perfectly calibrated model whose examples fall in bins ``idx``.

    Under calibration, acc_b - conf_b in bin b is an average of n_b independent
    (Bernoulli(c_i) - c_i) terms: mean 0, variance v_b / n_b with v_b the mean of
    c_i (1 - c_i). With n_b in the hundreds it is close to normal, and E|Z| =
    sqrt(2 / pi) * sd for a centred normal, so
        E[ECE] ~= sum_b (n_b / N) sqrt(2 / pi) sqrt(v_b / n_b).
    """
    n = p_correct.shape[0]
    total = 0.0
    for b in range(n_bins):
        mask = idx == b
        n_b = int(mask.sum())
        if n_b:
            v_b = (p_correct[mask] * (1 - p_correct[mask])).mean().item()
            total += n_b / n * math.sqrt(2 / math.pi) * math.sqrt(v_b / n_b)
    return total


def test_calibrated_predictions_have_small_ece():
    n, n_bins = 20_000, 15
    probs, y, p_correct = _synthetic(n, 3, lambda c: c, seed=0)
    conf = probs.max(dim=1).values
    # The bins each example falls in, recomputed here from the definitions.
    uniform_idx = torch.bucketize(conf, torch.arange(1, n_bins, dtype=torch.float64) / n_bins)
    quantile_idx = torch.empty(n, dtype=torch.int64)
    for b, chunk in enumerate(torch.tensor_split(torch.argsort(conf, stable=True), n_bins)):
        quantile_idx[chunk] = b
    # ECE is a weighted sum of B independent half-normals (B = 8 non-empty uniform bins
    # here, 15 quantile bins) with mean `scale`; its standard deviation is about
    # sqrt(1 - 2/pi) / sqrt(B) * scale <= 0.25 * scale, so 3 * scale sits ~8 standard
    # deviations above the mean: a calibrated model essentially never fails this, while
    # a miscalibration larger than 3 * scale (about 0.02 to 0.03 here) does.
    scale = _calibrated_ece_scale(p_correct, uniform_idx, n_bins)
    assert ece(probs, y, n_bins=n_bins) <= 3 * scale, scale
    scale_q = _calibrated_ece_scale(p_correct, quantile_idx, n_bins)
    assert adaptive_ece(probs, y, n_bins=n_bins) <= 3 * scale_q, scale_q


def test_overconfident_predictions_have_large_ece():
    n = 20_000
    # Accuracy is 0.3 below confidence everywhere, so every bin's gap is about -0.3 and
    # ECE = mean confidence - accuracy = 0.3 + (Monte Carlo error of the accuracy), whose
    # standard error is sqrt(sum_i p_i (1 - p_i)) / N.
    probs, y, p_correct = _synthetic(n, 3, lambda c: c - 0.3, seed=1)
    value = ece(probs, y)
    se = math.sqrt((p_correct * (1 - p_correct)).sum().item()) / n
    assert abs(value - 0.3) <= 4 * se + 1e-12, (value, se)
    assert mce(probs, y) >= value
    assert (reliability(probs, y).gap.nan_to_num(-1.0) < 0).all()


def _probs_and_labels():
    return st.integers(1, 40).flatmap(
        lambda n: st.integers(1, 6).flatmap(
            lambda c: st.tuples(
                hnp.arrays(np.float64, (n, c), elements=st.floats(-30, 30)),
                hnp.arrays(np.int64, (n,), elements=st.integers(0, c - 1)),
                st.floats(0.0, 5.0),
            )
        )
    )


def _to_probs(logits: np.ndarray, temperature: float) -> torch.Tensor:
    return (torch.from_numpy(logits) * temperature).softmax(dim=1)


@settings(max_examples=60, deadline=None)
@given(data=_probs_and_labels(), n_bins=st.integers(1, 20))
def test_property_bounds(data, n_bins):
    logits, labels, temperature = data
    probs, y = _to_probs(logits, temperature), torch.from_numpy(labels)
    value = ece(probs, y, n_bins=n_bins)
    assert 0.0 <= value <= 1.0
    assert value <= mce(probs, y, n_bins=n_bins) + 1e-12
    assert 0.0 <= adaptive_ece(probs, y, n_bins=n_bins) <= 1.0
    assert 0.0 <= brier(probs, y) <= 2.0
    assert 0.0 <= accuracy(probs, y) <= 1.0
    assert nll(probs, y) >= 0.0
    for strategy in ("uniform", "quantile"):
        bins = reliability(probs, y, n_bins=n_bins, strategy=strategy)
        assert bins.n_total == probs.shape[0]
        assert bins.count.shape == (n_bins,)
        ok = bins.count > 0
        assert (bins.confidence[ok] >= bins.bin_lower[ok] - 1e-12).all()
        assert (bins.confidence[ok] <= bins.bin_upper[ok] + 1e-12).all()


def test_float32_and_float64_agree():
    g = torch.Generator().manual_seed(3)
    probs = torch.randn(300, 5, generator=g, dtype=torch.float64).softmax(dim=1)
    y = torch.randint(0, 5, (300,), generator=g)
    p32 = probs.float()
    for fn in (accuracy, nll, brier):
        assert_close(fn(p32, y), fn(probs, y), atol=1e-5, rtol=1e-5)
    # Equal-width ECE can move an example across an edge under rounding; one example
    # changes ECE by at most 2 / N.
    assert abs(ece(p32, y) - ece(probs, y)) <= 2 / 300


def test_results_are_python_floats_and_cpu():
    assert type(accuracy(PROBS, Y)) is float
    assert type(ece(PROBS, Y)) is float
    bins = reliability(PROBS, Y)
    assert bins.count.device.type == "cpu" and bins.count.dtype == torch.int64


def test_reliability_bins_is_frozen():
    bins = reliability(PROBS, Y)
    with pytest.raises(AttributeError):
        bins.count = torch.zeros(15)  # type: ignore[misc]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_inputs():
    p, y = PROBS.cuda(), Y.cuda()
    assert_close(ece(p, y, n_bins=3), 0.35)
    assert_close(adaptive_ece(p, y, n_bins=3), 0.35)
    assert accuracy(p, Y) == 0.5  # labels on another device are moved
