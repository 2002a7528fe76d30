"""StudentT, Horseshoe and Centered.from_model against closed forms, scipy and Monte Carlo
(tolerances: ``_policy.Z`` Monte Carlo standard errors)."""

import math

import pytest
import torch
from _policy import Z
from scipy import stats
from torch import nn
from torch.testing import assert_close

import bayesdl as bdl
from bayesdl.priors import Centered, Horseshoe, Normal, StudentT, expect_normal


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# -- StudentT --------------------------------------------------------------------------------
def test_student_t_log_density_is_torch_distributions():
    w = torch.randn(7, 5, generator=_gen(), dtype=torch.float64) * 3
    prior = StudentT(df=2.5, scale={"": 0.7, "head": 2.0})
    for name, scale in (("body.weight", 0.7), ("head.weight", 2.0)):
        ref = torch.distributions.StudentT(2.5, 0.0, scale).log_prob(w).sum()
        assert_close(prior.log_prob_param(name, w), ref)


@pytest.mark.parametrize("df,scale", [(1.0, 0.5), (3.0, 1.0), (30.0, 0.1)])
def test_student_t_kl_matches_monte_carlo(df, scale):
    mu = torch.tensor([0.0, 0.3, -2.0, 0.05], dtype=torch.float64)
    sigma = torch.tensor([0.1, 1.0, 0.5, 0.02], dtype=torch.float64)
    kl = StudentT(df, scale).kl_elements("w", mu, sigma)
    n = 400_000
    w = mu + sigma * torch.randn(n, 4, generator=_gen(1), dtype=torch.float64)
    q = torch.distributions.Normal(mu, sigma).log_prob(w)
    p = torch.distributions.StudentT(df, 0.0, scale).log_prob(w)
    terms = q - p
    se = terms.std(0) / math.sqrt(n)
    assert ((kl - terms.mean(0)).abs() <= Z * se + 1e-6).all(), (kl, terms.mean(0), se)


def test_student_t_draws_follow_scipy():
    draws = StudentT(3.0, 0.5).sample_param("w", torch.zeros(20_000), 1, _gen()).flatten()
    p = stats.kstest(draws.numpy(), stats.t(df=3.0, scale=0.5).cdf).pvalue
    assert p > 1e-4
    again = StudentT(3.0, 0.5).sample_param("w", torch.zeros(20_000), 1, _gen()).flatten()
    assert torch.equal(draws, again)  # reproducible under a generator


def test_every_prior_draws_with_its_own_density():
    """KS test of one drawn weight against each prior's CDF (Laplace, mixture, Normal)."""
    like = torch.zeros(10_000, dtype=torch.float64)
    checks = [
        (bdl.priors.Laplace(0.3), stats.laplace(scale=0.3).cdf),
        (Normal(0.4), stats.norm(scale=0.4).cdf),
        (
            bdl.priors.ScaleMixture(0.3, 1.0, 0.1),
            lambda v: 0.3 * stats.norm(scale=1.0).cdf(v) + 0.7 * stats.norm(scale=0.1).cdf(v),
        ),
        # one weight of GammaPrecision is Student-t with 2 shape dof, scale sqrt(rate/shape)
        (bdl.priors.GammaPrecision(2.0, 0.5), stats.t(df=4.0, scale=0.5).cdf),
    ]
    for prior, cdf in checks:
        draws = prior.sample_param("w", like[:1], 10_000, _gen()).flatten()
        assert stats.kstest(draws.numpy(), cdf).pvalue > 1e-4, type(prior).__name__


def test_expect_normal_is_exact_on_a_polynomial():
    loc, scale = torch.tensor([0.5, -1.0]), torch.tensor([2.0, 0.3])
    got = expect_normal(lambda u: u**4, loc, scale)
    exact = loc**4 + 6 * loc**2 * scale**2 + 3 * scale**4
    assert_close(got, exact)


# -- Horseshoe -------------------------------------------------------------------------------
def _bound(prior, net=None):
    net = net or nn.Linear(6, 3)
    return prior.bind(dict(net.named_parameters())), net


def _set_latents(prior, gen):
    with torch.no_grad():
        for p in prior.latents.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=gen, dtype=p.dtype))


