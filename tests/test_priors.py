import json
import math

import pytest
import torch
from _policy import Z
from torch.distributions import Laplace as TLaplace
from torch.distributions import Normal as TNormal
from torch.testing import assert_close

from bayesdl import priors


def _params(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"a.weight": torch.randn(3, 4, generator=g, dtype=torch.float64),
            "b.bias": torch.randn(5, generator=g, dtype=torch.float64)}  # fmt: skip


def test_log_probs_equal_torch_distributions():
    p = _params()
    ref = sum(TNormal(0.0, 2.0).log_prob(v).sum() for v in p.values())
    assert_close(priors.Normal(2.0).log_prob(p), ref)
    ref = sum(TLaplace(0.0, 0.3).log_prob(v).sum() for v in p.values())
    assert_close(priors.Laplace(0.3).log_prob(p), ref)
    mix = priors.ScaleMixture(0.25, 1.5, 0.1)
    ref = sum(
        torch.log(
            0.25 * TNormal(0.0, 1.5).log_prob(v).exp() + 0.75 * TNormal(0.0, 0.1).log_prob(v).exp()
        ).sum()
        for v in p.values()
    )
    assert_close(mix.log_prob(p), ref)
    loc = {k: torch.ones_like(v) for k, v in p.items()}
    ref = sum(TNormal(1.0, 0.5).log_prob(v).sum() for v in p.values())
    assert_close(priors.Centered(loc, 0.5).log_prob(p), ref)


def test_per_layer_scales_use_the_longest_prefix():
    p = _params()
    prior = priors.Normal({"": 1.0, "a": 0.1})
    ref = (
        TNormal(0.0, 0.1).log_prob(p["a.weight"]).sum()
        + TNormal(0.0, 1.0).log_prob(p["b.bias"]).sum()
    )
    assert_close(prior.log_prob(p), ref)
    with pytest.raises(ValueError, match="no prior scale for parameter 'b.bias'"):
        priors.Normal({"a": 1.0}).log_prob(p)
    with pytest.raises(ValueError, match="positive"):
        priors.Normal(-1.0)


def test_an_infinite_normal_scale_is_a_flat_prior_on_those_layers():
    p = {k: v.clone().requires_grad_() for k, v in _params().items()}
    prior = priors.Normal({"": math.inf, "a": 0.5})
    assert_close(prior.log_prob(p), TNormal(0.0, 0.5).log_prob(p["a.weight"]).sum())
    prior.log_prob(p).backward()
    assert_close(p["a.weight"].grad, -p["a.weight"].detach() / 0.25)  # d/dw of -w^2 / 2s^2
    assert p["b.bias"].grad is None or not p["b.bias"].grad.any()  # no weight decay
    centered = priors.Centered({k: torch.ones_like(v) for k, v in p.items()}, {"": math.inf})
    assert float(centered.log_prob(p)) == 0.0
    mu = {k: v.detach() for k, v in p.items()}
    sigma = {k: torch.ones_like(v) for k, v in mu.items()}
    for flat in (prior, centered):
        with pytest.raises(
            ValueError, match="parameter '.*' has a flat .* KL divergence is infinite"
        ):
            flat.kl(mu, sigma)
    restored = priors.from_config(json.loads(json.dumps(prior.config())))
    assert_close(restored.log_prob(mu), prior.log_prob(mu))
    for improper in (
        lambda: priors.Laplace(math.inf),
        lambda: priors.ScaleMixture(sigma1=math.inf),
    ):
        with pytest.raises(ValueError, match="positive and finite"):
            improper()
    with pytest.raises(ValueError, match="positive"):
        priors.Normal(math.nan)


@pytest.mark.parametrize(
    "prior",
    [priors.Normal(0.7), priors.Laplace(0.4), priors.Centered({"w": torch.full((200,), 0.3)}, 0.5)],
    ids=["normal", "laplace", "centered"],
)
def test_closed_form_kl_equals_monte_carlo(prior):
    g = torch.Generator().manual_seed(0)
    mu = {"w": torch.randn(200, generator=g, dtype=torch.float64) * 0.5}
    sigma = {"w": torch.rand(200, generator=g, dtype=torch.float64) * 0.5 + 0.05}
    closed = prior.kl(mu, sigma)
    # Monte Carlo: E_q[log q - log p], per weight, with its standard error
    m = 4000
    w = mu["w"] + sigma["w"] * torch.randn(m, 200, generator=g, dtype=torch.float64)
    log_q = TNormal(mu["w"], sigma["w"]).log_prob(w)
    log_p = torch.stack([prior.log_prob_param("w", w[i : i + 1]) for i in range(m)])
    samples = log_q.sum(-1) - log_p
    se = samples.std() / math.sqrt(m)
    assert abs(closed - samples.mean()) <= Z * se


