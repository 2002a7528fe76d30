"""Laplace approximation against exact answers.

On conjugate Bayesian linear regression (tests/_blr.py) the GGN of ``nn.Linear(D, 1)`` with
a Gaussian likelihood is the exact Hessian ``A^T A / sigma^2`` at every weight, so the
posterior covariance does not depend on the optimiser (tolerance: float64 rounding), and
the MAP is the posterior mean (tolerance: LBFGS convergence). KFAC with one output is
exact there too. On non-linear models the GGN and the KFAC factors are checked against
brute-force loops over examples (``torch.autograd.functional.jacobian``).
"""

import math

import pytest
import torch
from _blr import SIGMA, D, N, S, blr_data, blr_posterior
from _policy import Z
from torch import nn
from torch.autograd.functional import jacobian
from torch.nn import functional as F
from torch.testing import assert_close

import bayesdl as bdl
from bayesdl.methods.laplace import GRID


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _blr_laplace(hessian="full", prior_scale=S, prior_precision="prior", **kw):
    torch.manual_seed(0)
    la = bdl.Laplace(
        nn.Linear(D, 1), likelihood=bdl.likelihoods.Gaussian(SIGMA),
        prior=bdl.priors.Normal(prior_scale), subset="all", hessian=hessian,
        prior_precision=prior_precision, **kw,
    ).double()  # fmt: skip
    la.likelihood.log_sigma.fill_(math.log(SIGMA))  # stored in float32 at construction
    return la


def _lbfgs_map(la, x, y):
    """The user's own training loop on ``loss``: full-batch LBFGS to convergence."""
    params = list(la.model.parameters())
    opt = torch.optim.LBFGS(params, max_iter=200, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-13, tolerance_change=1e-15)  # fmt: skip

    def closure():
        opt.zero_grad()
        loss = la.loss(x, y, len(x))
        loss.backward()
        return loss

    opt.step(closure)


def _flat(la):
    return torch.cat([p.detach().flatten() for p in la.mean().values()])


@pytest.mark.parametrize("hessian", ["full", "kfac"])
def test_blr_posterior_is_exact(hessian):
    """Full GGN, and KFAC of one Linear layer with one output, give the exact posterior."""
    x, y = blr_data()
    mean, cov = blr_posterior(x, y)
    la = _blr_laplace(hessian)
    _lbfgs_map(la, x, y)
    report = la.fit((x, y), epochs=0, progress=False)  # post hoc on the trained model
    assert report.n_data == N and report.extras["prior_precision"] == 1 / S**2
    assert_close(_flat(la), mean, rtol=1e-7, atol=1e-9)  # LBFGS convergence
    assert_close(la.posterior_covariance(), cov, rtol=1e-10, atol=1e-14)  # rounding only
    assert_close(la.posterior_precision(), torch.linalg.inv(cov), rtol=1e-10, atol=1e-10)
    draws = la.sample_params(3, _gen())
    assert draws["weight"].shape == (3, 1, D) and draws["bias"].shape == (3, 1)


def test_fit_trains_the_map_then_the_posterior():
    """``fit`` with epochs: full-batch gradient descent on a quadratic converges linearly
    (step 0.1 < 2 / largest Hessian eigenvalue of the per-example loss, about 5)."""
    x, y = blr_data()
    mean, cov = blr_posterior(x, y)
    la = _blr_laplace()
    la.fit((x, y), epochs=400, lr=0.1, batch_size=N, optimizer=torch.optim.SGD, progress=False)
    assert_close(_flat(la), mean, rtol=1e-8, atol=1e-10)
    assert_close(la.posterior_covariance(), cov, rtol=1e-10, atol=1e-14)


def test_diag_precision_is_the_diagonal_of_lambda():
    x, y = blr_data()
    _, cov = blr_posterior(x, y)
    la = _blr_laplace("diag")
    _lbfgs_map(la, x, y)
    la.fit_posterior((x, y), progress=False)
    lam = torch.linalg.inv(cov)
    assert_close(la.posterior_precision(), torch.diag(lam.diagonal()), rtol=1e-10, atol=1e-12)
    assert_close(la.posterior_covariance(), torch.diag(1 / lam.diagonal()), rtol=1e-10, atol=0)


