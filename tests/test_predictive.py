import math

import pytest
import torch
from torch.testing import assert_close

from bayesdl import CategoricalPredictive, GaussianPredictive


def _random_logits(s=7, n=11, c=4, seed=0):
    return torch.randn(s, n, c, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_probs_are_the_average_of_sample_probs():
    logits = _random_logits()
    p = CategoricalPredictive(logits)
    assert_close(p.probs, torch.softmax(logits, -1).mean(0))
    assert_close(p.probs.sum(-1), torch.ones(11, dtype=torch.float64))


def test_entropy_decomposition_and_nonnegative_mi():
    p = CategoricalPredictive(_random_logits())
    assert_close(p.entropy(), p.expected_entropy() + p.mutual_information())
    assert (p.mutual_information() >= 0).all()
    assert (p.mutual_information() > 1e-3).all()  # distinct samples disagree


def test_identical_samples_have_zero_mutual_information():
    logits = _random_logits(s=1).expand(5, -1, -1)
    p = CategoricalPredictive(logits)
    assert_close(p.mutual_information(), torch.zeros(11, dtype=torch.float64))
    assert_close(p.variation_ratio(), torch.zeros(11, dtype=torch.float64))
    assert_close(p.mean_std(), torch.zeros(11, dtype=torch.float64))


def test_analytic_entropies():
    # Uniform over C classes: H = log C. Two one-hot samples on different classes: the BMA
    # is uniform over 2 classes, so H = log 2, E[H] = 0 and MI = log 2.
    c = 5
    assert_close(
        CategoricalPredictive(torch.zeros(3, 2, c)).entropy(), torch.full((2,), math.log(c))
    )
    big = 60.0
    logits = torch.tensor([[[big, 0.0]], [[0.0, big]]])
    p = CategoricalPredictive(logits)
    assert_close(p.entropy(), torch.tensor([math.log(2)]))
    assert_close(p.expected_entropy(), torch.tensor([0.0]), atol=1e-20, rtol=0)
    assert_close(p.mutual_information(), torch.tensor([math.log(2)]))


def test_variation_ratio_and_mean_std_by_hand():
    # 4 samples, 1 input, 3 classes; argmax votes: 0, 0, 1, 2 -> modal frequency 2/4.
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7]])
    p = CategoricalPredictive(probs.log().unsqueeze(1))
    assert_close(p.variation_ratio(), torch.tensor([0.5]))
    # population std over samples per class, then averaged over classes
    expected = probs.std(0, correction=0).mean()
    assert_close(p.mean_std(), expected.reshape(1))


def test_log_likelihood_and_label_checks():
    p = CategoricalPredictive(_random_logits())
    y = torch.arange(11) % 4
    assert_close(p.log_likelihood(y), p.probs[torch.arange(11), y].log())
    with pytest.raises(ValueError, match=r"y must hold class indices in \[0, 4\)"):
        p.log_likelihood(torch.full((11,), 4))
    with pytest.raises(ValueError, match="shape"):
        p.log_likelihood(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(S, N, C\)"):
        CategoricalPredictive(torch.zeros(3, 4))
    bad = _random_logits()
    bad[2, 5, 1] = float("nan")
    with pytest.raises(ValueError, match=r"NaN.*\[5\]"):
        CategoricalPredictive(bad)


def test_gaussian_mixture_moments_and_density():
    g = torch.Generator().manual_seed(1)
    means = torch.randn(6, 4, 2, generator=g, dtype=torch.float64)
    noise = torch.rand(6, 4, 2, generator=g, dtype=torch.float64) + 0.1
    p = GaussianPredictive(means, noise)
    assert_close(p.mean, means.mean(0))
    # law of total variance, checked against E[y^2] - E[y]^2 of the mixture
    second_moment = (noise + means**2).mean(0)
    assert_close(p.variance, second_moment - means.mean(0) ** 2)
    y = torch.randn(4, 2, generator=g, dtype=torch.float64)
    dens = torch.zeros(4, dtype=torch.float64)
    for s in range(6):  # reference: explicit mixture density
        comp = torch.exp(-0.5 * (y - means[s]) ** 2 / noise[s]) / torch.sqrt(2 * math.pi * noise[s])
        dens += comp.prod(-1) / 6
    assert_close(p.log_likelihood(y), dens.log())
    with pytest.raises(ValueError, match="positive"):
        GaussianPredictive(means, torch.tensor(0.0))