def test_monte_carlo_kl_of_the_scale_mixture_is_unbiased():
    prior = priors.ScaleMixture(0.5, 1.0, 0.05)
    g = torch.Generator().manual_seed(0)
    mu = {"w": torch.randn(50, generator=g, dtype=torch.float64) * 0.3}
    sigma = {"w": torch.full((50,), 0.2, dtype=torch.float64)}
    draws = torch.stack([prior.kl(mu, sigma, generator=g) for _ in range(3000)])
    # reference: numerical integration of KL per weight on a fine grid
    grid = torch.linspace(-3, 3, 20001, dtype=torch.float64)
    q = TNormal(mu["w"][:, None], sigma["w"][:, None])
    log_q = q.log_prob(grid)
    log_p = torch.logaddexp(
        TNormal(0.0, 1.0).log_prob(grid) + math.log(0.5),
        TNormal(0.0, 0.05).log_prob(grid) + math.log(0.5),
    )
    exact = torch.trapezoid(log_q.exp() * (log_q - log_p), grid).sum()
    assert abs(draws.mean() - exact) <= Z * draws.std() / math.sqrt(len(draws))


def test_gamma_precision_is_the_marginal_of_the_two_level_model():
    from scipy import integrate, optimize, stats

    a, b = 1.5, 0.7
    prior = priors.GammaPrecision(a, b)
    # one weight: Student-t with 2a degrees of freedom and scale sqrt(b / a)
    w = torch.tensor([0.3], dtype=torch.float64)
    ref = torch.distributions.StudentT(2 * a, 0.0, math.sqrt(b / a)).log_prob(w).sum()
    assert_close(prior.log_prob_param("x", w), ref)
    # a tensor: integrate prod_i N(w_i | 0, 1/lam) Gamma(lam | a, b) over u = log lam
    # numerically (the integrand divided by its peak, which is put back in log space)
    for v in _params().values():
        x = v.flatten().numpy()

        def log_joint(u, x=x):
            lam = math.exp(u)
            return (
                stats.norm.logpdf(x, 0, lam**-0.5).sum()
                + stats.gamma.logpdf(lam, a, scale=1 / b)
                + u
            )

        peak = -optimize.minimize_scalar(lambda u: -log_joint(u)).fun
        value, err = integrate.quad(
            lambda u, peak=peak: math.exp(log_joint(u) - peak), -30, 30, limit=200
        )
        assert err < 1e-8 * value
        ref = torch.tensor(peak + math.log(value), dtype=v.dtype)
        assert_close(prior.log_prob_param("w", v), ref)


def test_gamma_precision_shrinks_by_the_posterior_mean_precision():
    a, b = 2.0, 3.0
    w = _params()["a.weight"].clone().requires_grad_()
    priors.GammaPrecision(a, b).log_prob({"a.weight": w}).backward()
    mean_precision = (a + w.numel() / 2) / (b + 0.5 * w.detach().square().sum())  # E[lam | w]
    assert_close(w.grad, -mean_precision * w.detach())
    rebuilt = priors.from_config(json.loads(json.dumps(priors.GammaPrecision(a, b).config())))
    assert isinstance(rebuilt, priors.GammaPrecision) and (rebuilt.shape, rebuilt.rate) == (a, b)
    for bad in (dict(shape=0.0), dict(rate=-1.0), dict(rate=math.inf)):
        with pytest.raises(ValueError, match="positive and finite"):
            priors.GammaPrecision(**bad)


def test_fan_in_prior_gives_the_closed_form_prior_predictive_variance():
    """Under ``Normal.fan_in`` a linear unit's prior output variance at x is
    ``scale^2 |x|^2 / fan_in + bias_scale^2``; a conv weight's fan-in counts its kernel."""
    import bayesdl as bdl

    net = torch.nn.Linear(13, 2).double()
    prior = priors.Normal.fan_in(net, scale=0.8, bias_scale=0.5)
    assert prior.scale == {"weight": 0.8 / math.sqrt(13), "bias": 0.5}
    conv = torch.nn.Conv2d(3, 8, 5)
    assert priors.Normal.fan_in(conv).scale["weight"] == pytest.approx(1 / math.sqrt(75))
    x = torch.randn(4, 13, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    n = 20000
    pred = bdl.prior_predictive(bdl.MAP(net, bdl.likelihoods.Gaussian(1.0), prior=prior), x,
                                samples=n, generator=torch.Generator().manual_seed(1))  # fmt: skip
    var = pred.samples.var(0)  # (4, 2)
    exact = (0.8**2 * x.square().sum(1) / 13 + 0.5**2).unsqueeze(1).expand_as(var)
    se = exact * math.sqrt(2 / (n - 1))  # the sample variance of a Gaussian
    assert ((var - exact).abs() <= Z * se).all(), (var, exact)
    with pytest.raises(ValueError, match="positive"):
        priors.Normal.fan_in(net, scale=0.0)
