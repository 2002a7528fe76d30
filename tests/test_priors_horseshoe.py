"""The horseshoe on a sparse linear regression with a known support.

``y = X beta + noise`` with ``D`` inputs of which ``K`` are non-zero. Checks against the truth
of the data-generating process and an independently computed density:

* MeanFieldVI with ``Horseshoe(group="weight")`` ranks every true input above every
  null one (by the posterior mean's magnitude and by ``unit_scales``) and shrinks the null
  coefficients more than a ``Normal(1)`` prior does;
* HMC's potential is the horseshoe posterior's density in the non-centred coordinates,
  computed independently with torch.distributions, and a short run samples the latents;
* the exact Gibbs sampler used as the reference for HMC (Makalic & Schmidt 2016,
  ``tests/_horseshoe_gibbs.py``, which shares no code with bayesdl) matches quadrature.

HMC's coefficient posterior against that reference is ``benchmarks/horseshoe_hmc.py``
(NUTS on the horseshoe needs long trajectories, see the ``Horseshoe`` docstring; at a
test-sized budget it converged for some seeds and not others).
"""

import numpy as np
import pytest
import torch
from _horseshoe_gibbs import horseshoe_gibbs
from _policy import Z
from torch import nn
from torch.testing import assert_close

import bayesdl as bdl

pytest.importorskip("pyro")
from pyro.ops.stats import effective_sample_size  # noqa: E402

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
    # the diagnostics cover the latent log scales too, from their own draws (chains x draws)
    with pytest.warns(UserWarning, match="may not have converged"):  # a 4-draw run
        diag = hmc.diagnostics()
    assert set(diag.r_hat) == {"weight", "prior.weight.global", "prior.weight.local"}
    local = hmc.latent_draws["weight.local"]
    assert local.shape[0] == hmc.num_chains * hmc.num_samples
    assert_close(local.mean(0), after["weight.local"].reshape(local.shape[1:]))
    assert torch.isfinite(bdl.priors.unit_scales(hmc)["weight"]).all()
    # the banked draws are weights: predictions are X w of the stored draws
    pred = hmc.predict(x[:3], samples=4)
    assert_close(pred.samples[..., 0], hmc.bank()["weight"][:, 0] @ x[:3].T)


# -- HMC against an exact Gibbs sampler --------------------------------------------------------
def _moments_agree(ours: torch.Tensor, ref: torch.Tensor) -> None:
    """Means and second moments of draws (chains, draws, D) agree within ``Z`` Monte Carlo
    standard errors, each from its own sampler's effective sample size (per coefficient)."""
    for power in (1, 2):
        a, b = ours**power, ref**power
        se2 = [t.flatten(0, 1).var(0) / effective_sample_size(t) for t in (a, b)]
        diff = a.flatten(0, 1).mean(0) - b.flatten(0, 1).mean(0)
        tol = Z * (se2[0] + se2[1]).sqrt()
        assert (diff.abs() <= tol).all(), (power, diff, tol)


