"""SWAG and MultiSWAG on conjugate Bayesian linear regression and against brute force.

What is checked against what:
* ``collect`` against moments computed by hand from recorded SGD iterates (exact), and the
  SWA mean against the exact posterior mean: for a quadratic objective the stationary mean
  of constant-learning-rate SGD is the minimiser (the gradient is affine in theta and its
  noise has mean zero), here the posterior mean;
* the sampler against its formula (Maddox et al. 2019, Sec. 3.2): sample mean = theta_bar
  and sample covariance = scale * (Sigma_diag + D D^T / (K - 1)) / 2, within Monte Carlo
  error (Z = 4 standard errors, tests/_policy.py); the test also shows that it would catch
  variances used in place of standard deviations;
* the spread shrinking with the amount of data, against the theory of SGD noise;
* the vectorised predict against a loop over samples (with BatchNorm: against
  ``torch.optim.swa_utils.update_bn`` per sample), MultiSWAG's split of the draws over its
  members, and the errors.
"""

import copy

import pytest
import torch
from _blr import SIGMA, D, S, batch_means_se, blr_data, blr_posterior
from _policy import Z
from torch import nn
from torch.func import functional_call
from torch.optim.swa_utils import update_bn
from torch.testing import assert_close

import bayesdl as bdl
from bayesdl.methods.swag import _VAR_CLAMP


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _blr_swag(**kw):
    return bdl.SWAG(
        nn.Linear(D, 1).double(), likelihood=bdl.likelihoods.Gaussian(sigma=SIGMA),
        prior=bdl.priors.Normal(S), **kw,
    )  # fmt: skip


def _flat(params):
    return torch.cat([params["weight"].flatten(1), params["bias"]], 1)


def _swag_covariance(swag, member=0):
    """scale * (Sigma_diag + D D^T / (k - 1)) / 2 from the stored moments."""
    k = min(int(swag.n_models[member]), swag.rank)
    var = (swag.sq_mean[member] - swag.theta_bar[member] ** 2).clamp_min(_VAR_CLAMP)
    dev = swag.deviations[member, :k]
    return swag.scale * (torch.diag(var) + dev.T @ dev / (k - 1)) / 2


@pytest.fixture(scope="module")
def fitted():
    """SWAG of a BLR posterior: 8 SGD steps an epoch, a snapshot every 3 steps, K = 10."""
    torch.manual_seed(0)
    swag = _blr_swag(rank=10, swa_start=0.5, swa_lr=0.02, collect_every=3,
                     collect_unit="step", scale=0.5)  # fmt: skip
    swag.fit(blr_data(), epochs=20, lr=0.05, batch_size=5, progress=False, generator=_gen())
    assert int(swag.n_models) > swag.rank  # the ring of deviations has wrapped around
    return swag


def test_collect_matches_moments_of_sgd_iterates_and_the_posterior_mean():
    """The user's own SGD loop with collect() after every step, against brute force."""
    torch.manual_seed(0)
    x, y = blr_data()
    swag = _blr_swag(rank=7)
    opt = torch.optim.SGD(swag.model.parameters(), lr=0.02)
    g = _gen(1)
    iterates = []
    for step in range(1500):
        batch = torch.randint(len(x), (10,), generator=g)
        opt.zero_grad()
        swag.loss(x[batch], y[batch], len(x)).backward()
        opt.step()
        if step >= 300:  # burn-in: 24 relaxation times (lr * curvature = 0.02 * 4)
            swag.collect()
            iterates.append(torch.cat([swag.model.weight.flatten(), swag.model.bias]).detach())
    it = torch.stack(iterates)
    n = len(it)
    running = it.cumsum(0) / torch.arange(1, n + 1, dtype=it.dtype).unsqueeze(1)
    assert int(swag.n_models) == n
    assert_close(swag.theta_bar[0], it.mean(0))
    assert_close(swag.sq_mean[0], (it * it).mean(0))
    # deviations: a ring of the last K columns theta_i - theta_bar_i (running mean at i)
    expected = torch.empty_like(swag.deviations[0])
    for i in range(n - swag.rank, n):
        expected[i % swag.rank] = it[i] - running[i]
    assert_close(swag.deviations[0], expected)
    # the SWA mean is the minimiser of the MAP objective, here the exact posterior mean
    mean, cov = blr_posterior(x, y)
    se = batch_means_se(it)
    assert (se < 0.1 * cov.diagonal().sqrt()).all()  # precise enough to mean something
    assert ((swag.theta_bar[0] - mean).abs() <= Z * se).all(), (swag.theta_bar, mean, se)


