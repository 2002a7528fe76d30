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


def test_one_dimensional_targets_for_a_one_output_model():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, generator=g)
    y = x[:, 0] - 2 * x[:, 1] + 0.1 * torch.randn(40, generator=g)  # shape (40,)
    m = bdl.MAP(nn.Linear(3, 1), likelihood=bdl.likelihoods.Gaussian(sigma=0.5))
    out = m.model(x)
    # truth: the Gaussian NLL written out, per example, averaged; not (N, N) broadcasting
    truth = 0.5 * ((y - out[:, 0]) / 0.5) ** 2 + math.log(0.5) + 0.5 * math.log(2 * math.pi)
    torch.testing.assert_close(m.likelihood.nll(out, y), truth.mean())
    torch.testing.assert_close(m.likelihood.nll(out, y), m.likelihood.nll(out, y[:, None]))
    het = bdl.likelihoods.HeteroscedasticGaussian()
    two = torch.stack([out[:, 0], torch.full((40,), 2 * math.log(0.5))], -1)  # log var
    torch.testing.assert_close(het.nll(two, y), truth.mean())
    m.fit((x, y), epochs=2, batch_size=8, progress=False, generator=g)  # accepted
    assert m.predict(x[:4]).mean.shape == (4, 1)


def test_regression_target_errors_quote_the_example_not_the_minibatch():
    x = torch.randn(50, 3)
    m = bdl.MAP(nn.Linear(3, 2), likelihood=bdl.likelihoods.Gaussian())
    with pytest.raises(ValueError) as info:
        m.fit((x, torch.randn(50, 3)), batch_size=16, progress=False)
    message = str(info.value)
    assert "shape (N, 2)" in message and "got shape (3,) per example" in message
    assert "16" not in message  # the minibatch size is not the user's data
    with pytest.raises(ValueError, match=r"got one value per example; pass y of shape \(N, 2\)"):
        m.fit((x, torch.randn(50)), progress=False)


def test_float_labels_with_the_default_likelihood_point_at_gaussian():
    m = bdl.MAP(nn.Linear(3, 2))
    with pytest.raises(TypeError, match=r"integer tensor.*bdl.likelihoods.Gaussian\(\)"):
        m.fit((torch.randn(20, 3), torch.randn(20)), progress=False)
    with pytest.raises(TypeError, match=r"bdl.likelihoods.Gaussian\(\)"):
        m.predict(torch.randn(5, 3)).log_likelihood(torch.randn(5))


def _max_output_hessian_eig(lik, output, y):
    """Largest eigenvalue of one example's NLL Hessian in the network output, by autograd."""
    h = torch.autograd.functional.hessian(lambda o: lik.nll(o.unsqueeze(0), y), output)
    return float(torch.linalg.eigvalsh(h.reshape(output.numel(), -1)).max())


def test_output_curvature_bounds_the_exact_hessian():
    """Categorical: every Hessian's top eigenvalue is below 1/2, and two classes at p = 1/2
    reach it. Gaussian: the Hessian is 1 / sigma^2 for a fixed and for a learned sigma."""
    g = torch.Generator().manual_seed(0)
    cat = bdl.likelihoods.Categorical()
    eigs = [_max_output_hessian_eig(cat, 3 * torch.randn(c, generator=g, dtype=torch.float64),
                                    torch.tensor([0])) for c in (2, 3, 10) for _ in range(20)]  # fmt: skip
    assert max(eigs) <= cat.output_curvature() + 1e-12
    at_half = _max_output_hessian_eig(cat, torch.zeros(2, dtype=torch.float64), torch.tensor([1]))
    assert at_half == pytest.approx(cat.output_curvature(), abs=1e-12)
    for lik in (bdl.likelihoods.Gaussian(sigma=0.3), bdl.likelihoods.Gaussian(init_sigma=2.0)):
        lik = lik.double()
        exact = _max_output_hessian_eig(lik, torch.tensor([0.7], dtype=torch.float64),
                                        torch.tensor([[0.1]], dtype=torch.float64))  # fmt: skip
        assert lik.output_curvature() == pytest.approx(exact, rel=1e-9)
    assert bdl.likelihoods.HeteroscedasticGaussian().output_curvature() is None