def _evidence(x, y, deltas):
    """Closed-form BLR log evidence ``log N(y | 0, sigma^2 I + A A^T / delta)`` per delta."""
    a = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    mu, u = torch.linalg.eigh(a @ a.T)
    proj = (u.T @ y.squeeze(-1)) ** 2
    var = SIGMA**2 + mu.clamp_min(0) / deltas.unsqueeze(-1)  # (G, N)
    return -0.5 * (var.log() + proj / var).sum(-1) - 0.5 * len(x) * math.log(2 * math.pi)


def test_log_marginal_likelihood_is_the_blr_evidence():
    x, y = blr_data()
    la = _blr_laplace()
    _lbfgs_map(la, x, y)
    la.fit_posterior((x, y), progress=False)
    exact = _evidence(x, y, torch.tensor([1 / S**2], dtype=x.dtype))[0]
    assert_close(la.log_marginal_likelihood(), exact, rtol=1e-12, atol=1e-10)


def test_marglik_finds_the_evidence_maximising_precision():
    """MacKay's evidence procedure: MAP at delta, tune delta by the Laplace evidence,
    repeat. At its fixed point the gradient of the Laplace evidence is that of the exact
    evidence (envelope theorem), so delta is the closed-form evidence's maximiser, found
    here on a grid of spacing 1e-3 in log delta (tolerance: half a step)."""
    x, y = blr_data()
    delta = 1.0
    for _ in range(30):
        la = _blr_laplace(prior_scale=delta**-0.5, prior_precision="marglik")
        _lbfgs_map(la, x, y)
        new = la.fit_posterior((x, y), progress=False).extras["prior_precision"]
        converged, delta = abs(math.log(new / delta)) < 1e-9, new
        if converged:
            break
    assert converged
    log_grid = torch.arange(-3, 3, 1e-3, dtype=torch.float64)
    best = log_grid[_evidence(x, y, log_grid.exp()).argmax()]
    assert 0.0 < delta < 1.0  # the grid optimum is inside, not at the start value
    assert abs(math.log(delta) - best) <= 0.5e-3 + 1e-9


def test_glm_regression_predictive_is_the_blr_predictive():
    """Closed form: mean x^T m, variance x^T Sigma x + sigma^2 (``glm_moments``). Sampled:
    mean and variance of S draws within Z standard errors (variance of a Gaussian sample
    variance: 2 v^2 / S)."""
    x, y = blr_data()
    mean, cov = blr_posterior(x, y)
    la = _blr_laplace("kfac")
    _lbfgs_map(la, x, y)
    la.fit_posterior((x, y), progress=False)
    xt = torch.linspace(-4, 4, 9, dtype=x.dtype).unsqueeze(-1).expand(-1, D)
    a = torch.cat([xt, torch.ones(9, 1, dtype=x.dtype)], 1)
    epistemic = ((a @ cov) * a).sum(-1)
    f, fcov = la.glm_moments(xt)
    assert_close(f.squeeze(-1), a @ mean, rtol=1e-7, atol=1e-9)
    assert_close(fcov[:, 0, 0] + SIGMA**2, epistemic + SIGMA**2, rtol=1e-10, atol=1e-14)
    s = 4000
    pred = la.predict(xt, samples=s, generator=_gen())
    assert_close(pred.aleatoric_variance.squeeze(-1), torch.full((9,), SIGMA**2).double())
    assert ((pred.mean.squeeze(-1) - a @ mean).abs() <= Z * (epistemic / s).sqrt()).all()
    se_var = epistemic * math.sqrt(2 / s)
    assert ((pred.epistemic_variance.squeeze(-1) - epistemic).abs() <= Z * se_var).all()


def test_learned_noise_enters_the_ggn():
    x, y = blr_data()
    torch.manual_seed(0)
    la = bdl.Laplace(nn.Linear(D, 1), likelihood=bdl.likelihoods.Gaussian(), subset="all",
                     hessian="full", prior_precision=2.0).double()  # fmt: skip
    la.fit((x, y), epochs=300, lr=0.05, batch_size=N, progress=False)
    sigma = la.likelihood.sigma.item()
    assert 0.3 < sigma < 0.7  # learned, near the true 0.5
    a = torch.cat([x, torch.ones(N, 1, dtype=x.dtype)], 1)
    expected = a.T @ a / sigma**2 + 2.0 * torch.eye(D + 1, dtype=x.dtype)
    assert_close(la.posterior_precision(), expected, rtol=1e-10, atol=1e-10)


