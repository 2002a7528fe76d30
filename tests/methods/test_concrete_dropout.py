"""Concrete dropout (Gal, Hron & Kendall, 2017): the regulariser, the relaxation, the
learned rates' dependence on the data size, and prediction through MCDropout."""

import math

import pytest
import torch
from _policy import Z
from torch import nn
from torch.testing import assert_close

import bayesdl as bdl


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _set_rates(method, rates):
    with torch.no_grad():
        for name, p in rates.items():
            method.logit_p[name.replace(".", "__")].fill_(math.log(p / (1 - p)))


def _net():
    """Dropout2d feeding Linear "4" (K = 2 channels), Dropout feeding Linear "7" (K = 5)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Dropout2d(0.2), nn.Flatten(), nn.Linear(32, 5),
        nn.ReLU(), nn.Dropout(0.3), nn.Linear(5, 2),
    )  # fmt: skip


def _data(n=8):
    g = _gen(1)
    return torch.randn(n, 1, 6, 6, generator=g), torch.randint(0, 2, (n,), generator=g)


@pytest.mark.parametrize("explicit", [False, True])
def test_regulariser_equals_the_formula(explicit):
    """wr ||W||^2 / (1 - p) + dr K (p log p + (1 - p) log(1 - p)) per dropout layer, with
    wr = l^2 / (2N) and dr = 1/N by default, or the coefficients given."""
    coef = {"weight_regulariser": 0.03, "dropout_regulariser": 0.002} if explicit else {}
    net = _net()
    cd = bdl.ConcreteDropout(net, length_scale=0.5, **coef)
    rates = {"2": 0.15, "6": 0.4}
    _set_rates(cd, rates)
    cd.loss(*_data(), 100)  # records K of every dropout layer
    n = 100
    wr = 0.03 if explicit else 0.5**2 / (2 * n)
    dr = 0.002 if explicit else 1 / n
    expected = 0.0
    for p, k, layer in ((0.15, 2, net[4]), (0.4, 5, net[7])):
        entropy_term = p * math.log(p) + (1 - p) * math.log(1 - p)
        expected += wr * float(layer.weight.detach().pow(2).sum()) / (1 - p) + dr * k * entropy_term
    assert_close(cd.regulariser(n).item(), expected, rtol=1e-5, atol=0)
    assert cd.dropout_rates() == pytest.approx(rates)


def test_loss_is_nll_plus_regulariser_plus_prior_on_the_other_parameters():
    """loss(N1) - loss(N2) with the same relaxed masks isolates the N-dependent terms."""
    cd = bdl.ConcreteDropout(_net(), length_scale=0.5)
    x, y = _data()
    losses = {}
    for n in (10, 1000):  # the same concrete noise in both calls
        losses[n] = cd.loss(x, y, n, generator=_gen())
    fed = {"4.weight", "7.weight"}
    others = {k: v for k, v in cd.model.named_parameters() if k not in fed}
    log_prior = bdl.priors.Normal(1 / 0.5).log_prob(others)  # the prior l stands for
    expected = cd.regulariser(10) - cd.regulariser(1000) - log_prior / 10 + log_prior / 1000
    assert_close(losses[10] - losses[1000], expected)


@pytest.mark.parametrize("layer", ["elementwise", "channels"])
def test_relaxed_masks_drop_at_the_learned_rate(layer):
    """drop = sigmoid((logit p + logit u) / t) > 1/2 exactly when logit u > -logit p, which
    has probability p at any temperature; the Dropout2d relaxation is shared per channel.
    Tolerance: Z binomial standard errors."""
    p, n = 0.3, 20_000
    if layer == "elementwise":
        net, x = nn.Sequential(nn.Dropout(0.5), nn.Linear(4, 1)), torch.ones(n // 4, 4)
    else:
        net = nn.Sequential(nn.Dropout2d(0.5), nn.Flatten(), nn.Linear(4 * 9, 1))
        x = torch.ones(n // 4, 4, 3, 3)
    cd = bdl.ConcreteDropout(net, likelihood=bdl.likelihoods.Gaussian(sigma=1.0))
    _set_rates(cd, {"0": p})
    seen = []
    handle = net[-1].register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    cd.loss(x, torch.zeros(len(x), 1), 100, generator=_gen())
    handle.remove()
    out = seen[0] * (1 - p)  # = 1 - drop, in [0, 1]
    if layer == "channels":
        scaled = out.view(len(x), 4, 9)
        assert_close(scaled, scaled[:, :, :1].expand_as(scaled))  # one value per channel
        out = scaled[:, :, 0]
    dropped = (out < 0.5).double().mean()
    assert abs(dropped - p) <= Z * math.sqrt(p * (1 - p) / out.numel())
    # temperature t = 0.1: 1 - drop lies in (0.05, 0.95) when logit p + L is within
    # t log 19 of 0 (L = logit u is standard logistic): nearly binary, at a known rate
    a, w = -math.log(p / (1 - p)), 0.1 * math.log(19)
    between = 1 / (1 + math.exp(-(a + w))) - 1 / (1 + math.exp(-(a - w)))
    observed = ((out > 0.05) & (out < 0.95)).double().mean()
    assert abs(observed - between) <= Z * math.sqrt(between * (1 - between) / out.numel())


def test_more_data_learns_lower_dropout_rates():
    """The dropout regulariser dr K (p log p + ...) with dr = 1/N pulls p towards 1/2 and
    weakens as N grows, while the likelihood pulls p down: with 40x the data the learned
    rates must fall. 1-d regression (regression_gap, noise 0.1, known sigma), a 1-64-64-1
    MLP with two dropout layers starting at p = 0.1, 500 Adam steps for both sizes.
    Measured (seeds 0-2): N=50 rates 0.21-0.25 (first layer) and 0.035-0.11 (second),
    N=2000 rates 0.007-0.0095; the smallest ratio was 3.7, so asking for a factor 2 keeps
    a margin for other platforms while still failing if the rate does not depend on N."""
    rates = {}
    for n, batch in ((50, 50), (2000, 100)):
        data = bdl.data.regression_gap(n, noise=0.1, seed=0)
        torch.manual_seed(0)
        net = nn.Sequential(
            nn.Linear(1, 64), nn.ReLU(), nn.Dropout(0.1), nn.Linear(64, 64), nn.ReLU(),
            nn.Dropout(0.1), nn.Linear(64, 1),
        )  # fmt: skip
        cd = bdl.ConcreteDropout(net, likelihood=bdl.likelihoods.Gaussian(sigma=0.1))
        cd.fit((data.x, data.y), epochs=500 * batch // n, lr=2e-2, batch_size=batch,
               progress=False, generator=_gen())  # fmt: skip
        rates[n] = cd.dropout_rates()
        assert net[2].p == 0.1 and net[5].p == 0.1  # the modules' own rates are untouched
    print(rates)
    for name in ("2", "5"):
        assert 0 < rates[2000][name] < rates[50][name] / 2 < 0.5
    assert rates[50]["2"] > 0.1 > rates[2000]["2"]  # moved in opposite directions from 0.1


def test_rates_stay_inside_the_unit_interval():
    cd = bdl.ConcreteDropout(_net())
    with torch.no_grad():
        cd.logit_p["2"].fill_(200.0)
        cd.logit_p["6"].fill_(-200.0)
    rates = cd.dropout_rates()
    assert 0 < rates["6"] < rates["2"] < 1
    cd.loss(*_data(), 100)
    assert torch.isfinite(cd.regulariser(100))


def test_predict_is_mc_dropout_with_the_learned_rates():
    x, _ = _data(12)
    cd = bdl.ConcreteDropout(_net())
    _set_rates(cd, {"2": 0.35, "6": 0.05})
    pred = cd.predict(x, samples=6, generator=_gen())
    assert cd.model[2].p == 0.2 and cd.model[6].p == 0.3  # restored after predict
    ref_net = _net()
    ref_net[2].p, ref_net[6].p = 0.35, 0.05
    ref = bdl.MCDropout(ref_net).predict(x, samples=6, generator=_gen())
    assert_close(pred.samples, ref.samples, rtol=1e-5, atol=1e-6)


def test_concrete_dropout_rejects_bad_models_and_arguments():
    with pytest.raises(ValueError, match="ConcreteDropout needs nn.Dropout layers.*add"):
        bdl.ConcreteDropout(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(ValueError, match="outside \\(0, 1\\).*pass init_p"):
        bdl.ConcreteDropout(nn.Sequential(nn.Dropout(0.0), nn.Linear(2, 2)))
    bdl.ConcreteDropout(nn.Sequential(nn.Dropout(0.0), nn.Linear(2, 2)), init_p=0.1)  # the fix
    with pytest.raises(ValueError, match="init_p must lie in"):
        bdl.ConcreteDropout(_net(), init_p=1.5)
    with pytest.raises(ValueError, match="length_scale must be positive"):
        bdl.ConcreteDropout(_net(), length_scale=0.0)
    with pytest.raises(ValueError, match="temperature must be positive"):
        bdl.ConcreteDropout(_net(), temperature=-1.0)
    with pytest.raises(ValueError, match="weight_regulariser must be >= 0"):
        bdl.ConcreteDropout(_net(), weight_regulariser=-1.0)
    with pytest.raises(RuntimeError, match="call loss\\(\\) or fit\\(\\) first"):
        bdl.ConcreteDropout(_net()).regulariser(10)