@pytest.mark.parametrize("group", ["unit", "weight"])
@pytest.mark.parametrize("slab", [None, 1.5])
def test_horseshoe_joint_density_is_scipy(group, slab):
    prior, net = _bound(Horseshoe(0.7, group=group, slab_scale=slab))
    _set_latents(prior, _gen(2))
    z = {k: v.detach().double() for k, v in prior.latent_values().items()}
    w, b = net.weight.detach().double(), net.bias.detach().double()
    got = prior.log_joint({"weight": w, "bias": b}, z)
    lam, tau = z["weight.local"].exp(), z["weight.global"].exp()
    s = (lam * tau).expand_as(w) if group == "weight" else (lam * tau).expand(3, 6)
    if slab is not None:
        s = slab * s / torch.sqrt(slab**2 + s**2)
    ref = stats.norm(scale=s.numpy()).logpdf(w.numpy()).sum()
    # latent densities on the log scale: log p(lambda) + log lambda (the Jacobian)
    ref += (stats.halfcauchy(scale=1.0).logpdf(lam.numpy()) + z["weight.local"].numpy()).sum()
    ref += stats.halfcauchy(scale=0.7).logpdf(tau.numpy()) + z["weight.global"].numpy()
    ref += stats.norm(scale=1.0).logpdf(b.numpy()).sum()
    assert_close(got, torch.tensor(float(ref), dtype=torch.float64))
    # log_prob is the joint at the prior's own latents
    assert_close(prior.log_prob({"weight": w, "bias": b}).double(), got, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("slab", [None, 2.0])
def test_horseshoe_kl_matches_monte_carlo(slab):
    """``kl_param`` = E_q[log q(w) + log q(z) - log p(w, z)] over weights and log scales."""
    prior, net = _bound(Horseshoe(0.5, group="unit", slab_scale=slab))
    prior.latents.double()
    _set_latents(prior, _gen(3))
    g = _gen(4)
    mu = torch.randn(3, 6, generator=g, dtype=torch.float64) * 0.5
    sigma = torch.rand(3, 6, generator=g, dtype=torch.float64) * 0.3 + 0.05
    kl = prior.kl_param("weight", mu, sigma).detach()
    loc = {k: v.detach() for k, v in prior.latent_values().items()}
    sd = {k: v.detach() for k, v in prior.latent_std().items()}
    n = 200_000
    terms = torch.zeros(n, dtype=torch.float64)
    z = {}
    for k in loc:
        eps = torch.randn(n, *loc[k].shape, generator=g, dtype=torch.float64)
        z[k] = loc[k] + sd[k] * eps
        dims = tuple(range(1, eps.dim()))
        lq = torch.distributions.Normal(loc[k], sd[k]).log_prob(z[k])
        terms += lq.sum(dims) if dims else lq
    w = mu + sigma * torch.randn(n, 3, 6, generator=g, dtype=torch.float64)
    terms += torch.distributions.Normal(mu, sigma).log_prob(w).sum((1, 2))
    # log p(w, z) by hand with torch.distributions (z = log scale, Jacobian e^z)
    zl, zg = z["weight.local"], z["weight.global"]
    lam, tau = zl.exp(), zg.exp()
    s = lam * tau.view(n, 1, 1)
    if slab is not None:
        s = slab * s / torch.sqrt(slab**2 + s**2)
    terms -= torch.distributions.Normal(0.0, s.expand_as(w)).log_prob(w).sum((1, 2))
    terms -= (torch.distributions.HalfCauchy(1.0).log_prob(lam) + zl).sum((1, 2))
    terms -= torch.distributions.HalfCauchy(0.5).log_prob(tau) + zg
    se = terms.std() / math.sqrt(n)
    assert abs(float(kl) - float(terms.mean())) <= Z * float(se), (kl, terms.mean(), se)


def test_horseshoe_draws_follow_the_generative_model():
    """Prior draws of one weight against scipy draws of tau, lambda, w (two-sample KS)."""
    prior, _ = _bound(Horseshoe(0.3, group="weight"), nn.Linear(1, 1))
    draws = prior.sample({"weight": torch.zeros(1, 1)}, 20_000, _gen())["weight"].flatten()
    rng = stats.halfcauchy.rvs
    tau = rng(scale=0.3, size=20_000, random_state=1)
    lam = rng(size=20_000, random_state=2)
    ref = stats.norm.rvs(size=20_000, random_state=3) * lam * tau
    assert stats.ks_2samp(draws.numpy(), ref).pvalue > 1e-4


def test_horseshoe_binds_a_copy_per_method_and_saves_its_latents(tmp_path):
    x = torch.randn(40, 6, generator=_gen())
    y = x[:, :1] * 2 + 0.1 * torch.randn(40, 1, generator=_gen(1))
    hs = Horseshoe(1.0, group="weight")
    a = bdl.MeanFieldVI(nn.Linear(6, 1), bdl.likelihoods.Gaussian(0.1), prior=hs)
    b = bdl.MAP(nn.Linear(6, 1), bdl.likelihoods.Gaussian(0.1), prior=hs)
    assert hs.latents is None and a.prior.latents is not b.prior.latents
    before = {k: v.detach().clone() for k, v in a.prior.latent_values().items()}
    a.fit((x, y), epochs=30, batch_size=40, lr=0.05, progress=False, generator=_gen())
    after = a.prior.latent_values()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # VI trains them
    path = bdl.save(a, tmp_path / "hs.safetensors")
    loaded = bdl.load(path, nn.Linear(6, 1))
    assert isinstance(loaded.prior, Horseshoe) and loaded.prior.config() == a.prior.config()
    for k, v in after.items():
        assert_close(loaded.prior.latent_values()[k], v)
    assert_close(bdl.priors.unit_scales(loaded)["weight"], bdl.priors.unit_scales(a)["weight"])
    assert_close(
        loaded.predict(x[:5], 4, generator=_gen()).samples,
        a.predict(x[:5], 4, generator=_gen()).samples,
    )


def test_student_t_saves_with_the_posterior(tmp_path):
    m = bdl.MAP(nn.Linear(3, 2), prior=StudentT(4.0, {"": 1.0, "weight": 0.5}))
    loaded = bdl.load(bdl.save(m, tmp_path / "t.safetensors"), nn.Linear(3, 2))
    assert loaded.prior.config() == m.prior.config()


def test_unit_scales_without_latent_scales_is_an_error():
    with pytest.raises(ValueError, match="no latent scales"):
        bdl.priors.unit_scales(bdl.MAP(nn.Linear(2, 2)))
    with pytest.raises(TypeError, match="method with a prior"):
        bdl.priors.unit_scales(nn.Linear(2, 2))


# -- Centered.from_model ---------------------------------------------------------------------
def test_centered_from_model_means_and_new_head():
    torch.manual_seed(0)
    old = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 5))
    new = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    prior = Centered.from_model(old, {"": 0.1, "2": 1.0}, exclude=("2",), like=new)
    params = dict(new.named_parameters())
    assert torch.equal(prior.mean("0.weight", params["0.weight"]), old[0].weight.detach())
    assert torch.equal(prior.mean("2.weight", params["2.weight"]), torch.zeros(3, 8))
    # its log density is N(old, 0.1^2) on the body and N(0, 1) on the head
    w = {k: v.detach() for k, v in params.items()}
    ref = sum(
        torch.distributions.Normal(old[0].state_dict()[k], 0.1).log_prob(w["0." + k]).sum()
        for k in ("weight", "bias")
    ) + sum(
        torch.distributions.Normal(0.0, 1.0).log_prob(w["2." + k]).sum() for k in ("weight", "bias")
    )
    assert_close(prior.log_prob(w), ref)


