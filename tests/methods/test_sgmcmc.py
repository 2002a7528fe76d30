"""SGLD and SGHMC against exact answers.

A discretised Langevin sampler on a Gaussian target is a linear Gaussian recursion
``z' = F z + G w`` in the state z = (theta - m, v), so its law after any number of steps,
and its stationary law, are known exactly: the mean is the posterior mean m (the gradient is
unbiased and linear in theta) and the covariance solves ``Sigma = F Sigma F^T + G Q G^T``
(a discrete Lyapunov equation). It differs from the posterior covariance by O(step size):
for SGLD on a 1-d target of precision P the stationary variance is
``T / (P (1 - eta P / 2))``. Minibatches drawn with replacement add the gradient-noise
covariance ``eta^2 (N^2 / B) Cov_j(grad_j)`` to Q, computed below in closed form too. So the
tests compare the samples with these exact laws at Z Monte Carlo standard errors, and check
separately that the exact law is within the O(step) bias of the closed-form posterior.
"""

import math

import pytest
import torch
from _blr import SIGMA, N, S, batch_means_se, blr_data, blr_posterior
from _policy import Z
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

import bayesdl as bdl
from bayesdl.engine import Callback, lr_factors
from bayesdl.methods.sgmcmc import SGMCMCOptimizer, _plan_schedule, step_scale


def _transition(eta, prec, alpha):
    """F and G of one step on a Gaussian target of precision ``prec`` (d, d)."""
    eye = torch.eye(len(prec), dtype=prec.dtype)
    f = torch.cat(
        [torch.cat([eye - eta * prec, (1 - alpha) * eye], 1),
         torch.cat([-eta * prec, (1 - alpha) * eye], 1)]
    )  # fmt: skip
    return f, torch.cat([eye, eye])


def _stationary(step, dim):
    """Fixed point of the affine covariance map ``step`` on (dim, dim) matrices (exact)."""
    zero = step(torch.zeros(dim, dim, dtype=torch.float64))
    basis = torch.eye(dim * dim, dtype=torch.float64).reshape(-1, dim, dim)
    op = torch.stack([(step(b) - zero).flatten() for b in basis], 1)
    eye = torch.eye(dim * dim, dtype=torch.float64)
    return torch.linalg.solve(eye - op, zero.flatten()).reshape(dim, dim)


@pytest.mark.parametrize(
    "alpha,temperature", [(1.0, 1.0), (1.0, 0.25), (0.1, 1.0), (0.5, 2.0)]
)  # fmt: skip
def test_optimizer_matches_the_exact_law_of_the_discretised_chain(alpha, temperature):
    """20,000 independent chains on U = N P theta^2 / 2 per coordinate, from theta = 0.

    After k steps the chains are exactly N(0, Sigma_k) with Sigma_k from the covariance
    recursion; the sample variance of n iid normals has standard error var sqrt(2 / (n-1)).
    A wrong noise scale (sqrt(2), N, T or alpha misplaced) moves it by far more than Z SE.
    """
    n_chains, n_data, prec, steps = 20_000, 50, 100.0, 300
    lr = 0.2 * n_data / prec * alpha  # eta P = 0.2 alpha: stable, and mixes within `steps`
    theta = nn.Parameter(torch.zeros(n_chains, dtype=torch.float64))
    opt = SGMCMCOptimizer([theta], lr, n_data, momentum_decay=alpha, temperature=temperature,
                          generator=torch.Generator().manual_seed(0))  # fmt: skip
    for _ in range(steps):
        opt.zero_grad()
        (prec / (2 * n_data) * theta.pow(2).sum()).backward()  # the per-example U / N
        opt.step()
    f, g = _transition(lr / n_data, torch.tensor([[prec]], dtype=torch.float64), alpha)
    q = 2 * alpha * (lr / n_data) * temperature
    cov = torch.zeros(2, 2, dtype=torch.float64)
    for _ in range(steps):
        cov = f @ cov @ f.T + q * g @ g.T
    var = cov[0, 0]
    exact = temperature / prec
    assert abs(var / exact - 1) < 0.15  # the O(step) discretisation bias is small here
    assert abs(theta.detach().var() - var) <= Z * var * math.sqrt(2 / (n_chains - 1))
    assert abs(theta.detach().mean()) <= Z * math.sqrt(var / n_chains)