def _mlp(out=3, dtype=torch.float64):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 5), nn.Tanh(), nn.Linear(5, 4), nn.Tanh(),
                         nn.Linear(4, out)).to(dtype)  # fmt: skip


def _classes(n=30, dtype=torch.float64):
    g = _gen(3)
    x = torch.randn(n, 2, generator=g, dtype=dtype)
    return x, torch.randint(0, 3, (n,), generator=g)


def _brute_ggn(model, names, x, loss_hessian):
    """``sum_n J_n^T Lambda_n J_n`` with one ``jacobian`` call per example."""
    params = dict(model.named_parameters())
    theta = torch.cat([params[n].detach().flatten() for n in names])
    sizes = [params[n].numel() for n in names]

    def f(flat, xi):
        p = {n: t.view_as(params[n]) for n, t in zip(names, flat.split(sizes), strict=True)}
        return torch.func.functional_call(model, p, (xi.unsqueeze(0),)).squeeze(0)

    ggn = 0
    for xi in x:
        j = jacobian(lambda t, xi=xi: f(t, xi), theta)
        ggn = ggn + j.T @ loss_hessian(f(theta, xi).detach()) @ j
    return ggn


def _softmax_hessian(logits):
    p = logits.softmax(-1)
    return torch.diag(p) - torch.outer(p, p)


def test_full_ggn_of_an_mlp_matches_brute_force():
    model = _mlp()
    x, y = _classes()
    la = bdl.Laplace(model, subset="all", hessian="full", prior_precision=0.5)
    la.fit((x, y), epochs=0, batch_size=7, progress=False)  # several batches
    names = [n for n, _ in model.named_parameters()]
    expected = _brute_ggn(model, names, x, _softmax_hessian) + 0.5 * torch.eye(la.num_params)
    assert_close(la.posterior_precision(), expected, rtol=1e-9, atol=1e-11)


def _kfac_dense(a_mat, g_mat, out, fan_in):
    """``G kron A`` on [W | b] row-major, reordered to (weight, bias) parameter order."""
    idx = torch.arange(out * (fan_in + 1)).view(out, fan_in + 1)
    order = torch.cat([idx[:, :fan_in].flatten(), idx[:, fan_in]])
    return torch.kron(g_mat.contiguous(), a_mat.contiguous())[order][:, order]


def test_kfac_factors_of_a_classifier_match_brute_force():
    """Last layer of an MLP classifier: A = mean of [h, 1][h, 1]^T over inputs, G = sum of
    the softmax Hessians (the last layer's output is the network's output)."""
    model = _mlp()
    x, y = _classes()
    la = bdl.Laplace(model, prior_precision=0.5)  # last layer, KFAC
    la.fit((x, y), epochs=0, batch_size=7, progress=False)
    with torch.no_grad():
        h = torch.cat([model[:4](x), torch.ones(len(x), 1, dtype=x.dtype)], 1)
        g_mat = sum(_softmax_hessian(o) for o in model(x))
    expected = _kfac_dense(h.T @ h / len(x), g_mat, 3, 4) + 0.5 * torch.eye(15)
    assert_close(la.posterior_precision(), expected, rtol=1e-9, atol=1e-11)


def test_kfac_conv_factors_match_brute_force():
    """Conv2d (weight sharing over T = 4 positions): A = sum of unfolded patches [a, 1]
    [a, 1]^T / (N T); G = sum over examples and positions of g g^T with g the gradient of
    the logits w.r.t. the conv output, contracted with the softmax Hessian."""
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 2, padding=1, stride=2)
    model = nn.Sequential(conv, nn.Tanh(), nn.Flatten(), nn.Linear(12, 3)).double()
    g = _gen(4)
    x, y = torch.randn(6, 2, 3, 3, generator=g).double(), torch.randint(0, 3, (6,), generator=g)
    la = bdl.Laplace(model, subset=["0"], prior_precision=1.0)
    la.fit((x, y), epochs=0, batch_size=4, progress=False)
    a_sum, g_sum = 0, 0
    for xi in x:
        patches = F.unfold(xi.unsqueeze(0), 2, padding=1, stride=2)[0].T  # (T, 8)
        patches = torch.cat([patches, torch.ones(4, 1, dtype=x.dtype)], 1)
        a_sum = a_sum + patches.T @ patches
        s = conv(xi.unsqueeze(0)).detach()
        j = jacobian(lambda t: model[1:](t).squeeze(0), s).reshape(3, 3, 4)  # (K, out, T)
        lam = _softmax_hessian(model(xi.unsqueeze(0))[0].detach())
        g_sum = g_sum + torch.einsum("kot,kl,lpt->op", j, lam, j)
    expected = _kfac_dense(a_sum / (6 * 4), g_sum, 3, 8) + torch.eye(27)
    assert_close(la.posterior_precision(), expected, rtol=1e-9, atol=1e-11)


