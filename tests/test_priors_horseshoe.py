"""The horseshoe on a sparse linear regression with a known support.

``y = X beta + noise`` with ``D`` inputs of which ``K`` are non-zero. Checks against the truth
of the data-generating process and an independently computed density:

* MeanFieldVI with ``Horseshoe(group="weight")`` ranks every true input above every
  null one (by the posterior mean's magnitude and by ``unit_scales``) and shrinks the null
  coefficients more than a ``Normal(1)`` prior does;
* HMC's potential is the horseshoe posterior's density in the non-centred coordinates,
  computed independently with torch.distributions, and a short run samples the latents.

Not here (too slow for the suite, and not converged at test sizes: split R-hat 2.0 after
2 x 60 draws): HMC's coefficient posterior against a long reference chain.
"""

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import bayesdl as bdl

pytest.importorskip("pyro")

D, K, N, SIGMA, TAU0 = 12, 2, 60, 0.5, 0.1


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, D, generator=g, dtype=torch.float64)
    beta = torch.zeros(D, dtype=torch.float64)
    beta[:K] = torch.tensor([2.0, -1.5], dtype=torch.float64)
    return x, x @ beta[:, None] + SIGMA * torch.randn(N, 1, generator=g, dtype=torch.float64)


def _normal_posterior_mean(x, y):
    """Exact posterior mean under a Normal(1) prior (conjugate); mean-field VI's optimum
    has the same mean on this Gaussian target."""
    precision = x.T @ x / SIGMA**2 + torch.eye(D, dtype=x.dtype)
    return torch.linalg.solve(precision, x.T @ y / SIGMA**2).flatten()


def _lik():
    return bdl.likelihoods.Gaussian(SIGMA)


def _net():
    torch.manual_seed(0)
    return nn.Linear(D, 1, bias=False).double()


def _support_checks(coef_hs, coef_normal, shrink):
    true, null = coef_hs[:K].abs(), coef_hs[K:].abs()
    assert true.min() > null.max(), coef_hs  # every true input ranked above every null one
    # null coefficients shrunk more than under Normal(1), by at least the factor ``shrink``
    ratio = null.mean() / coef_normal[K:].abs().mean()
    assert ratio < shrink, (ratio, coef_hs, coef_normal)


def test_vi_recovers_the_support_and_shrinks_the_nulls():
    """Centred mean-field VI cannot shrink a null coefficient below about half its data
    estimate (its ``q(w)`` sd, ~ sigma / sqrt(N), bounds the scale from below: see the
    ``Horseshoe`` docstring), so VI is only asked to shrink more than Normal(1) does."""
    x, y = _data()
    vi = bdl.MeanFieldVI(_net(), _lik(), prior=bdl.priors.Horseshoe(TAU0, group="weight"))
    opt = torch.optim.Adam(vi.parameters(), lr=0.05)  # a user's own loop: vi.loss
    g = torch.Generator().manual_seed(0)
    for _ in range(500):
        opt.zero_grad()
        vi.loss(x, y, N, generator=g).backward()
        opt.step()
    scales = bdl.priors.unit_scales(vi)["weight"].flatten()
    assert scales[:K].min() > scales[K:].max(), scales  # the inputs switched off
    coef = vi.mean()["weight"].detach().flatten()
    _support_checks(coef, _normal_posterior_mean(x, y), shrink=1.0)


def test_hmc_potential_is_the_non_centred_joint_density():
    """HMC's potential at sampler coordinates (beta, log lambda, log tau) is
    ``-log p(y | w) - log p(w, z) - log |dw/dbeta|`` with ``w = beta lambda tau``, computed
    here with torch.distributions: the density NUTS samples is the horseshoe posterior."""
    x, y = _data()
    hmc = bdl.HMC(_net(), _lik(), prior=bdl.priors.Horseshoe(TAU0, group="weight"), num_samples=4)
    g = torch.Generator().manual_seed(5)
    beta = torch.randn(1, D, generator=g, dtype=torch.float64)
    zl = 0.5 * torch.randn(1, D, generator=g, dtype=torch.float64)
    zg = torch.tensor(-1.0, dtype=torch.float64)
    params = {"weight": beta, "prior.weight.local": zl, "prior.weight.global": zg}
    lam, tau = zl.exp(), zg.exp()
    w = beta * lam * tau
    log_lik = torch.distributions.Normal(x @ w.T, SIGMA).log_prob(y).sum()
    log_prior = torch.distributions.Normal(0.0, lam * tau).log_prob(w).sum()
    log_prior += (torch.distributions.HalfCauchy(1.0).log_prob(lam) + zl).sum()
    log_prior += torch.distributions.HalfCauchy(TAU0).log_prob(tau) + zg
    log_det = (zl + zg).sum()
    expected = -log_lik - log_prior - log_det
    assert_close(hmc.potential(params, x, y), expected)


def test_hmc_samples_the_latents_and_keeps_their_summary():
    """A short run: the bank holds weights (not the sampler's beta) and the prior's
    latent factor summarises the draws of the log scales."""
    x, y = _data()
    hmc = bdl.HMC(_net(), _lik(), prior=bdl.priors.Horseshoe(TAU0, group="weight"), num_samples=4)
    before = {k: v.detach().clone() for k, v in hmc.prior.latent_values().items()}
    with pytest.warns(UserWarning, match="may not have converged"):
        hmc.fit((x, y), warmup=10, progress=False, generator=torch.Generator().manual_seed(1))
    after = hmc.prior.latent_values()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert torch.isfinite(bdl.priors.unit_scales(hmc)["weight"]).all()
    # the banked draws are weights: predictions are X w of the stored draws
    pred = hmc.predict(x[:3], samples=4)
    assert_close(pred.samples[..., 0], hmc.bank()["weight"][:, 0] @ x[:3].T)