def _with_replacement(x, y, batch, generator):
    """Minibatches of independent uniform draws: the gradient noise is iid across steps."""
    sampler = RandomSampler(range(len(x)), replacement=True, num_samples=len(x),
                            generator=generator)  # fmt: skip
    return DataLoader(TensorDataset(x, y), batch_sampler=BatchSampler(sampler, batch, False))


# (friction alpha, eta * lambda_max): SGHMC moves about 1 / alpha times further per step
STEPS = {"sgld": (1.0, 0.15), "sghmc": (0.3, 0.05)}


@pytest.mark.parametrize("name,batch", [("sgld", N), ("sghmc", N), ("sgld", 20)])
def test_blr_samples_follow_the_exact_stationary_law(name, batch):
    """Conjugate BLR (tests/_blr.py): K copies of the problem as the K outputs of one
    Linear layer (the posterior factorises over outputs) give K chains in one ``fit``.

    The mean must be the closed-form posterior mean within Z SE, the second moments must
    match the exact stationary covariance within Z SE, and that covariance must be within
    the O(step) bias of the closed form (at most 15% in sd at these step sizes).
    Full batch (``batch == N``) the chains are independent, so each chain's time average is
    one of K iid replicates and gives the standard error directly. Minibatches are shared by
    all chains, so there the standard errors are batch means over time of the chain
    averages: 20 batches of 90 steps, about 4 autocorrelation times (SGLD's slowest mode,
    eta lambda_min = 0.08, has tau = (2 - eta lambda) / (eta lambda) = 23 steps).
    """
    k, steps, burn = (200, 500, 200) if batch == N else (100, 2100, 300)
    x, y = blr_data()
    mean, cov = blr_posterior(x, y)
    prec = torch.linalg.inv(cov)
    alpha, eta_lambda = STEPS[name]
    lr = float(eta_lambda * N / torch.linalg.eigvalsh(prec).max())
    torch.manual_seed(0)  # initial weights
    model = nn.Linear(3, k).double()
    hp = {"momentum_decay": alpha} if name == "sghmc" else {}
    lik = bdl.likelihoods.Gaussian(sigma=SIGMA)
    method = bdl.get_method(name)(  # the step taken is lr (step_scale undone)
        model, likelihood=lik, prior=bdl.priors.Normal(S), num_samples=200,
        lr=lr / step_scale(lik), schedule="constant", burn_in=burn / steps, **hp,
    )  # fmt: skip
    g = torch.Generator().manual_seed(1)
    data = (x, y.expand(N, k)) if batch == N else _with_replacement(x, y.expand(N, k), batch, g)
    method.fit(data, epochs=steps * batch // N, progress=False, generator=g)
    bank = method.bank()
    theta = torch.cat([bank["weight"], bank["bias"].unsqueeze(-1)], -1)  # (samples, K, D+1)

    a = torch.cat([x, torch.ones(N, 1, dtype=x.dtype)], 1)
    h = torch.einsum("ni,nj->nij", a, a) / SIGMA**2
    dh = h - h.mean(0)
    grads = a * (a @ mean - y.squeeze(-1)).unsqueeze(-1) / SIGMA**2  # per example, at m
    f, gm = _transition(lr / N, prec, alpha)
    eta, d, scale = lr / N, len(mean), (N**2 / batch if batch < N else 0.0)

    def step(sig):  # one step of the covariance recursion of (theta - m, v)
        sdd = sig[:d, :d]
        noise = torch.einsum("nij,jk,nkl->il", dh, sdd, dh) / N + torch.cov(grads.T, correction=0)
        q = eta**2 * scale * noise + 2 * alpha * eta * torch.eye(d, dtype=torch.float64)
        return f @ sig @ f.T + gm @ q @ gm.T

    pred = _stationary(step, 2 * d)[:d, :d]
    assert ((pred.diagonal() / cov.diagonal()).sqrt() - 1).abs().max() < 0.15

    dev = theta - mean
    second = torch.einsum("ski,skj->skij", dev, dev).flatten(2)  # (samples, K, (D+1)^2)
    if batch == N:  # per-chain time averages: K iid replicates
        m_rep, c_rep = theta.mean(0), second.mean(0)
        est_m, se_m = m_rep.mean(0), m_rep.std(0) / k**0.5
        est_c, se_c = c_rep.mean(0), c_rep.std(0) / k**0.5
    else:
        m_trace, c_trace = theta.mean(1), second.mean(1)
        est_m, se_m = m_trace.mean(0), batch_means_se(m_trace, 20)
        est_c, se_c = c_trace.mean(0), batch_means_se(c_trace, 20)
    assert (se_m < 0.2 * cov.diagonal().sqrt()).all()  # precise enough to mean something
    assert (se_c.view(d, d).diagonal() < 0.05 * pred.diagonal()).all()
    assert ((est_m - mean).abs() <= Z * se_m).all(), (est_m, mean, se_m)
    assert ((est_c - pred.flatten()).abs() <= Z * se_c).all(), (est_c.view(d, d), pred)


def test_cyclical_schedule():
    """cSG-MCMC (Zhang et al., 2020): cosine cycles, noise only in each cycle's last part."""
    plan = _plan_schedule(400, "cyclical", 4, 0.8, 0.0, 20)
    factor = lr_factors("cyclical", 400, 4)  # the engine's step sizes of this run
    assert factor[0] == 1.0 and factor[100] == 1.0  # every cycle restarts at lr
    assert factor[50] == pytest.approx(0.5)  # (cos(pi / 2) + 1) / 2
    assert factor[99] == pytest.approx((math.cos(math.pi * 99 / 100) + 1) / 2)
    noisy = [k for k, on in enumerate(plan.noisy) if on]
    assert noisy == [c * 100 + j for c in range(4) for j in range(80, 100)]
    assert len(plan.store) == 20 and plan.store <= set(noisy) and 399 in plan.store
    assert sum(k < 100 for k in plan.store) == 5  # spread evenly over the four cycles
    # burn-in: no sample before 60% of the run
    assert min(_plan_schedule(400, "cyclical", 4, 0.8, 0.6, 20).store) >= 240
    # a short run lengthens the sampling stages so that the bank can still be filled
    short = _plan_schedule(40, "cyclical", 4, 0.8, 0.0, 20)
    assert len(short.store) == 20 and sum(short.noisy) == 20
    const = _plan_schedule(100, "constant", 4, 0.8, 0.5, 10)
    assert set(lr_factors("constant", 100)) == {1.0} and all(const.noisy) and min(const.store) >= 50
    with pytest.warns(UserWarning, match="holds 8 of num_samples=20"):
        assert len(_plan_schedule(8, "cyclical", 4, 0.8, 0.0, 20).store) == 8
    with pytest.raises(ValueError, match="no sampling step is left after burn_in"):
        _plan_schedule(8, "constant", 1, 0.8, 0.95, 20)


def _toy():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(48, 4, generator=g)
    return x, (x[:, 0] > 0).long()


@pytest.mark.parametrize("name", ["sgld", "sghmc"])
def test_fit_is_reproducible_under_a_generator_and_fills_the_bank(name):
    runs = []
    for global_seed in (0, 1):  # the global RNG must not matter, only the generator
        torch.manual_seed(0)
        method = bdl.get_method(name)(nn.Linear(4, 2), num_samples=6)
        torch.manual_seed(global_seed)
        report = method.fit(_toy(), epochs=6, batch_size=8, progress=False,
                            generator=torch.Generator().manual_seed(3))  # fmt: skip
        assert int(method.stored) == 6 and report.extras["samples"] == 6
        runs.append(method.sample_params(6))
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)
    other = bdl.get_method(name)(nn.Linear(4, 2), num_samples=6)
    other.fit(_toy(), epochs=6, batch_size=8, progress=False,
              generator=torch.Generator().manual_seed(4))  # fmt: skip
    assert not torch.equal(other.sample_params(6)["weight"], runs[0]["weight"])
    pred = method.predict(_toy()[0][:5], samples=100)
    assert pred.samples.shape == (6, 5, 2)  # the bank's size, not more