def test_kfac_conv_with_one_position_is_the_exact_ggn():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 1, 3), nn.Flatten()).double()  # a linear model, T = 1
    g = _gen(5)
    x = torch.randn(20, 2, 3, 3, generator=g).double()
    y = torch.randn(20, 1, generator=g).double()
    fits = []
    for hessian in ("kfac", "full"):
        la = bdl.Laplace(model, likelihood=bdl.likelihoods.Gaussian(0.3), subset="all",
                         hessian=hessian, prior_precision=1.0).double()  # fmt: skip
        la.fit((x, y), epochs=0, progress=False)
        fits.append(la.posterior_precision())
    assert_close(fits[0], fits[1], rtol=1e-10, atol=1e-10)


def test_linear_model_nn_and_glm_predictives_coincide():
    """A linear model equals its linearisation: with the same draws the "nn" and "glm"
    outputs are identical (stronger than agreement within Monte Carlo error)."""
    x, y = _classes()
    preds = []
    for pred_type in ("nn", "glm"):
        torch.manual_seed(0)
        la = bdl.Laplace(nn.Linear(2, 3).double(), subset="all", hessian="full",
                         pred_type=pred_type, prior_precision=1.0)  # fmt: skip
        la.fit((x, y), epochs=0, progress=False)
        preds.append(la.predict(x, samples=50, generator=_gen()).samples)
    assert_close(preds[0], preds[1], rtol=1e-10, atol=1e-12)


def test_glm_samples_follow_the_linearised_gaussian():
    """Non-linear MLP: sampled glm logits follow N(f(x), J Sigma J^T) of ``glm_moments``.

    The predictive keeps log-softmax outputs, so logit differences (shift-invariant) are
    compared: mean and variance within Z standard errors (var of a Gaussian sample
    variance: 2 v^2 / S)."""
    model = _mlp()
    x, y = _classes()
    la = bdl.Laplace(model, subset="all", hessian="diag", prior_precision=1.0)
    la.fit((x, y), epochs=0, progress=False)
    s = 4000
    logp = la.predict(x[:5], samples=s, generator=_gen()).samples
    f, cov = la.glm_moments(x[:5])
    with torch.no_grad():
        assert_close(f, model(x[:5]))
    for k in (1, 2):
        diff = logp[..., 0] - logp[..., k]
        var = cov[:, 0, 0] + cov[:, k, k] - 2 * cov[:, 0, k]
        assert ((diff.mean(0) - (f[:, 0] - f[:, k])).abs() <= Z * (var / s).sqrt()).all()
        assert ((diff.var(0) - var).abs() <= Z * var * math.sqrt(2 / s)).all()


def test_gridsearch_picks_the_best_closed_form_validation_nll():
    """Training inputs have x2 = 0, so w2 stays at its prior; validation inputs have x2 = 1
    and true w2 = 1: too large a precision is overconfident, too small too vague. The grid
    search (closed-form glm predictive) must pick the grid value minimising the exact
    BLR predictive NLL N(y | a^T m, a^T Sigma(delta) a + sigma^2), computed here."""
    g = _gen(0)

    def data(n, x2):
        x = torch.randn(n, D, generator=g, dtype=torch.float64)
        x[:, 1] = x2
        return x, x.sum(-1, keepdim=True) + SIGMA * torch.randn(n, 1, generator=g).double()

    (xt, yt), (xv, yv) = data(N, 0.0), data(50, 1.0)
    la = _blr_laplace(prior_precision="gridsearch")
    _lbfgs_map(la, xt, yt)
    la.fit_posterior((xt, yt), val_data=(xv, yv), progress=False)
    mean, _ = blr_posterior(xt, yt)
    a = torch.cat([xv, torch.ones(len(xv), 1, dtype=xv.dtype)], 1)
    nll = []
    for delta in GRID:
        _, cov = blr_posterior(xt, yt, prior_scale=float(delta) ** -0.5)
        std = (((a @ cov) * a).sum(-1) + SIGMA**2).sqrt()
        nll.append(-torch.distributions.Normal(a @ mean, std).log_prob(yv.squeeze(-1)).sum())
    best = int(torch.stack(nll).argmin())
    assert 0 < best < len(GRID) - 1  # an interior optimum: the search decides something
    assert float(la.prior_precision) == float(GRID[best])


