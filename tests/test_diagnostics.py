"""``bdl.diagnostics`` against truth: hand-made predictives with known distances, and
conjugate Bayesian linear regression (tests/_blr.py), whose posterior predictive is known.

Closed forms used (independent of the library): for Gaussians ``N(m1, v1)``, ``N(m2, v2)``,
``W2 = sqrt((m1 - m2)^2 + (sqrt v1 - sqrt v2)^2)`` and
``KL(1 || 2) = 1/2 (log(v2 / v1) + (v1 + (m1 - m2)^2) / v2 - 1)``. The exact BLR predictive
at input ``a = [x, 1]`` is ``N(a^T m, a^T C a + sigma^2)``; mean-field VI's optimum keeps the
means ``m`` and has variances ``1 / diag(Lambda)`` (Bishop, PRML 10.1.2), so its predictive
is ``N(a^T m, sum_i a_i^2 / Lambda_ii + sigma^2)``, narrower than the exact one.

Monte Carlo tolerance (policy in tests/_policy.py): a method's predictive is moment-matched
from S draws, so its mean is off by at most Z standard errors ``sqrt(v_e / S_eff)`` and its
epistemic variance by at most Z ``se(v_e)`` (``v_e sqrt(2 / S)`` for independent Gaussian
draws; from the effective sample size of ``(f - mean)^2`` for NUTS chains). Each measure is a
function of those two numbers per input, so it is bracketed by its minimum and maximum over
that box, computed with the closed forms above on a grid; the test checks that the
library's value lies in the bracket, and that the bracket is narrow enough to tell the exact
posterior from mean-field VI.
"""

import math
import warnings

import pytest
import torch
from _blr import SIGMA, D, S, blr_data, blr_posterior
from _policy import Z
from torch import Tensor, nn
from torch.testing import assert_close

import bayesdl as bdl
from bayesdl import diagnostics
from bayesdl.predictive import CategoricalPredictive, GaussianPredictive


def _cat(probs):
    """A categorical predictive from per-sample probabilities (S, N, C)."""
    return CategoricalPredictive(
        torch.as_tensor(probs, dtype=torch.float64).clamp_min(1e-300).log()
    )


# -- hand-made predictives ----------------------------------------------------------------------
def test_agreement_and_total_variation_on_known_predictives():
    p = _cat([[[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.3, 0.3, 0.4], [0.5, 0.25, 0.25]]])
    q = _cat([[[0.6, 0.4, 0.0], [0.7, 0.3, 0.0], [0.1, 0.1, 0.8], [0.1, 0.8, 0.1]]])
    assert diagnostics.agreement(p, q) == 0.5  # inputs 0 and 2 agree
    # per input 1/2 sum |p - q|: 0.3, 0.5, 0.4, 0.55
    assert diagnostics.total_variation(p, q) == pytest.approx((0.3 + 0.5 + 0.4 + 0.55) / 4)
    assert diagnostics.total_variation(q, p) == diagnostics.total_variation(p, q)


def test_measures_use_the_model_average_not_the_samples():
    """Two confident samples that disagree average to (0.5, 0.5): TV 0 from that average."""
    mixture = _cat([[[1.0 - 1e-12, 1e-12]], [[1e-12, 1.0 - 1e-12]]])
    assert diagnostics.total_variation(mixture, _cat([[[0.5, 0.5]]])) == pytest.approx(0.0)
    assert diagnostics.total_variation(mixture, _cat([[[1.0, 1e-12]]])) == pytest.approx(0.5)


def test_a_predictive_is_at_distance_zero_from_itself():
    g = torch.Generator().manual_seed(0)
    p = CategoricalPredictive(3 * torch.randn(20, 50, 10, generator=g))
    assert diagnostics.total_variation(p, p) == 0.0 and diagnostics.agreement(p, p) == 1.0
    r = GaussianPredictive(torch.randn(20, 50, 2, generator=g), torch.tensor(0.3))
    out = diagnostics.compare(r, r)
    assert out["w2"] == 0.0 and out["kl"] == pytest.approx(0.0, abs=1e-12)
    assert out["variance_ratio"] == pytest.approx(1.0) and out["epistemic_variance_ratio"] == 1.0