def test_learned_noise_is_optimised_not_sampled():
    """A learned Gaussian sigma is a point estimate: with the model frozen at the truth,
    the noiseless steps drive it to the maximum-likelihood sigma (slowly: the step is
    scaled by sigma^2 / 2, ``step_scale``)."""
    x, y = blr_data(n=400)
    model = nn.Linear(3, 1).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, -2.0, 0.5]]))
        model.bias.fill_(0.3)
    model.requires_grad_(False)
    lik = bdl.likelihoods.Gaussian(sigma=None).double()
    sgld = bdl.SGLD(model, likelihood=lik, lr=0.2, schedule="constant")
    sgld.fit((x, y), epochs=600, batch_size=400, progress=False,
             generator=torch.Generator().manual_seed(0))  # fmt: skip
    mle = (y - model(x)).pow(2).mean().sqrt()
    torch.testing.assert_close(lik.sigma, mle, rtol=1e-3, atol=0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"num_samples": 0}, "num_samples must be a positive integer"),
        ({"lr": 0.0}, "lr must be positive"),
        ({"cycles": 0}, "cycles must be a positive integer"),
        ({"schedule": "linear"}, "schedule must be 'cyclical' or 'constant'"),
        ({"exploration": 1.0}, r"exploration must lie in \[0, 1\)"),
        ({"burn_in": -0.1}, r"burn_in must lie in \[0, 1\)"),
        ({"temperature": -1.0}, "temperature must be >= 0"),
        ({"momentum_decay": 0.0}, r"momentum_decay must lie in \(0, 1\]"),
        ({"momentum_decay": 1.5}, r"momentum_decay must lie in \(0, 1\]"),
    ],
)
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bdl.SGHMC(nn.Linear(4, 2), **kwargs)


