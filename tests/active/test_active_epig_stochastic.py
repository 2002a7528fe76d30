"""EPIG and the stochastic batch acquisitions against brute force on hand-made predictives."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from _policy import Z
from torch.testing import assert_close

from bayesdl import CategoricalPredictive
from bayesdl.active import (
    bald,
    epig,
    epig_scores,
    gumbel_top_k,
    preferred_draws,
    select,
    softmax_bald,
    softrank_bald,
)


def _random_pred(s=5, n=6, c=3, seed=0, sharp=2.0) -> CategoricalPredictive:
    g = torch.Generator().manual_seed(seed)
    return CategoricalPredictive(sharp * torch.randn(s, n, c, generator=g, dtype=torch.float64))


def _brute_mi(p: list[list[float]], q: list[list[float]]) -> float:
    """I[y; y*] of two labels given S equally likely weight draws, by enumeration:
    p[s][c] = p(y = c | theta_s), q[s][d] = p(y* = d | theta_s)."""
    s = len(p)
    joint = {
        (c, d): sum(p[k][c] * q[k][d] for k in range(s)) / s
        for c in range(len(p[0])) for d in range(len(q[0]))
    }  # fmt: skip
    pc = {c: sum(joint[c, d] for d in range(len(q[0]))) for c in range(len(p[0]))}
    qd = {d: sum(joint[c, d] for c in range(len(p[0]))) for d in range(len(q[0]))}
    return sum(v * math.log(v / (pc[c] * qd[d])) for (c, d), v in joint.items() if v > 0)


def test_epig_scores_equal_brute_force_mutual_information():
    pool, target = _random_pred(seed=1), _random_pred(n=4, seed=2)
    p = pool.sample_probs.tolist()  # (S, N, C)
    q = target.sample_probs.tolist()
    expected = [
        sum(_brute_mi([ps[i] for ps in p], [qs[j] for qs in q]) for j in range(4)) / 4
        for i in range(6)
    ]
    assert_close(epig_scores(pool, target), torch.tensor(expected, dtype=torch.float64))


def test_epig_by_hand_and_bounded_by_bald():
    # One pool point decided by the weights, one target that copies it, one that ignores them.
    f64 = {"dtype": torch.float64}
    pool = CategoricalPredictive(
        torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]], **f64).clamp_min(1e-300).log()
    )
    target = CategoricalPredictive(
        torch.tensor([[[1.0, 0.0], [0.5, 0.5]], [[0.0, 1.0], [0.5, 0.5]]], **f64)
        .clamp_min(1e-300)
        .log()
    )
    # copy: I = log 2; independent target: 0; mean over the two targets: log(2) / 2
    assert_close(epig_scores(pool, target), torch.tensor([math.log(2) / 2], dtype=torch.float64))
    pred = _random_pred(s=8, n=10, seed=3)
    # data processing: I[y; y*] <= I[y; theta] for every target, so EPIG <= BALD
    assert (epig_scores(pred, pred) <= bald(pred).double() + 1e-12).all()


def test_epig_selects_top_k_of_scores_against_pool_targets():
    pred = _random_pred(s=6, n=12, seed=4)
    picked = epig(pred, 3, num_targets=5, generator=torch.Generator().manual_seed(7))
    targets = torch.randperm(12, generator=torch.Generator().manual_seed(7))[:5]
    scores = epig_scores(pred, CategoricalPredictive(pred.samples[:, targets]))
    assert picked.tolist() == torch.sort(scores, descending=True, stable=True).indices[:3].tolist()
    again = select("epig", pred, 3, generator=torch.Generator().manual_seed(7), num_targets=5)
    assert again.tolist() == picked.tolist()


def test_epig_bad_inputs():
    pred = _random_pred()
    with pytest.raises(ValueError, match="num_targets"):
        epig(pred, 2, num_targets=0)
    with pytest.raises(ValueError, match="same|samples"):
        epig_scores(pred, _random_pred(s=4))


def _plackett_luce(w: torch.Tensor, order: tuple[int, ...]) -> float:
    """Probability of drawing ``order`` first, without replacement, proportionally to w."""
    prob, left = 1.0, float(w.sum())
    for i in order:
        prob *= float(w[i]) / left
        left -= float(w[i])
    return prob


def _check_frequencies(draw, w: torch.Tensor, k: int, draws: int) -> None:
    """Empirical frequencies of ordered k-tuples against Plackett-Luce, z = 4 per tuple."""
    counts: dict[tuple[int, ...], int] = {}
    for _ in range(draws):
        key = tuple(draw().tolist())
        counts[key] = counts.get(key, 0) + 1
    for order in itertools.permutations(range(len(w)), k):
        p = _plackett_luce(w, order)
        se = math.sqrt(p * (1 - p) / draws)
        assert abs(counts.get(order, 0) / draws - p) <= Z * se + 1e-12, (order, p)


def test_gumbel_top_k_draws_ordered_pairs_as_successive_sampling():
    w = torch.tensor([0.5, 1.0, 2.0, 4.0], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    _check_frequencies(lambda: gumbel_top_k(w.log(), 2, g), w, 2, 6000)


def test_softmax_bald_draws_with_probability_exp_beta_bald():
    pred = _random_pred(s=6, n=4, seed=5)
    beta = 3.0
    w = torch.exp(beta * bald(pred).double())
    g = torch.Generator().manual_seed(1)
    _check_frequencies(lambda: softmax_bald(pred, 2, beta=beta, generator=g), w, 2, 6000)


def test_softrank_bald_draws_with_probability_rank_power():
    pred = _random_pred(s=6, n=4, seed=6)
    beta = 1.5
    rank = torch.empty(4, dtype=torch.float64)
    rank[torch.sort(bald(pred), descending=True, stable=True).indices] = torch.arange(
        1.0, 5.0, dtype=torch.float64
    )
    w = rank ** (-beta)
    g = torch.Generator().manual_seed(2)
    _check_frequencies(lambda: softrank_bald(pred, 2, beta=beta, generator=g), w, 2, 6000)


@pytest.mark.parametrize("fn", [softmax_bald, softrank_bald])
def test_stochastic_limits_and_errors(fn):
    pred = _random_pred(s=6, n=10, seed=7)
    top = fn(pred, 4, beta=1e6, generator=torch.Generator().manual_seed(0))
    assert top.tolist() == select("bald", pred, 4).tolist()  # beta -> inf: top-k BALD
    a = fn(pred, 10, beta=0.0, generator=torch.Generator().manual_seed(3))
    assert sorted(a.tolist()) == list(range(10))  # distinct indices
    with pytest.raises(ValueError, match="beta"):
        fn(pred, 2, beta=-1.0)


def test_preferred_draws():
    assert preferred_draws("batchbald") == "shared" and preferred_draws("epig") == "shared"
    for name in ("bald", "entropy", "power-bald", "softmax-bald", "random", "var-ratios"):
        assert preferred_draws(name) == "independent"