def _w2(m1, v1, m2, v2):
    return math.sqrt((m1 - m2) ** 2 + (math.sqrt(v1) - math.sqrt(v2)) ** 2)


def _kl(m1, v1, m2, v2):
    return 0.5 * (math.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1)


def test_gaussian_measures_on_known_predictives():
    """Input 0: approximation N(0, 1 + 3) (means +-1, noise 3) against reference N(1, 1);
    input 1: N(2, 0.5) against N(2, 2). Two outputs, the second identical to the reference."""
    means = torch.tensor([[[-1.0, 5.0], [2.0, 5.0]], [[1.0, 5.0], [2.0, 5.0]]])  # (2, 2, 2)
    noise = torch.tensor([[[3.0, 1.0], [0.5, 1.0]]]).expand(2, 2, 2)
    approx = GaussianPredictive(means, noise)
    ref = GaussianPredictive(torch.tensor([[[1.0, 5.0], [2.0, 5.0]]]),
                             torch.tensor([[[1.0, 1.0], [2.0, 1.0]]]))  # fmt: skip
    w2 = (_w2(0, 4, 1, 1) + _w2(2, 0.5, 2, 2)) / 2
    kl = (_kl(1, 1, 0, 4) + _kl(2, 2, 2, 0.5)) / 2  # KL(reference || approximation)
    ratio = (4 / 1 + 1 + 0.5 / 2 + 1) / 4
    assert diagnostics.wasserstein2(approx, ref) == pytest.approx(w2, rel=1e-6)
    assert diagnostics.gaussian_kl(ref, approx) == pytest.approx(kl, rel=1e-6)
    assert diagnostics.variance_ratio(approx, ref) == pytest.approx(ratio, rel=1e-6)
    out = diagnostics.compare(approx, ref)
    assert out["w2"] == pytest.approx(w2, rel=1e-6) and out["kl"] == pytest.approx(kl, rel=1e-6)
    assert math.isnan(out["epistemic_variance_ratio"])  # the reference has one sample
    with pytest.raises(ValueError, match="zero predictive variance"):
        diagnostics.variance_ratio(approx, ref, epistemic=True)


def test_compare_picks_the_measures_and_refuses_mismatches():
    cat, reg = _cat([[[0.5, 0.5]]]), GaussianPredictive(torch.zeros(1, 1, 1), torch.tensor(1.0))
    assert set(diagnostics.compare(cat, cat)) == {"agreement", "total_variation"}
    assert set(diagnostics.compare(reg, reg)) == {
        "w2", "kl", "variance_ratio", "epistemic_variance_ratio"}  # fmt: skip
    with pytest.raises(TypeError, match="same likelihood"):
        diagnostics.compare(cat, reg)
    with pytest.raises(ValueError, match=r"different inputs .* \(2, 2\) vs \(1, 2\)"):
        diagnostics.compare(_cat([[[0.5, 0.5], [0.1, 0.9]]]), cat)
    with pytest.raises(ValueError, match="different inputs or outputs"):
        diagnostics.compare(_cat([[[0.2, 0.3, 0.5]]]), cat)
    with pytest.raises(TypeError, match="CategoricalPredictive"):
        diagnostics.agreement(reg, reg)
    with pytest.raises(TypeError, match="GaussianPredictive"):
        diagnostics.wasserstein2(cat, cat)


# -- conjugate Bayesian linear regression: the exact posterior predictive ------------------------
def _data(n=40, seed=0):
    """One feature far from 0, so slope and intercept are strongly correlated (about -0.97)
    and the mean-field approximation is visibly off; test inputs on both sides of the data."""
    g = torch.Generator().manual_seed(seed)
    x = 2.0 + 0.5 * torch.randn(n, 1, generator=g, dtype=torch.float64)
    y = 0.7 * x - 0.4 + SIGMA * torch.randn(n, 1, generator=g, dtype=torch.float64)
    return x, y, torch.linspace(-1.0, 5.0, 7, dtype=torch.float64).unsqueeze(-1)


def _exact(x, y, xt):
    """Posterior mean and covariance, and at ``xt`` the exact predictive mean and epistemic
    variance and the epistemic variance of the mean-field optimum."""
    mean, cov = blr_posterior(x, y)
    a = torch.cat([xt, torch.ones(len(xt), 1, dtype=xt.dtype)], 1)
    mf_var = 1 / torch.linalg.inv(cov).diagonal()  # mean-field optimum: 1 / diag(Lambda)
    return mean, cov, a @ mean, ((a @ cov) * a).sum(-1), (a * a) @ mf_var


