"""Full-batch NUTS (Pyro's kernel) against closed forms, and its convergence diagnostics.

Targets are conjugate Bayesian linear regressions (tests/_blr.py), whose posterior is
Gaussian with known mean m and covariance C. Monte Carlo error comes from the chains' own
effective sample sizes (``pyro.ops.stats.effective_sample_size``, as Stan computes it): the
mean of a trace f(theta) has standard error sd(f) / sqrt(ESS(f)). That gives the mean
(f = theta_i) and the covariance (f = (theta_i - m_i)(theta_j - m_j), whose mean is C_ij)
tolerances of Z standard errors.

About 500 effective draws give the mean to 4% of a posterior sd but a variance only to
about 7%, so Z SE on the covariance catches only gross errors (a likelihood weighted 0.8
instead of 1 inflates the variance by 25%, under 4 SE). With a strong prior (scale 0.1,
prior precision 100 against a data precision of about 160) the posterior mean depends on
how likelihood and prior are weighed: that same error moves it by 1.6 sd, 40 SE.
"""

import math
import sys
import warnings

import pytest
import torch
from _blr import SIGMA, N, S, blr_data, blr_posterior
from _policy import Z
from torch import nn

import bayesdl as bdl

pytest.importorskip("pyro")
from pyro.ops.stats import effective_sample_size  # noqa: E402


def _correlated_data(n=N, seed=0):
    """One feature far from 0: slope and intercept are correlated about -0.97."""
    g = torch.Generator().manual_seed(seed)
    x = 2.0 + 0.5 * torch.randn(n, 1, generator=g, dtype=torch.float64)
    return x, 0.7 * x - 0.4 + SIGMA * torch.randn(n, 1, generator=g, dtype=torch.float64)


def _blr_hmc(x, prior_scale=S, **kwargs):
    torch.manual_seed(0)
    model = nn.Linear(x.shape[1], 1).double()
    lik, prior = bdl.likelihoods.Gaussian(sigma=SIGMA), bdl.priors.Normal(prior_scale)
    return bdl.HMC(model, likelihood=lik, prior=prior, **kwargs)


def _se(traces):
    """Standard error of the mean of each column of ``traces`` (chains, draws, k)."""
    flat = traces.flatten(0, 1)
    return flat.std(0) / effective_sample_size(traces).sqrt()


@pytest.mark.parametrize("target,prior_scale", [("blr", S), ("blr", 0.1), ("correlated", S)])
def test_nuts_matches_the_closed_form_posterior(target, prior_scale):
    x, y = blr_data() if target == "blr" else _correlated_data()
    mean, cov = blr_posterior(x, y, prior_scale=prior_scale)
    chains, draws = 2, 300
    # a dense mass matrix makes the correlated target isotropic for the sampler
    hmc = _blr_hmc(x, prior_scale, num_samples=draws, num_chains=chains,
                   full_mass=target == "correlated")  # fmt: skip
    report = hmc.fit((x, y), warmup=150, progress=False, generator=torch.Generator().manual_seed(1))
    diag = hmc.diagnostics()
    assert diag.max_r_hat < 1.01 and diag.divergences == 0
    assert report.extras["max_r_hat"] == diag.max_r_hat and report.losses == []
    bank = hmc.bank()
    theta = torch.cat([bank["weight"].flatten(1), bank["bias"]], 1).unflatten(0, (chains, draws))
    d = len(mean)
    dev = theta - mean
    second = (dev.unsqueeze(-1) * dev.unsqueeze(-2)).flatten(2)  # (chains, draws, d * d)
    se_m, se_c = _se(theta), _se(second)
    sd = cov.diagonal().sqrt()
    assert (se_m < 0.1 * sd).all()  # precise enough to mean something
    assert (se_c.view(d, d).diagonal() < 0.15 * cov.diagonal()).all()
    est_m, est_c = theta.flatten(0, 1).mean(0), second.flatten(0, 1).mean(0)
    assert ((est_m - mean).abs() <= Z * se_m).all(), (est_m, mean, se_m)
    assert ((est_c - cov.flatten()).abs() <= Z * se_c).all(), (est_c.view(d, d), cov)