def test_sampler_mean_and_covariance_follow_the_swag_formula(fitted):
    n = 40_000
    draws = _flat(fitted.sample_params(n, _gen(3)))
    expected = _swag_covariance(fitted)
    var = fitted.sq_mean[0] - fitted.theta_bar[0] ** 2
    assert (var > 1e6 * _VAR_CLAMP).all()  # the clamp plays no part
    # mean: standard error sqrt(Sigma_ii / n)
    se_mean = (expected.diagonal() / n).sqrt()
    assert ((draws.mean(0) - fitted.theta_bar[0]).abs() <= Z * se_mean).all()
    # covariance of Gaussian draws: Var(hat Sigma_ij) = (Sigma_ii Sigma_jj + Sigma_ij^2) / n
    sd = expected.diagonal().sqrt()
    tol = Z * ((torch.outer(sd, sd) ** 2 + expected**2) / n).sqrt()
    sample_cov = torch.cov(draws.T)
    assert ((sample_cov - expected).abs() <= tol).all(), (sample_cov, expected)
    # power: variances in place of standard deviations in the sampler would be caught
    wrong = expected - fitted.scale * torch.diag(var - var**2) / 2
    assert ((wrong - expected).abs() > 3 * tol).any()


def test_spread_shrinks_with_more_data():
    """Ten times the data: the SWAG predictive variance falls by about ten.

    Theory (Mandt, Hoffman & Blei 2017): near the optimum the SGD iterates have covariance
    Sigma with H Sigma + Sigma H = lr * C * fpc / B, where C is the per-example gradient
    covariance, B the batch size and fpc = (N - B) / (N - 1) the finite-population factor
    of sampling without replacement. Here x ~ N(0, I), so H = C = I / sigma^2 and
    Sigma = lr * fpc / (2 B) I. We keep 10 steps an epoch (B = N / 10, so the dynamics,
    the reshuffling and the snapshots are alike), the same lr and epochs: Sigma falls by
    (200 / 20) * fpc(20) / fpc(200) = 10.5, as the posterior's sigma^2 (A^T A)^-1 does.
    (At a fixed batch size and lr the SGD noise, hence SWAG's spread, does not depend on N:
    scale swa_lr with batch_size / N for SWAG to follow the posterior.)
    Margin: the ratio also depends on the empirical gradient covariance of the 20 points;
    over data seeds 0-4 it ranged from 7 to 35. We require 3, well above "no shrinkage"
    (1) and below every observed value.
    """
    x_test = blr_data(100, seed=9)[0]
    spread = {}
    for n in (20, 200):
        torch.manual_seed(0)
        swag = _blr_swag(swa_start=0.25, swa_lr=0.02)
        swag.fit(blr_data(n), epochs=40, lr=0.05, batch_size=n // 10, progress=False,
                 generator=_gen())  # fmt: skip
        assert int(swag.n_models) == 30  # one snapshot per SWA epoch
        pred = swag.predict(x_test, samples=4000, chunk_size=400_000, generator=_gen(1))
        spread[n] = pred.epistemic_variance
    ratio = spread[20].mean() / spread[200].mean()
    assert ratio > 3, ratio