def _at_mode(method, mean, sd=None):
    """Put a ``Linear(1, 1)`` method's weights at ``mean`` (and VI's sds at ``sd``)."""
    with torch.no_grad():
        method.model.weight.copy_(mean[:1].view(1, 1))
        method.model.bias.copy_(mean[1:])
        if sd is not None:
            method.rho["weight"].copy_(sd[:1].expm1().log().view(1, 1))
            method.rho["bias"].copy_(sd[1:].expm1().log())


def _reference(mu, v_e):
    """A predictive whose moments are exactly N(mu, v_e + sigma^2): two points mu +- sd."""
    sd = v_e.sqrt()
    return GaussianPredictive(torch.stack([mu - sd, mu + sd]).unsqueeze(-1),
                              torch.tensor(SIGMA**2, dtype=torch.float64))  # fmt: skip


def _brackets(mu_err, v_method, v_ref, se_m, se_v):
    """[min, max] of the mean over inputs of W2, KL(ref || method) and the variance ratio
    when each input's mean error lies in ``mu_err +- Z se_m`` and its epistemic variance in
    ``v_method +- Z se_v`` (closed forms on a grid over that box)."""
    t = torch.linspace(-1, 1, 201, dtype=torch.float64)
    dm = (mu_err.unsqueeze(-1) + Z * se_m.unsqueeze(-1) * t).unsqueeze(-1)  # (N, 201, 1)
    vm = (v_method.unsqueeze(-1) + Z * se_v.unsqueeze(-1) * t).clamp_min(0).unsqueeze(-2)
    vm = vm + SIGMA**2  # (N, 1, 201)
    vr = (v_ref + SIGMA**2).view(-1, 1, 1)
    w2 = (dm.square() + (vm.sqrt() - vr.sqrt()).square()).sqrt()
    kl = 0.5 * ((vm / vr).log() + (vr + dm.square()) / vm - 1)
    ratio = (vm / vr).expand_as(kl)
    return {k: (float(v.flatten(1).min(1).values.mean()), float(v.flatten(1).max(1).values.mean()))
            for k, v in {"w2": w2, "kl": kl, "variance_ratio": ratio}.items()}  # fmt: skip


def _inside(measures, brackets):
    for key, (lo, hi) in brackets.items():
        assert lo <= measures[key] <= hi, (key, measures[key], lo, hi)


def test_laplace_is_exact_and_mean_field_vi_is_as_far_as_its_variances_imply():
    x, y, xt = _data()
    mean, cov, mu, v_exact, v_mf = _exact(x, y, xt)
    ref = _reference(mu, v_exact)
    n = 20_000  # iid posterior draws: se of a mean sqrt(v/n), of a variance v sqrt(2/n)
    g = torch.Generator().manual_seed(0)
    lik, prior = bdl.likelihoods.Gaussian(SIGMA), bdl.priors.Normal(S)

    # Laplace with the full GGN at the mode: the exact Gaussian posterior of a linear model
    la = bdl.Laplace(nn.Linear(1, 1).double(), likelihood=lik, prior=prior, subset="all",
                     hessian="full", prior_precision="prior")  # fmt: skip
    la.likelihood.log_sigma.fill_(math.log(SIGMA))
    _at_mode(la, mean)
    la.fit((x, y), epochs=0, progress=False)
    got_la = diagnostics.compare(la.predict(xt, samples=n, generator=g), ref)
    zero = torch.zeros_like(mu)
    b_la = _brackets(zero, v_exact, v_exact, (v_exact / n).sqrt(), v_exact * math.sqrt(2 / n))
    _inside(got_la, b_la)

    # mean-field VI at its optimum (reaching it is tested in methods/test_vi_closed_form.py)
    vi = bdl.MeanFieldVI(nn.Linear(1, 1).double(), likelihood=lik, prior=prior)
    _at_mode(vi, mean, torch.linalg.inv(cov).diagonal().rsqrt())
    got_vi = diagnostics.compare(vi.predict(xt, samples=n, generator=g), ref)
    b_vi = _brackets(zero, v_mf, v_exact, (v_mf / n).sqrt(), v_mf * math.sqrt(2 / n))
    _inside(got_vi, b_vi)
    # its distance in closed form lies in the bracket, and the test tells the two apart
    v_r, v_a = v_exact + SIGMA**2, v_mf + SIGMA**2
    kl_true = float((0.5 * ((v_a / v_r).log() + v_r / v_a - 1)).mean())
    w2_true = float((v_a.sqrt() - v_r.sqrt()).abs().mean())
    assert b_vi["kl"][0] <= kl_true <= b_vi["kl"][1]
    assert b_vi["w2"][0] <= w2_true <= b_vi["w2"][1]
    assert b_vi["w2"][0] > 5 * b_la["w2"][1] and b_vi["kl"][0] > 5 * b_la["kl"][1]