def test_gibbs_reference_matches_quadrature():
    """The reference sampler against the exact posterior: with an orthogonal design
    (``X^T X = N I``) the posterior factorises given ``tau``, so the posterior mean and
    second moment of every coefficient are a two-dimensional quadrature over ``log lambda``
    and ``log tau`` (the coefficient integrated in closed form given its scale)."""
    n_in, n, sigma, tau0 = 4, 30, 1.0, 0.3
    rng = np.random.default_rng(0)
    x = np.sqrt(n) * np.linalg.qr(rng.standard_normal((n, n_in)))[0]
    y = x @ np.array([1.5, -1.0, 0.0, 0.0]) + sigma * rng.standard_normal(n)
    z, noise_var = x.T @ y / n, sigma**2 / n  # z_j ~ N(beta_j, sigma^2 / N) given beta
    u = np.linspace(-12.0, 12.0, 2401)  # log lambda
    lam = np.exp(u)
    p_lam = 2 / np.pi / (1 + lam**2) * lam * (u[1] - u[0])
    v = np.linspace(-12.0, 6.0, 1201)  # log tau
    tau = np.exp(v)
    log_p_tau = np.log(2 / np.pi * tau0 / (tau0**2 + tau**2) * tau)
    s2 = (lam[None, :] * tau[:, None]) ** 2  # prior variance of beta_j, (tau, lambda)
    shrink = s2 / (s2 + noise_var)
    marg, m1, m2 = [], [], []
    for j in range(n_in):  # given the scale: z_j ~ N(0, s^2 + noise_var), beta_j Gaussian
        dens = np.exp(-0.5 * z[j] ** 2 / (s2 + noise_var)) / np.sqrt(s2 + noise_var) * p_lam
        marg.append(dens.sum(1))
        m1.append((dens * shrink * z[j]).sum(1) / marg[-1])
        m2.append((dens * (shrink * noise_var + (shrink * z[j]) ** 2)).sum(1) / marg[-1])
    log_w = log_p_tau + np.log(np.stack(marg, 1)).sum(1)
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    exact = [torch.from_numpy(w @ np.stack(m, 1)) for m in (m1, m2)]
    draws = torch.from_numpy(
        horseshoe_gibbs(x, y, sigma, tau0, draws=2500, burn=200, chains=8, seed=0)
    )
    for power, truth in zip((1, 2), exact, strict=True):
        t = draws**power
        se = t.flatten(0, 1).std(0) / effective_sample_size(t).sqrt()
        assert ((t.flatten(0, 1).mean(0) - truth).abs() <= Z * se).all(), (power, truth)


# bdl.HMC against this reference is benchmarks/horseshoe_hmc.py (converged at D = 12 with 2 x 300
# draws, max |z| 1.48), not a test: on the 4-input problem at a test-sized budget NUTS converged
# for some seeds and not others (split R-hat 1.18 after the chains' seeding changed), so a test
# of it would pass or fail by seed.


def test_vi_shrinks_the_nulls_far_more_than_normal_at_the_issues_size():
    """50 inputs, 5 non-zero, 100 points, noise sd 1, the global scale by Piironen & Vehtari's
    rule (K / (D - K) * sigma / sqrt(N)): mean-field VI ranks every true input above every
    null one and leaves the null coefficients less than half of what the exact Normal(1)
    posterior leaves ("far more" shrinkage; benchmarks/horseshoe_hmc.py has HMC and an exact
    Gibbs sampler on the same problem)."""
    d, k, n, sigma = 50, 5, 100, 1.0
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    beta = torch.zeros(d, dtype=torch.float64)
    beta[:k] = 1.5 * torch.tensor([(-1.0) ** i for i in range(k)], dtype=torch.float64)
    y = x @ beta[:, None] + sigma * torch.randn(n, 1, generator=g, dtype=torch.float64)
    torch.manual_seed(0)
    vi = bdl.MeanFieldVI(nn.Linear(d, 1, bias=False).double(), bdl.likelihoods.Gaussian(sigma),
                         prior=bdl.priors.Horseshoe(k / (d - k) * sigma / n**0.5, group="weight"))  # fmt: skip
    vi.fit((x, y), epochs=1000, batch_size=n, lr=0.05, progress=False,
           generator=torch.Generator().manual_seed(1))  # fmt: skip
    scales = bdl.priors.unit_scales(vi)["weight"].flatten()
    assert scales[:k].min() > scales[k:].max(), scales
    coef = vi.mean()["weight"].detach().flatten()
    precision = x.T @ x / sigma**2 + torch.eye(d, dtype=x.dtype)
    normal = torch.linalg.solve(precision, x.T @ y / sigma**2).flatten()
    true, null = coef[:k].abs(), coef[k:].abs()
    assert true.min() > null.max(), coef
    assert null.mean() / normal[k:].abs().mean() < 0.5, (null.mean(), normal[k:].abs().mean())