def test_a_broken_run_is_flagged():
    """No adaptation, a step size 25x the posterior's scale and 5 warm-up steps: every
    trajectory diverges at once, the chains never move, and R-hat is undefined or huge."""
    x, y = blr_data()
    hmc = _blr_hmc(x, num_samples=10, num_chains=2, step_size=2.0, adapt_step_size=False,
                   adapt_mass_matrix=False)  # fmt: skip
    with pytest.warns(UserWarning, match="divergent transitions"):
        report = hmc.fit((x, y), warmup=5, progress=False, generator=torch.Generator())
    with pytest.warns(UserWarning, match=r"max R-hat .* > 1\.01"):
        diag = hmc.diagnostics()
    assert diag.divergences == 20 and report.extras["divergences"] == 20
    assert not diag.max_r_hat <= 1.01


def test_thresholds_decide_the_warnings():
    x, y = blr_data()
    hmc = _blr_hmc(x, num_samples=20)
    with pytest.warns(UserWarning, match="min ESS") as record:  # 20 draws: ESS < 100
        hmc.fit((x, y), warmup=30, progress=False, generator=torch.Generator().manual_seed(0))
    assert "divergent" not in str(record[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        diag = hmc.diagnostics(max_r_hat=math.inf, min_ess=0.0)
    assert diag.divergences == 0 and diag.min_ess < 100


def test_generic_fit_interface_runs_a_map_initialisation_and_is_reproducible(tmp_path):
    """``epochs``/``lr``/``batch_size`` drive the initialising MAP fit; the generator alone
    decides the draws, and torch's global RNG is left as it was."""
    x, y = blr_data()
    banks = []
    for _ in range(2):
        hmc = _blr_hmc(x, num_samples=8)
        torch.manual_seed(123)
        state = torch.get_rng_state()
        with pytest.warns(UserWarning, match="min ESS"):
            report = hmc.fit((x, y), epochs=3, lr=0.05, batch_size=10, warmup=10,
                             progress=False, generator=torch.Generator().manual_seed(2))  # fmt: skip
        assert torch.equal(torch.get_rng_state(), state)
        assert len(report.losses) == 3 and report.losses[-1] < report.losses[0]
        banks.append(hmc.bank())
    torch.testing.assert_close(banks[0], banks[1], rtol=0, atol=0)
    path = bdl.save(hmc, tmp_path / "hmc.safetensors")
    loaded = bdl.load(path, nn.Linear(3, 1).double())
    torch.testing.assert_close(loaded.bank(), banks[1], rtol=0, atol=0)
    with pytest.warns(UserWarning):
        assert loaded.diagnostics() == hmc.diagnostics()  # divergences saved too


def test_without_pyro_fit_says_how_to_install_it(monkeypatch):
    x, y = blr_data()
    hmc = _blr_hmc(x)
    monkeypatch.setitem(sys.modules, "pyro", None)
    with pytest.raises(ImportError, match=r"pip install bayesdl\[mcmc\]"):
        hmc.fit((x, y), progress=False)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"num_samples": 0}, "num_samples must be a positive integer"),
        ({"num_samples": 3}, "num_samples must be at least 4"),
        ({"num_chains": 0}, "num_chains must be a positive integer"),
        ({"step_size": 0.0}, "step_size must be positive"),
        ({"target_accept": 1.0}, r"target_accept must lie in \(0, 1\)"),
        ({"max_tree_depth": 0}, "max_tree_depth must be a positive integer"),
    ],
)
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _blr_hmc(blr_data()[0], **kwargs)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"warmup": -1}, "warmup must be an integer >= 0"),
        ({"epochs": -1}, "epochs must be an integer >= 0"),
        ({"init_jitter": -0.1}, "init_jitter must be >= 0"),
        ({"init_jitter": math.nan}, "init_jitter must be >= 0"),
    ],
)
def test_bad_fit_arguments_are_refused(kwargs, match):
    x, y = blr_data()
    with pytest.raises(ValueError, match=match):
        _blr_hmc(x).fit((x, y), progress=False, **kwargs)