def test_nuts_reference_is_within_monte_carlo_error_of_the_exact_predictive():
    pytest.importorskip("pyro")
    from pyro.ops.stats import effective_sample_size

    x, y, xt = _data()
    _, _, mu, v_exact, v_mf = _exact(x, y, xt)
    torch.manual_seed(0)
    chains, draws = 2, 200
    hmc, pred, report = diagnostics.nuts_reference(
        nn.Linear(1, 1).double(), (x, y), xt, likelihood=bdl.likelihoods.Gaussian(SIGMA),
        prior=bdl.priors.Normal(S), chains=chains, draws=draws, warmup=100, init_epochs=0,
        max_tree_depth=6, full_mass=True, generator=torch.Generator().manual_seed(1),
    )  # fmt: skip
    worst = max(report.max_r_hat_predictions, report.max_r_hat_weight_invariants)
    assert report.converged == (worst <= 1.01)
    assert report.max_r_hat_predictions < 1.05 and report.max_r_hat_weight_invariants < 1.05
    assert report.chains == chains and pred.num_samples == chains * draws
    assert report.divergences == 0 and report.extras["n_params"] == 2
    f = pred.samples.squeeze(-1).unflatten(0, (chains, draws))  # (chains, draws, N)
    f_mean = f.flatten(0, 1).mean(0)
    se_m = f.flatten(0, 1).std(0) / effective_sample_size(f).sqrt()
    sq = (f - f_mean).square()
    se_v = sq.flatten(0, 1).std(0) / effective_sample_size(sq).sqrt()
    got = diagnostics.compare(pred, _reference(mu, v_exact))
    b_nuts = _brackets(torch.zeros_like(mu), v_exact, v_exact, se_m, se_v)
    _inside(got, b_nuts)
    b_vi = _brackets(torch.zeros_like(mu), v_mf, v_exact, 0 * mu, 0 * mu)
    assert b_nuts["kl"][1] < b_vi["kl"][0]  # precise enough to tell NUTS from VI


def _mlp_draws(n: int, g: torch.Generator, perm: Tensor | None = None) -> dict[str, Tensor]:
    """n iid draws of a 3-5-2 MLP's weights whose hidden units have distinct means; with
    ``perm``, the same distribution with the hidden units relabelled."""
    scale = torch.arange(1.0, 6.0)  # unit j's weights are centred at j
    draws = {
        "0.weight": scale[:, None] + 0.3 * torch.randn(n, 5, 3, generator=g),
        "0.bias": scale + 0.3 * torch.randn(n, 5, generator=g),
        "2.weight": scale[None, :] + 0.3 * torch.randn(n, 2, 5, generator=g),
        "2.bias": 0.3 * torch.randn(n, 2, generator=g),
    }  # fmt: skip
    return draws if perm is None else _relabel(draws, perm)


def _relabel(draws: dict[str, Tensor], perm: Tensor) -> dict[str, Tensor]:
    """The 3-5-2 MLP's draws with hidden unit ``perm[j]`` moved to position j."""
    return {
        "0.weight": draws["0.weight"][:, perm], "0.bias": draws["0.bias"][:, perm],
        "2.weight": draws["2.weight"][:, :, perm], "2.bias": draws["2.bias"],
    }  # fmt: skip


