"""Acquisition functions against hand-computed scores and brute-force references."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from _policy import Z
from torch.testing import assert_close

from bayesdl import CategoricalPredictive
from bayesdl.active import (
    acquisition_names,
    bald,
    batchbald,
    entropy,
    get_acquisition,
    joint_entropy,
    mean_std,
    power_bald,
    random,
    select,
    variation_ratio,
)
from bayesdl.active.acquisition import _conditional_entropy_terms


def _pred(probs) -> CategoricalPredictive:
    """Predictive from per-sample probabilities given as nested lists (S, N, C)."""
    return CategoricalPredictive(torch.tensor(probs, dtype=torch.float64).log())


def _random_pred(s=6, n=9, c=3, seed=0, sharp=2.0) -> CategoricalPredictive:
    g = torch.Generator().manual_seed(seed)
    return CategoricalPredictive(sharp * torch.randn(s, n, c, generator=g, dtype=torch.float64))


def _h(p: list[float]) -> float:
    return -sum(q * math.log(q) for q in p if q > 0)


# Two pool points, S = 3 samples, C = 2 classes.
HAND = [
    [[0.9, 0.1], [0.5, 0.5]],
    [[0.1, 0.9], [0.5, 0.5]],
    [[0.8, 0.2], [0.5, 0.5]],
]


def test_scores_by_hand():
    pred = _pred(HAND)
    mean0 = [(0.9 + 0.1 + 0.8) / 3, (0.1 + 0.9 + 0.2) / 3]
    h0 = _h(mean0)
    eh0 = (_h([0.9, 0.1]) + _h([0.1, 0.9]) + _h([0.8, 0.2])) / 3
    expected_entropy = torch.tensor([h0, math.log(2)], dtype=torch.float64)
    assert_close(entropy(pred), expected_entropy)
    # BALD = H[mean] - mean H; point 1 is pure aleatoric noise: zero.
    assert_close(bald(pred), torch.tensor([h0 - eh0, 0.0], dtype=torch.float64))
    # Votes for point 0: class 0, 1, 0 -> modal frequency 2/3. Point 1: all ties -> argmax
    # class 0 each time -> modal frequency 1.
    assert_close(variation_ratio(pred), torch.tensor([1 - 2 / 3, 0.0], dtype=torch.float64))
    # Population std over samples, per class, then mean over classes.
    p0 = torch.tensor([0.9, 0.1, 0.8], dtype=torch.float64)
    std0 = math.sqrt(((p0 - p0.mean()) ** 2).mean())  # class 1 has the same std
    assert_close(mean_std(pred), torch.tensor([std0, 0.0], dtype=torch.float64))


def test_select_is_top_k_of_scores_with_stable_ties():
    pred = _random_pred(n=20)
    for name, fn in [("bald", bald), ("entropy", entropy), ("mean-std", mean_std)]:
        expected = torch.sort(fn(pred), descending=True, stable=True).indices[:5]
        assert select(name, pred, 5).tolist() == expected.tolist()
    ties = CategoricalPredictive(torch.zeros(3, 6, 2))  # every score equal
    assert select("bald", ties, 3).tolist() == [0, 1, 2]


def test_registry_names_and_aliases():
    names = acquisition_names()
    for name in ["random", "entropy", "bald", "var-ratios", "mean-std", "batchbald", "power-bald"]:
        assert name in names
    for alias, canonical in [
        ("variation_ratio", "var-ratios"),
        ("mean_std", "mean-std"),
        ("power_bald", "power-bald"),
        ("max-entropy", "entropy"),
    ]:
        assert get_acquisition(alias).name == canonical
    pred = _random_pred(n=12)
    for name in acquisition_names(aliases=True):
        idx = select(name, pred, 4, generator=torch.Generator().manual_seed(0))
        assert idx.dtype == torch.long and idx.shape == (4,) and len(set(idx.tolist())) == 4


def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError, match="unknown acquisition.*'bald'.*'batchbald'"):
        select("bold", _random_pred(), 2)


def test_nan_scores_name_the_indices():
    pred = _random_pred(n=8)
    pred.samples[:, [2, 5]] = float("nan")  # as if a broken model had produced them
    with pytest.raises(ValueError, match=r"NaN scores .* indices \[2, 5\]"):
        select("bald", pred, 3)
    with pytest.raises(ValueError, match=r"NaN.*\[2, 5\]"):
        select("power-bald", pred, 3)
    with pytest.raises(ValueError, match=r"NaN.*\[2, 5\]"):
        select("batchbald", pred, 3)


@pytest.mark.parametrize("k", [0, 10, -1, 2.0, True])
def test_bad_k(k):
    with pytest.raises(ValueError, match="k must be an integer in"):
        select("bald", _random_pred(n=9), k)


def test_bad_inputs():
    with pytest.raises(TypeError, match="CategoricalPredictive"):
        bald(torch.zeros(3, 4, 2))
    with pytest.raises(ValueError, match="num_configs"):
        batchbald(_random_pred(), 2, num_configs=0)
    with pytest.raises(ValueError, match="beta"):
        power_bald(_random_pred(), 2, beta=-1.0)
    with pytest.raises(TypeError, match="takes no options"):
        select("bald", _random_pred(), 2, beta=1.0)


def test_random_is_reproducible_under_a_generator():
    pred = _random_pred(n=50)
    a = select("random", pred, 10, generator=torch.Generator().manual_seed(3))
    b = select("random", pred, 10, generator=torch.Generator().manual_seed(3))
    c = select("random", pred, 10, generator=torch.Generator().manual_seed(4))
    assert a.tolist() == b.tolist() != c.tolist()
    assert random(pred, torch.Generator().manual_seed(0)).shape == (50,)


# -- BatchBALD ------------------------------------------------------------------------------
def _brute_joint_entropy(pred: CategoricalPredictive, idx: list[int]) -> float:
    """Enumerate every label configuration: p(y) = mean_s prod_j p_s(y_j)."""
    probs = pred.sample_probs.double()
    c = probs.shape[-1]
    total = 0.0
    for ys in itertools.product(range(c), repeat=len(idx)):
        p = torch.ones(probs.shape[0], dtype=torch.float64)
        for j, y in zip(idx, ys, strict=True):
            p = p * probs[:, j, y]
        q = float(p.mean())
        total -= q * math.log(q) if q > 0 else 0.0
    return total


@pytest.mark.parametrize("idx", [[0, 1], [3, 7], [2, 4, 8], [1, 1, 5]])
def test_joint_entropy_equals_brute_force(idx):
    pred = _random_pred(s=5, n=9, c=3, seed=len(idx) + idx[0])
    expected = torch.tensor(_brute_joint_entropy(pred, idx), dtype=torch.float64)
    assert_close(joint_entropy(pred, idx), expected)


def test_joint_entropy_of_one_point_is_its_entropy():
    pred = _random_pred()
    assert_close(joint_entropy(pred, [4]), entropy(pred)[4])


@pytest.mark.parametrize("seed", range(5))
def test_batchbald_with_batch_size_one_is_bald_argmax(seed):
    pred = _random_pred(s=8, n=30, c=4, seed=seed)
    assert batchbald(pred, 1).tolist() == [int(bald(pred).argmax())]


@pytest.mark.parametrize("seed", range(3))
def test_batchbald_is_greedy_on_brute_force_joint_mutual_information(seed):
    pred = _random_pred(s=5, n=8, c=3, seed=10 + seed)
    aleatoric = pred.expected_entropy().double()
    chosen: list[int] = []
    for _ in range(3):  # exact regime: 3^3 = 27 configurations
        gains = {
            i: _brute_joint_entropy(pred, [*chosen, i]) - float(aleatoric[[*chosen, i]].sum())
            for i in range(8)
            if i not in chosen
        }
        chosen.append(max(gains, key=gains.get))
    assert batchbald(pred, 3).tolist() == chosen


def test_lazy_greedy_equals_scoring_every_candidate():
    """Several blocks of 64 candidates: the lazy search must find the exhaustive argmax."""
    pred = _random_pred(s=8, n=300, c=3, seed=4, sharp=1.5)
    aleatoric = pred.expected_entropy().double()
    chosen: list[int] = []
    for _ in range(4):
        gains = torch.tensor(
            [
                float(joint_entropy(pred, [*chosen, i])) - float(aleatoric[i])
                if i not in chosen
                else -math.inf
                for i in range(300)
            ]
        )
        chosen.append(int(gains.argmax()))
    assert batchbald(pred, 4).tolist() == chosen


def _duplicated_pool() -> CategoricalPredictive:
    """S = 8 weight samples; the bits of s decide three independent binary questions.

    Point A follows bit 2 of s (confidence 0.99), B bit 1 (0.95), C bit 0 (0.9); the
    last point is pure noise. The pool is A, A, A, B, C, noise. Top-3 BALD takes the three
    copies of A, although after one copy the others tell almost nothing new about the
    weights, while B and C each still carry a full bit.
    """

    def follows(bit: int, conf: float) -> list[list[float]]:
        return [[conf, 1 - conf] if (s >> bit) & 1 else [1 - conf, conf] for s in range(8)]

    a, b, c = follows(2, 0.99), follows(1, 0.95), follows(0, 0.9)
    noise = [[0.5, 0.5]] * 8
    points = [a, a, a, b, c, noise]
    return _pred([[pt[s] for pt in points] for s in range(8)])


def test_batchbald_avoids_duplicates_that_bald_picks():
    pred = _duplicated_pool()
    assert sorted(select("bald", pred, 3).tolist()) == [0, 1, 2]
    assert batchbald(pred, 3).tolist() == [0, 3, 4]


@pytest.mark.parametrize("seed", range(3))
def test_batchbald_sampled_configurations_also_avoid_duplicates(seed):
    pred = _duplicated_pool()
    g = torch.Generator().manual_seed(seed)
    assert batchbald(pred, 3, num_configs=1, generator=g).tolist() == [0, 3, 4]


def test_batchbald_sampled_equals_exact_on_a_clear_pool():
    pred = _random_pred(s=10, n=40, c=3, seed=7, sharp=3.0)
    exact = batchbald(pred, 6)  # 3^5 = 243 configurations <= 10,000: exact throughout
    # With 100 configurations the 5th pick still uses the exact 3^4 table, the 6th samples.
    sampled = batchbald(pred, 6, num_configs=100, generator=torch.Generator().manual_seed(1))
    assert sampled[:5].tolist() == exact[:5].tolist()
    assert len(set(sampled.tolist())) == 6


def test_sampled_joint_entropy_matches_exact_within_monte_carlo_error():
    """The estimator behind BatchBALD's sampled regime: configurations m ~ p(y_batch),
    H(batch, y_i) ~= mean_m [-log p(m) + H(y_i | m)], checked against enumeration."""
    pred = _random_pred(s=6, n=6, c=3, seed=3)
    batch, cand, m = [0, 1, 2, 3], 5, 20_000
    probs, logp = pred.sample_probs.double(), pred.samples.double()
    g = torch.Generator().manual_seed(0)
    sample_of = torch.randint(6, (m,), generator=g)
    log_joint = torch.zeros(6, m, dtype=torch.float64)
    for j in batch:
        y = torch.multinomial(probs[sample_of, j], 1, generator=g).squeeze(-1)
        log_joint += logp[:, j, y]
    h_batch, cond = _conditional_entropy_terms(log_joint, probs, exact=False)
    estimate = float(h_batch + cond[cand])
    # Per-configuration terms, to get the Monte Carlo standard error.
    log_pm = torch.logsumexp(log_joint, 0) - math.log(6)
    q = torch.softmax(log_joint, 0).T @ probs[:, cand]
    terms = -log_pm - torch.special.xlogy(q, q).sum(-1)
    assert_close(terms.mean(), torch.tensor(estimate, dtype=torch.float64))
    se = float(terms.std() / math.sqrt(m))
    truth = _brute_joint_entropy(pred, [*batch, cand])
    assert abs(estimate - truth) < Z * se


# -- PowerBALD ------------------------------------------------------------------------------
def test_power_bald_is_reproducible_and_distinct():
    pred = _random_pred(n=40)
    a = power_bald(pred, 8, generator=torch.Generator().manual_seed(5))
    b = power_bald(pred, 8, generator=torch.Generator().manual_seed(5))
    c = power_bald(pred, 8, generator=torch.Generator().manual_seed(6))
    assert a.tolist() == b.tolist() != c.tolist()
    assert len(set(a.tolist())) == 8


def test_power_bald_large_beta_is_top_k_bald():
    pred = _random_pred(n=30)
    picked = power_bald(pred, 5, beta=1e6, generator=torch.Generator().manual_seed(0))
    assert picked.tolist() == select("bald", pred, 5).tolist()


def test_power_bald_draws_proportionally_to_bald_power():
    """With k = 1 the Gumbel-top-1 draw is exact: P(i) = s_i^beta / sum_j s_j^beta."""
    pred = _random_pred(s=6, n=5, c=3, seed=2)
    beta, draws = 2.0, 4000
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(5, dtype=torch.float64)
    for _ in range(draws):
        counts[power_bald(pred, 1, beta=beta, generator=g)] += 1
    p = bald(pred) ** beta
    p = p / p.sum()
    se = (p * (1 - p) / draws).sqrt()
    assert ((counts / draws - p).abs() < Z * se).all(), (counts / draws, p)