class _BN(nn.Module):
    """Not a Sequential: Linear - BatchNorm - ReLU - Linear."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.ReLU())
        self.out = nn.Linear(8, 2)

    def forward(self, x):
        return self.out(self.body(x))


def _classification(n=64):
    g = _gen(5)
    x = torch.randn(n, 3, generator=g)
    return x, (x[:, 0] + 0.3 * torch.randn(n, generator=g) > 0).long()


@pytest.mark.parametrize("batchnorm", [False, True])
def test_vectorised_predict_equals_a_loop_over_sampled_weights(batchnorm):
    torch.manual_seed(0)
    model = _BN() if batchnorm else nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))
    x, y = _classification()
    swag = bdl.SWAG(model, rank=3, collect_unit="step", swa_lr=0.05)
    swag.fit((x, y), epochs=4, batch_size=16, progress=False, generator=_gen())
    s = 5
    pred = swag.predict(x[:10], samples=s, chunk_size=10 * s, generator=_gen(2))  # one chunk
    samples = swag.sample_params(s, _gen(2))
    ref = []
    for i in range(s):
        params = {k: v[i] for k, v in samples.items()}
        if batchnorm:  # torch's own BatchNorm refresh on a copy holding the sampled weights
            member = copy.deepcopy(model)
            member.load_state_dict(params, strict=False)
            update_bn([swag.bn_inputs], member)
            out = member.eval()(x[:10])
        else:
            out = functional_call(model, params, (x[:10],))
        ref.append(torch.log_softmax(out, -1))
    assert_close(pred.samples, torch.stack(ref))
    if batchnorm:  # the statistics were refreshed: the model's own ones give other outputs
        plain = functional_call(model, {k: v[0] for k, v in samples.items()}, (x[:10],))
        assert (torch.log_softmax(plain, -1) - ref[0]).abs().max() > 1e-3


def test_batchnorm_model_needs_bn_data_after_load(tmp_path):
    torch.manual_seed(0)
    x, y = _classification()
    swag = bdl.SWAG(_BN(), rank=3, collect_unit="step")
    swag.fit((x, y), epochs=4, batch_size=16, progress=False, generator=_gen())
    pred = swag.predict(x[:10], samples=6, generator=_gen(1))
    path = bdl.save(swag, tmp_path / "swag.safetensors")
    loaded = bdl.load(path, _BN())
    with pytest.raises(ValueError, match="pass bn_data="):
        loaded.predict(x[:10], samples=6)
    again = loaded.predict(x[:10], samples=6, generator=_gen(1), bn_data=swag.bn_inputs)
    assert_close(again.samples, pred.samples)


def test_multiswag_spreads_the_draws_over_its_members():
    """Moments filled by collect() from known iterates; each member's draws follow it."""
    torch.manual_seed(0)
    multi = bdl.MultiSWAG(
        nn.Linear(D, 1).double(), likelihood=bdl.likelihoods.Gaussian(sigma=1.0), members=3, rank=4
    )
    g = _gen(4)
    for member in range(3):
        centre = 5.0 * member
        for _ in range(6):  # 6 snapshots: the ring of 4 deviations wraps around
            with torch.no_grad():
                for p in multi.model.parameters():
                    p.copy_(centre + (member + 1) * 0.1 * torch.randn(p.shape, generator=g))
            multi.collect(member)
    n = 3 * 20_000
    draws = _flat(multi.sample_params(n, _gen(5)))
    for member, group in enumerate(draws.unflatten(0, (3, -1))):  # contiguous groups
        expected = _swag_covariance(multi, member)
        se = (expected.diagonal() / len(group)).sqrt()
        assert ((group.mean(0) - multi.theta_bar[member]).abs() <= Z * se).all()
        sd = expected.diagonal().sqrt()
        tol = Z * ((torch.outer(sd, sd) ** 2 + expected**2) / len(group)).sqrt()
        assert ((torch.cov(group.T) - expected).abs() <= tol).all()
    # predict: the same draws, vectorised; S = 5 is split 2, 2, 1 over the members
    x = torch.randn(7, D, dtype=torch.float64)
    pred = multi.predict(x, samples=5, chunk_size=100, generator=_gen(6))
    params = multi.sample_params(5, _gen(6))
    assert_close(pred.samples, torch.vmap(lambda p: functional_call(multi.model, p, (x,)))(params))
    centres = (_flat(params)[:, -1] / 5).round()  # the bias: about 0, 5, 10 by member
    assert_close(centres, torch.tensor([0.0, 0, 1, 1, 2], dtype=torch.float64))


def test_multiswag_members_start_from_different_initialisations():
    x, y = _classification()
    torch.manual_seed(0)
    multi = bdl.MultiSWAG(nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2)), rank=2)
    report = multi.fit((x, y), epochs=4, batch_size=16, progress=False, generator=_gen())
    assert len(report.losses) == 4 and report.extras["member2_snapshots"] == 2
    gaps = torch.pdist(multi.theta_bar)  # each member's SWA mean sits near its own init
    assert (gaps > 0.3 * multi.theta_bar.norm(dim=1).min()).all(), gaps


def test_errors():
    net = nn.Linear(3, 2)
    with pytest.raises(ValueError, match="rank must be an integer >= 2"):
        bdl.SWAG(net, rank=1)
    with pytest.raises(ValueError, match="members must be a positive integer"):
        bdl.MultiSWAG(net, members=0)
    with pytest.raises(ValueError, match=r"swa_start must lie in \[0, 1\)"):
        bdl.SWAG(net, swa_start=1.0)
    with pytest.raises(ValueError, match="collect_unit must be 'epoch' or 'step'"):
        bdl.SWAG(net, collect_unit="batch")
    swag = bdl.SWAG(net)
    with pytest.raises(RuntimeError, match=r"collected no moments .* call fit"):
        swag.predict(torch.randn(4, 3))
    with pytest.raises(RuntimeError, match="call fit"):
        swag.sample_params(2)
    data = (torch.randn(8, 3), torch.randint(0, 2, (8,)))
    with pytest.raises(ValueError, match="nothing would be collected"):
        bdl.SWAG(net, collect_every=3).fit(data, epochs=4, progress=False)