def test_weight_invariants_are_unchanged_by_permuting_units_and_see_other_changes():
    g = torch.Generator().manual_seed(0)
    draws = _mlp_draws(3, g)
    perm = torch.tensor([3, 0, 4, 1, 2])
    permuted = _relabel(draws, perm)
    net = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    x = torch.randn(7, 3, generator=g)
    outs = [torch.func.functional_call(net, {k: v[0] for k, v in d.items()}, (x,))
            for d in (draws, permuted)]  # fmt: skip
    torch.testing.assert_close(outs[0], outs[1])  # the same function: a true symmetry
    inv = diagnostics.weight_invariants(draws)
    # per draw: 5 + 3 (first weight), 5 (its bias), 2 + 5 (second weight), 2 (its bias)
    assert inv.shape == (3, 22)
    torch.testing.assert_close(diagnostics.weight_invariants(permuted), inv)
    # the first unit's incoming norm, by hand, is among the first layer's sorted norms
    assert torch.isclose(inv[0, :5], draws["0.weight"][0, 0].norm()).any()
    changed = dict(draws, **{"0.bias": 2 * draws["0.bias"]})
    assert not torch.allclose(diagnostics.weight_invariants(changed), inv)
    with pytest.raises(ValueError, match=r"draws\['b'\] must have shape"):
        diagnostics.weight_invariants({"b": torch.zeros(3)})


def test_weight_invariants_r_hat_sees_through_permuted_chains_but_not_different_ones():
    pytest.importorskip("pyro")
    from bayesdl.methods.hmc import chain_stats

    g, n = torch.Generator().manual_seed(1), 2000
    perm = torch.tensor([4, 3, 2, 1, 0])

    def r_hats(chains: list[dict[str, Tensor]]) -> tuple[float, float]:
        raw = torch.stack([torch.cat([v.flatten(1) for v in c.values()], 1) for c in chains])
        inv = torch.stack([diagnostics.weight_invariants(c) for c in chains])
        return float(chain_stats(raw)[0].max()), float(chain_stats(inv)[0].max())

    # two chains of one distribution, the second in the permuted (equivalent) mode
    raw, inv = r_hats([_mlp_draws(n, g), _mlp_draws(n, g, perm)])
    assert raw > 2.0  # per-weight R-hat cannot tell equivalent modes from no mixing
    # iid draws in 4 half-chains of m = 1000: R-hat ~ 1 + (F - 1) / (2m), F ~ chi2_3 / 3,
    # whose 99.9% point over 22 quantities is ~1.003: 1.01 is far outside the noise
    assert inv < 1.01
    # a chain of another distribution (weights 20% larger) is caught
    other = {k: 1.2 * v for k, v in _mlp_draws(n, g, perm).items()}
    assert r_hats([_mlp_draws(n, g), other])[1] > 1.05


def test_nuts_reference_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match=r"5000 training examples x 10000 network parameters"):
        diagnostics.check_nuts_size(5000, 10_000)
    diagnostics.check_nuts_size(100, 100)
    big = torch.utils.data.TensorDataset(torch.zeros(3000, 100), torch.zeros(3000, 1))
    for data in (big, torch.utils.data.DataLoader(big, batch_size=500)):  # 6 batches, 3000 rows
        with pytest.raises(ValueError, match=r"3000 training examples x 10201 network"):
            diagnostics.nuts_reference(nn.Linear(100, 101), data, torch.zeros(1, 100))
    with pytest.raises(ValueError, match="at least 2"):
        diagnostics.nuts_reference(nn.Linear(2, 1), (torch.zeros(4, 2), torch.zeros(4, 1)),
                                   torch.zeros(1, 2), chains=1)  # fmt: skip


# -- vi_summary ------------------------------------------------------------------------------
def _two_layer_vi(prior_scale=1.0):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1)).double()
    return bdl.MeanFieldVI(net, likelihood=bdl.likelihoods.Gaussian(SIGMA),
                           prior=bdl.priors.Normal(prior_scale))  # fmt: skip