def test_bad_fit_calls_are_refused():
    sgld = bdl.SGLD(nn.Linear(4, 2))
    with pytest.raises(RuntimeError, match="no posterior samples yet; call fit"):
        sgld.predict(_toy()[0])
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        sgld.fit(_toy(), epochs=0, progress=False)
    with pytest.raises(ValueError, match="lr must be positive"):
        sgld.fit(_toy(), epochs=1, lr=-1.0, progress=False)


def _regression(n=455, d=13, seed=0):
    """Standardised targets of a smooth function of d inputs plus noise (Boston's shape)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = torch.tanh(x @ torch.randn(d, 1, generator=g)) + 0.2 * torch.randn(n, 1, generator=g)
    return x, (y - y.mean()) / y.std()


class _Steps(Callback):
    """Records the step size of the sampled parameters' group at every step."""

    def __init__(self):
        self.lrs = []

    def on_step_end(self, state, terms):
        self.lrs.append(state.optimizer.param_groups[0]["lr"])


@pytest.mark.parametrize("name", ["sgld", "sghmc"])
def test_default_step_is_scaled_to_a_gaussian_likelihood_and_stays_finite(name):
    """At its default lr a sampler chosen on classification takes steps 1 / (2 sigma^2) times
    too large for a Gaussian of small sigma (output curvature 1 / sigma^2 against 1/2); on
    standardised targets with sigma = 0.3 that diverged within a few steps. The steps taken
    are the scheduled ones times sigma^2 / 2, and the fit ends finite, better than the mean."""
    x, y = _regression()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(13, 50), nn.ReLU(), nn.Linear(50, 1))
    method = bdl.get_method(name)(model, likelihood=bdl.likelihoods.Gaussian(sigma=0.3))
    steps = _Steps()
    report = method.fit((x, y), epochs=20, batch_size=64, progress=False, callbacks=[steps],
                        generator=torch.Generator().manual_seed(0))  # fmt: skip
    factors = lr_factors("cyclical", len(steps.lrs), method.cycles)
    expected = [method.lr * f * 0.3**2 / 2 for f in factors]
    assert steps.lrs == pytest.approx(expected, rel=1e-6)
    assert report.extras["min_step_scale"] == pytest.approx(0.3**2 / 2, rel=1e-6)
    rmse = float((method.predict(x, samples=20).mean - y).square().mean().sqrt())
    assert rmse < 0.8  # the mean predictor's is 1


def test_categorical_steps_are_unscaled():
    steps = _Steps()
    method = bdl.SGHMC(nn.Linear(4, 2), num_samples=4)
    method.fit(_toy(), epochs=4, batch_size=8, progress=False, callbacks=[steps],
               generator=torch.Generator().manual_seed(0))  # fmt: skip
    factors = lr_factors("cyclical", len(steps.lrs), method.cycles)
    assert steps.lrs == pytest.approx([method.lr * f for f in factors], rel=1e-12)