# -- bad input: one line naming the problem --------------------------------------------------
@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: StudentT(0.0), "df must be a positive"),
        (lambda: StudentT(-1.0), "df must be a positive"),
        (lambda: StudentT(3.0, -1.0), "scale must be positive"),
        (lambda: Horseshoe(0.0), "scale_global must be positive"),
        (lambda: Horseshoe(1.0, slab_scale=-2.0), "slab_scale must be positive"),
        (lambda: Horseshoe(1.0, group="layer"), "group must be 'unit' or 'weight'"),
        (
            lambda: bdl.MAP(nn.Linear(2, 2), prior=Normal({"": 1.0, "head": 0.1})),
            "matches no parameter",
        ),
        (
            lambda: bdl.MeanFieldVI(nn.Linear(2, 2), prior=Horseshoe({"": 1.0, "fc": 0.1})),
            "matches no parameter",
        ),
        (lambda: Centered.from_model(nn.Linear(2, 3), exclude=("head",)), "matches no parameter"),
        (
            lambda: Centered.from_model(nn.Linear(2, 3), exclude=(), like=nn.Linear(2, 4)),
            "does not fit",
        ),
        (lambda: Centered.from_model("net"), "must be an nn.Module"),
    ],
)
def test_bad_input_is_a_one_line_error(make, match):
    with pytest.raises((ValueError, TypeError), match=match) as err:
        make()
    assert "\n" not in str(err.value)