def test_bad_targets_and_early_calls_are_refused():
    x, y = blr_data()
    hmc = _blr_hmc(x)
    with pytest.raises(RuntimeError, match="call fit first"):
        hmc.diagnostics()
    with pytest.raises(ValueError, match="regression targets must have shape"):
        hmc.fit((x, torch.cat([y, y], 1)), progress=False)  # two targets, one output


def test_a_learned_noise_is_sampled_against_its_exact_marginal_posterior(tmp_path):
    """Linear regression with unknown sigma: weights N(0, S^2), flat prior on log sigma.
    Given sigma the evidence is closed form, y ~ N(0, sigma^2 I + S^2 A A^T) with A = [x, 1],
    so p(log sigma | D) follows by quadrature on a grid, and with it the exact posterior
    means of sigma and of (w, b) (mixing the conjugate means of tests/_blr.py). NUTS must
    match them within Z standard errors from the chains' effective sample sizes."""
    from _blr import blr_posterior

    x, y = blr_data()
    a = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    grid = torch.linspace(math.log(0.2), math.log(1.2), 801, dtype=torch.float64)
    log_ev = torch.stack([
        torch.distributions.MultivariateNormal(
            torch.zeros(len(x), dtype=x.dtype),
            covariance_matrix=torch.exp(2 * g) * torch.eye(len(x), dtype=x.dtype) + S**2 * a @ a.T,
        ).log_prob(y.squeeze(-1))
        for g in grid
    ])  # fmt: skip
    weights = torch.softmax(log_ev, 0)  # flat prior in log sigma, uniform grid
    assert weights[0] < 1e-8 and weights[-1] < 1e-8  # the grid holds the posterior
    exact_sigma = (weights * grid.exp()).sum()
    exact_theta = sum(
        w * blr_posterior(x, y, sigma=float(g.exp()))[0] for w, g in zip(weights, grid, strict=True)
    )

    torch.manual_seed(0)
    hmc = bdl.HMC(nn.Linear(3, 1).double(), likelihood=bdl.likelihoods.Gaussian(sigma=None),
                  prior=bdl.priors.Normal(S), num_samples=300, num_chains=2)  # fmt: skip
    hmc.likelihood.double()
    hmc.fit((x, y), warmup=150, epochs=30, lr=0.05, batch_size=40, progress=False,
            generator=torch.Generator().manual_seed(1))  # fmt: skip
    assert hmc.diagnostics().max_r_hat < 1.01
    sigma = hmc.noise_bank.exp().view(2, 300, 1)
    bank = hmc.bank()
    theta = torch.cat([bank["weight"].flatten(1), bank["bias"]], 1).view(2, 300, 4)
    assert abs(sigma.mean() - exact_sigma) <= Z * _se(sigma).item()
    assert ((theta.flatten(0, 1).mean(0) - exact_theta).abs() <= Z * _se(theta)).all()
    # the posterior of sigma is not a point: the MAP noise is not simply kept
    assert sigma.std() > 0.02
    # each draw predicts with its own noise, also after save -> load
    pred = hmc.predict(x[:5], samples=600)
    assert torch.equal(pred.noise_variance[:, 0, 0], (2 * hmc.noise_bank).exp())
    path = bdl.save(hmc, tmp_path / "hmc.safetensors")
    loaded = bdl.load(path, nn.Linear(3, 1).double())
    assert torch.equal(loaded.predict(x[:5], samples=600).noise_variance, pred.noise_variance)
