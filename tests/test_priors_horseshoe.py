"""The horseshoe on a sparse linear regression with a known support.

``y = X beta + noise`` with ``D`` inputs of which ``K`` are non-zero. Checks against the truth
of the data-generating process and against an independent sampler:

* MeanFieldVI and HMC with ``Horseshoe(group="weight")`` rank every true input above every
  null one (by the posterior mean's magnitude) and shrink the null coefficients far more
  than a ``Normal(1)`` prior does;
* HMC's coefficient posterior (bayesdl's potential, the prior's latents sampled in its
  non-centred parameterisation) agrees with a reference chain of the same model written
  directly as a Pyro program, within Z Monte Carlo standard errors from both chains' ESS
  (policy in tests/_policy.py).
"""

import pytest
import torch
from _policy import Z
from torch import nn

import bayesdl as bdl

pytest.importorskip("pyro")
import pyro  # noqa: E402
import pyro.distributions as dist  # noqa: E402
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


def _reference_chain(x, y, draws, warmup):
    """The same horseshoe regression as a Pyro program (non-centred), sampled by NUTS."""

    def model():
        tau = pyro.sample("tau", dist.HalfCauchy(torch.tensor(TAU0, dtype=torch.float64)))
        lam = pyro.sample("lam", dist.HalfCauchy(torch.ones(D, dtype=torch.float64)).to_event(1))
        z = pyro.sample("z", dist.Normal(torch.zeros(D, dtype=torch.float64), 1.0).to_event(1))
        beta = z * lam * tau
        pyro.sample("y", dist.Normal(x @ beta, SIGMA).to_event(1), obs=y.flatten())
        pyro.deterministic("beta", beta)

    pyro.set_rng_seed(123)
    kernel = pyro.infer.NUTS(model, target_accept_prob=0.9, max_tree_depth=6)
    mcmc = pyro.infer.MCMC(kernel, num_samples=draws, warmup_steps=warmup, num_chains=1,
                           disable_progbar=True)  # fmt: skip
    mcmc.run()
    z = mcmc.get_samples()
    return (z["z"] * z["lam"] * z["tau"][:, None]).unsqueeze(0)  # (1, draws, D)


def test_hmc_recovers_the_support_and_matches_a_reference_chain():
    x, y = _data()
    chains, draws = 2, 150
    hmc = bdl.HMC(_net(), _lik(), prior=bdl.priors.Horseshoe(TAU0, group="weight"),
                  num_samples=draws, num_chains=chains, target_accept=0.9)  # fmt: skip
    hmc.fit((x, y), warmup=100, progress=False, generator=torch.Generator().manual_seed(1))
    ours = hmc.bank()["weight"].flatten(1).unflatten(0, (chains, draws))  # (chains, draws, D)
    ref = _reference_chain(x, y, draws=600, warmup=200)
    _support_checks(ours.flatten(0, 1).mean(0), _normal_posterior_mean(x, y), shrink=0.5)
    # the latents were sampled too: the kept log-scale summary ranks the inputs
    scales = bdl.priors.unit_scales(hmc)["weight"].flatten()
    assert scales[:K].min() > scales[K:].max(), scales

    def se(t):
        return t.flatten(0, 1).std(0) / effective_sample_size(t).sqrt()

    diff = ours.flatten(0, 1).mean(0) - ref.flatten(0, 1).mean(0)
    tol = Z * (se(ours) ** 2 + se(ref) ** 2).sqrt()
    assert (diff.abs() <= tol).all(), (diff, tol)
