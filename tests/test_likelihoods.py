"""Likelihoods recover known noise; KL annealing ramps the KL weight."""

import math

import pytest
import torch
from _policy import Z
from torch import nn

import bayesdl as bdl
from bayesdl.engine import FitState, make_batches


def test_learned_homoscedastic_noise_recovers_the_true_sigma():
    g = torch.Generator().manual_seed(0)
    n, sigma = 2000, 0.3
    x = torch.randn(n, 2, generator=g)
    y = x @ torch.tensor([[1.5], [-0.5]]) + sigma * torch.randn(n, 1, generator=g)
    torch.manual_seed(0)
    m = bdl.MAP(
        nn.Linear(2, 1), likelihood=bdl.likelihoods.Gaussian(), prior=bdl.priors.Normal(100.0)
    )
    m.fit((x, y), epochs=60, lr=0.02, batch_size=200, progress=False, generator=g)
    # the ML estimate of sigma has standard error sigma / sqrt(2n)
    assert abs(m.likelihood.sigma.item() - sigma) <= Z * sigma / math.sqrt(2 * n)
    pred = m.predict(x[:5])
    torch.testing.assert_close(
        pred.aleatoric_variance, torch.full((5, 1), m.likelihood.sigma.item() ** 2)
    )


def test_heteroscedastic_noise_follows_the_input():
    g = torch.Generator().manual_seed(0)
    n = 3000
    x = torch.rand(n, 1, generator=g) * 2 - 1
    noise_sd = 0.05 + 0.5 * (x + 1) / 2  # grows from 0.05 to 0.55 across the inputs
    y = torch.sin(3 * x) + noise_sd * torch.randn(n, 1, generator=g)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(1, 64), nn.Tanh(), nn.Linear(64, 2))
    m = bdl.MAP(
        net, likelihood=bdl.likelihoods.HeteroscedasticGaussian(), prior=bdl.priors.Normal(100.0)
    )
    m.fit((x, y), epochs=80, lr=0.01, batch_size=250, progress=False, generator=g)
    grid = torch.tensor([[-0.8], [0.0], [0.8]])
    sd = m.predict(grid).aleatoric_variance.sqrt().flatten()
    truth = (0.05 + 0.5 * (grid + 1) / 2).flatten()
    # a loose, not statistical, check: within 30% of the truth at each point
    torch.testing.assert_close(sd, truth, rtol=0.3, atol=0.0)


def test_kl_annealing_ramps_the_kl_weight():
    """The prior term at step k of a fit is min(1, (k + 1) / K) times the full KL / N."""
    torch.manual_seed(0)
    vi = bdl.MeanFieldVI(nn.Linear(2, 2), kl_annealing_steps=4)
    x, y = torch.randn(5, 2), torch.randint(0, 2, (5,))
    full = vi.objective(x, y, 10).prior.detach()
    batches = make_batches((x, y), 5)
    seen = []
    for step in range(6):
        state = FitState(10, None, batches, None, step=step)
        seen.append(float(vi.objective(x, y, 10, None, state).prior.detach() / full))
    assert seen == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])