def test_last_layer_laplace_is_less_confident_far_from_data():
    """Kristiadi et al. (2020): a ReLU MAP network is ~certain far from the data; the
    last-layer Laplace predictive is not. Sampled confidences are compared with Z Monte
    Carlo standard errors of the averaged top-class probability."""
    g = _gen(0)
    centres = torch.tensor([[0.0, 2.0], [-2.0, -1.0], [2.0, -1.0]])
    y = torch.arange(3).repeat_interleave(30)
    x = centres[y] + 0.7 * torch.randn(90, 2, generator=g)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                        nn.Linear(16, 3))  # fmt: skip
    la = bdl.Laplace(net)  # last layer, KFAC, marglik, glm
    la.fit((x, y), epochs=30, lr=0.1, batch_size=90, progress=False, generator=g)
    with torch.no_grad():
        assert (net(x).argmax(-1) == y).double().mean() > 0.85  # the MAP fits the data
    angles = torch.linspace(0, 2 * math.pi, 9)[:-1]
    far = 30 * torch.stack([angles.cos(), angles.sin()], 1)
    with torch.no_grad():
        conf_map = net(far).softmax(-1).max(-1).values
    assert (conf_map > 0.99).all()
    probit = la.predict_probit(far).max(-1).values
    assert (probit < conf_map - 0.02).all() and probit.mean() < conf_map.mean() - 0.05
    s = 2000
    pred = la.predict(far, samples=s, generator=_gen(1))
    top = pred.probs.argmax(-1, keepdim=True)
    p_top = pred.sample_probs.gather(-1, top.expand(s, -1, -1)).squeeze(-1).mean(1)  # (S,)
    assert p_top.mean() + Z * p_top.std() / math.sqrt(s) < conf_map.mean()


def _contract_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 3))


@pytest.mark.parametrize("hessian", ["full", "diag", "kfac"])
@pytest.mark.parametrize("pred_type", ["glm", "nn"])
def test_save_load_round_trip(hessian, pred_type, tmp_path):
    x, y = _classes(40, torch.float32)
    x = torch.cat([x, x.square()], 1)
    la = bdl.Laplace(_contract_net(), subset="all", hessian=hessian, pred_type=pred_type)
    la.fit((x, y), epochs=3, batch_size=16, progress=False, generator=_gen())
    path = bdl.save(la, tmp_path / "la.safetensors")
    other = _contract_net()
    nn.init.normal_(other[0].weight)
    loaded = bdl.load(path, other)
    assert loaded.hparams == la.hparams
    assert_close(loaded.prior_precision, la.prior_precision, rtol=0, atol=0)
    assert_close(loaded.posterior_covariance(), la.posterior_covariance(), rtol=0, atol=0)
    assert_close(loaded.log_marginal_likelihood(), la.log_marginal_likelihood())
    a = la.predict(x[:6], samples=7, generator=_gen(2)).samples
    assert_close(loaded.predict(x[:6], samples=7, generator=_gen(2)).samples, a)


def test_prior_precision_tunings_and_report():
    x, y = _classes()
    la = bdl.Laplace(_mlp(), prior_precision=3.0)
    report = la.fit((x, y), epochs=0, progress=False)
    assert report.extras["prior_precision"] == 3.0 and report.losses == []
    assert report.extras["log_marglik"] == pytest.approx(float(la.log_marginal_likelihood()))
    la = bdl.Laplace(_mlp(), prior=bdl.priors.Normal(0.5), prior_precision="prior")
    assert la.fit((x, y), epochs=0, progress=False).extras["prior_precision"] == 4.0
    la = bdl.Laplace(_mlp(), hessian="diag")  # marglik: a stationary point of the evidence
    la.fit((x, y), epochs=0, progress=False)
    log_delta = la.prior_precision.log().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(la.log_marginal_likelihood(log_delta.exp()), log_delta)
    assert abs(float(grad)) < 1e-6
    x_val, y_val = _classes(12)
    la = bdl.Laplace(_mlp(), pred_type="nn", prior_precision="gridsearch")
    la.fit((x, y), epochs=0, progress=False, val_data=(x_val, y_val))
    assert float(la.prior_precision) in GRID.tolist()