def test_a_layer_at_the_prior_has_collapsed_and_warns():
    vi = _two_layer_vi(prior_scale=0.7)
    with torch.no_grad():  # layer "0" exactly at the prior N(0, 0.7^2)
        for name in ("0.weight", "0.bias"):
            vi.model.get_parameter(name).zero_()
            vi.rho[name.replace(".", "__")].fill_(math.log(math.expm1(0.7)))
    with pytest.warns(UserWarning, match=r"layer '0': 100% of its 16 weights .* the KL term"):
        summary = diagnostics.vi_summary(vi)
    assert list(summary) == ["0", "2"]
    s0 = summary["0"]
    assert s0.collapsed_fraction == 1.0 and s0.n_weights == 16
    assert s0.mean_kl == pytest.approx(0.0, abs=1e-12)
    assert s0.mean_sigma == pytest.approx(0.7) and s0.prior_sigma == pytest.approx(0.7)
    assert all(v == 0.0 for v in s0.snr_quantiles.values())


def test_a_fitted_layer_has_not_collapsed_and_its_numbers_are_the_closed_forms():
    """BLR at the mean-field optimum: every weight is far narrower than the prior."""
    x, y = blr_data()
    mean, cov = blr_posterior(x, y)
    sd = torch.linalg.inv(cov).diagonal().rsqrt()
    torch.manual_seed(0)
    vi = bdl.MeanFieldVI(nn.Linear(D, 1).double(), likelihood=bdl.likelihoods.Gaussian(SIGMA),
                         prior=bdl.priors.Normal(S))  # fmt: skip
    with torch.no_grad():
        vi.model.weight.copy_(mean[:D].view(1, D))
        vi.model.bias.copy_(mean[D:])
        vi.rho["weight"].copy_(sd[:D].expm1().log().view(1, D))
        vi.rho["bias"].copy_(sd[D:].expm1().log())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        summary = diagnostics.vi_summary(vi)
    (s,) = summary.values()
    kl = 0.5 * ((S**2 / sd**2).log() + (sd**2 + mean**2) / S**2 - 1)  # per weight, by hand
    assert s.collapsed_fraction == 0.0 and s.n_weights == D + 1
    assert s.mean_kl == pytest.approx(float(kl.mean()), rel=1e-9)
    assert s.mean_sigma == pytest.approx(float(sd.mean()), rel=1e-6)
    assert s.prior_sigma == S
    snr = torch.quantile(mean.abs() / sd, torch.tensor(diagnostics.SNR_QUANTILES).double())
    assert_close(torch.tensor(list(s.snr_quantiles.values())).double(), snr, rtol=1e-6, atol=0)
    # a threshold above every weight's KL counts them all as collapsed
    with pytest.warns(UserWarning, match="100%"):
        assert (
            diagnostics.vi_summary(vi, threshold=float(kl.max()) * 1.01)[""].collapsed_fraction == 1
        )


def test_vi_summary_refuses_methods_without_a_per_weight_gaussian():
    with pytest.raises(TypeError, match="per-weight Gaussian posterior .* got MAP"):
        diagnostics.vi_summary(bdl.MAP(nn.Linear(2, 1)))
    with pytest.raises(TypeError, match="got Laplace"):
        diagnostics.vi_summary(bdl.Laplace(nn.Linear(2, 1)))
    vi = _two_layer_vi()
    with pytest.raises(ValueError, match="threshold"):
        diagnostics.vi_summary(vi, threshold=0)
    with pytest.raises(ValueError, match="warn_fraction"):
        diagnostics.vi_summary(vi, warn_fraction=2)
    vi.prior = bdl.priors.ScaleMixture()
    with pytest.raises(NotImplementedError, match="per-weight KL"):
        diagnostics.vi_summary(vi)


def test_per_weight_kl_and_prior_std_of_the_priors():
    """``kl_elements`` sums to ``kl_param``; ``marginal_std`` is the distribution's sd."""
    g = torch.Generator().manual_seed(0)
    mu, sigma = torch.randn(3, 4, generator=g).double(), torch.rand(3, 4, generator=g).double()
    for prior in (bdl.priors.Normal({"": 1.0, "a": 0.3}), bdl.priors.Laplace(0.5),
                  bdl.priors.Centered({"a.weight": torch.randn(3, 4, generator=g)}, 0.4)):  # fmt: skip
        per = prior.kl_elements("a.weight", mu, sigma)
        assert per.shape == mu.shape and (per >= 0).all()
        assert_close(per.sum(), prior.kl_param("a.weight", mu, sigma))
    assert bdl.priors.Normal({"": 1.0, "a": 0.3}).marginal_std("a.weight") == 0.3
    lap = torch.distributions.Laplace(0.0, 0.5)
    assert bdl.priors.Laplace(0.5).marginal_std("w") == pytest.approx(float(lap.stddev))
    # scale mixture: sd of a two-component mixture, by numerical integration of w^2 p(w)
    mix = bdl.priors.ScaleMixture(0.25, 2.0, 0.1)
    w = torch.linspace(-30, 30, 600_001, dtype=torch.float64)
    p = 0.25 * torch.distributions.Normal(0.0, 2.0).log_prob(w).exp() + 0.75 * (
        torch.distributions.Normal(0.0, 0.1).log_prob(w).exp()
    )
    var = torch.trapezoid(w * w * p, w)
    assert mix.marginal_std("w") == pytest.approx(float(var.sqrt()), rel=1e-6)


# -- bayesdl evaluate --reference hmc --------------------------------------------------------
def test_evaluate_reference_refuses_data_too_large_for_nuts(tmp_path, capsys):
    pytest.importorskip("sklearn")
    from bayesdl.cli import main

    code = main(["evaluate", "--dataset", "digits", "--ood", "noise", "--methods", "map",
                 "--reference", "hmc", "--no-progress", "--out", str(tmp_path / "o")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "1347 training examples x 22474 network parameters" in err and "--train-size" in err
    assert not (tmp_path / "o").exists()  # refused before anything was trained or written


def test_evaluate_reference_adds_the_distance_columns(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    pytest.importorskip("pyro")
    from bayesdl.cli import main

    # a tiny NUTS run: this checks the plumbing; the measures are checked above
    monkeypatch.setattr(diagnostics, "REFERENCE_NUTS",
                        {"chains": 2, "draws": 4, "warmup": 2, "max_tree_depth": 2})  # fmt: skip
    out = tmp_path / "o"
    assert main(["evaluate", "--dataset", "digits", "--ood", "noise", "--methods", "map,vi",
                 "--epochs", "1", "--train-size", "30", "--test-size", "12", "--samples", "4",
                 "--reference", "hmc", "--no-progress", "--out", str(out)]) == 0  # fmt: skip
    import json

    results = json.loads((out / "metrics.json").read_text())
    assert results["reference"]["chains"] == 2 and results["reference"]["draws"] == 4
    for row in results["methods"].values():
        assert 0 <= row["ref_agreement"] <= 1 and 0 <= row["ref_total_variation"] <= 1
    assert "Distance to a NUTS reference posterior" in (out / "report.html").read_text()


def test_evaluate_refuses_a_full_batch_method_on_data_too_large_for_nuts(tmp_path, capsys):
    # `bayesdl evaluate --methods hmc` on a data set NUTS cannot sample is named, not run
    pytest.importorskip("sklearn")
    from bayesdl.cli import main

    code = main(["evaluate", "--dataset", "digits", "--ood", "noise", "--methods", "map,hmc",
                 "--no-progress", "--out", str(tmp_path / "o")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "too large for method 'hmc' (NUTS): 1347 training examples x 22474" in err
    assert not (tmp_path / "o").exists()


def test_chain_stats_in_blocks_equal_pyros_and_find_independent_draws():
    # Pyro's ESS takes memory quadratic in the chain length per quantity; chain_stats takes
    # the quantities in blocks, which must not change a number
    pytest.importorskip("pyro")
    from pyro.ops.stats import effective_sample_size, split_gelman_rubin

    from bayesdl.methods.hmc import chain_stats

    g = torch.Generator().manual_seed(0)
    noise = torch.randn(4, 400, 7, generator=g, dtype=torch.float64)
    ar = noise.clone()  # AR(1) chains with rho = 0.9: ESS well below the draws
    for t in range(1, ar.shape[1]):
        ar[:, t] = 0.9 * ar[:, t - 1] + noise[:, t]
    for draws in (noise, ar):
        r, ess = chain_stats(draws, max_bytes=1)  # one quantity per block
        assert_close(r, split_gelman_rubin(draws))
        assert_close(ess, effective_sample_size(draws))
    # truth: independent draws have ESS ~ 1,600; AR(1) with rho 0.9 has (1 - rho) / (1 + rho)
    # of it, ~84 (loose bounds: the estimator's own spread at these lengths is ~10-20%)
    assert (chain_stats(noise)[1] > 1200).all() and (chain_stats(ar)[1] < 160).all()