def test_errors():
    net = _mlp()
    with pytest.raises(ValueError, match="hessian must be 'full', 'diag' or 'kfac'"):
        bdl.Laplace(net, hessian="exact")
    with pytest.raises(ValueError, match="pred_type must be 'glm' or 'nn'"):
        bdl.Laplace(net, pred_type="mc")
    with pytest.raises(ValueError, match="prior_precision must be 'marglik'"):
        bdl.Laplace(net, prior_precision="auto")
    with pytest.raises(ValueError, match="prior_precision must be positive"):
        bdl.Laplace(net, prior_precision=-1.0)
    with pytest.raises(ValueError, match="subset must be 'all', 'last_layer', 'lora', a list"):
        bdl.Laplace(net, subset="first_layer")
    with pytest.raises(ValueError, match="supports the Categorical and Gaussian"):
        bdl.Laplace(net, likelihood=bdl.likelihoods.HeteroscedasticGaussian())
    with pytest.raises(ValueError, match="no nn.Linear or nn.Conv"):
        bdl.Laplace(nn.Sequential(nn.Flatten()))
    conv1d = nn.Sequential(nn.Conv1d(1, 2, 3), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="kfac' supports nn.Linear and nn.Conv2d.*'diag'"):
        bdl.Laplace(conv1d, subset="all")
    bdl.Laplace(conv1d, subset="all", hessian="diag")  # the other hessians handle any layer
    x, y = _classes()
    la = bdl.Laplace(net)
    with pytest.raises(RuntimeError, match="call fit or fit_posterior"):
        la.predict(x)
    with pytest.raises(ValueError, match="epochs must be a non-negative integer"):
        la.fit((x, y), epochs=-1)
    with pytest.raises(ValueError, match="val_data is only used by"):
        la.fit((x, y), epochs=0, val_data=(x, y))
    with pytest.raises(ValueError, match="y must hold class indices in"):
        la.fit((x, y + 3), epochs=0, progress=False)
    with pytest.raises(ValueError, match="needs val_data"):
        bdl.Laplace(net, prior_precision="gridsearch").fit((x, y), epochs=0)
    with pytest.raises(ValueError, match="Normal prior with one global scale"):
        prior = bdl.priors.Laplace(1.0)
        bdl.Laplace(net, prior=prior, prior_precision="prior").fit((x, y), epochs=0)
    reg = bdl.Laplace(_mlp(out=1), likelihood=bdl.likelihoods.Gaussian(1.0))
    reg.fit((x, x[:, :1].clone()), epochs=0, progress=False)
    with pytest.raises(ValueError, match="predict_probit is for classification"):
        reg.predict_probit(x)
    with pytest.raises(ValueError, match="NaN"):
        reg.glm_moments(torch.full((2, 2), math.nan, dtype=torch.float64))


def test_a_failed_fit_leaves_no_partial_sums():
    x, y = _classes()
    bad = y.clone()
    bad[-1] = 7  # fails in the last batch, after the first ones were summed
    for hessian in ("full", "kfac"):
        la = bdl.Laplace(_mlp(), hessian=hessian, prior_precision=1.0)
        with pytest.raises(ValueError, match="y must hold class indices in"):
            la.fit_posterior((x, bad), batch_size=7, progress=False)
        la.fit_posterior((x, y), batch_size=7, progress=False)
        fresh = bdl.Laplace(_mlp(), hessian=hessian, prior_precision=1.0)
        fresh.fit_posterior((x, y), batch_size=7, progress=False)
        assert_close(la.posterior_precision(), fresh.posterior_precision())


def test_fit_is_post_hoc_by_default_and_leaves_the_weights_untouched():
    """Laplace(trained_net).fit(data) computes the posterior only: every weight of the
    network is bitwise what the user trained (training first needs an explicit epochs=)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    x, y = torch.randn(40, 3), torch.randint(0, 2, (40,))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    la = bdl.Laplace(net)
    report = la.fit((x, y), progress=False)
    assert report.losses == []
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert la.predict(x, samples=4).samples.shape == (4, 40, 2)
    la.fit((x, y), epochs=2, progress=False)  # explicit training moves them
    assert not torch.equal(net.state_dict()["2.weight"], before["2.weight"])
