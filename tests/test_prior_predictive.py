"""``bdl.prior_predictive`` against the closed form of a linear-Gaussian model, and its
contract over every registered method (tolerances: ``_policy.Z`` Monte Carlo standard
errors computed from the true moments)."""

import math

import pytest
import torch
from _policy import Z
from torch import nn
from torch.func import functional_call
from torch.testing import assert_close

import bayesdl as bdl

S0, SIGMA, DRAWS = 0.7, 0.3, 20_000


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _x():
    return torch.tensor([[0.0, 0.0, 0.0], [1.0, -2.0, 0.5], [3.0, 1.0, -1.0]], dtype=torch.float64)


@pytest.mark.parametrize("centred", [False, True])
def test_linear_gaussian_prior_predictive_is_the_closed_form(centred):
    """f(x) = w x + b with w, b ~ N(m, S0^2): mean m x + m_b, cov S0^2 (x x' + 1), and the
    predictive variance adds sigma^2."""
    net = nn.Linear(3, 1).double()
    loc = {"weight": torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.float64),
           "bias": torch.tensor([0.3], dtype=torch.float64)}  # fmt: skip
    prior = bdl.priors.Centered(loc, S0) if centred else bdl.priors.Normal(S0)
    method = bdl.MAP(net, bdl.likelihoods.Gaussian(SIGMA), prior=prior)
    x = _x()
    pred = bdl.prior_predictive(method, x, samples=DRAWS, generator=_gen())
    assert pred.samples.shape == (DRAWS, 3, 1)
    mean = (x @ loc["weight"].T + loc["bias"]).flatten() if centred else torch.zeros(3)
    cov = S0**2 * (x @ x.T + 1)
    var = cov.diagonal()
    f = pred.samples[..., 0]
    # mean: SE sqrt(var / S); variance: SE var sqrt(2 / (S - 1)) (Gaussian draws)
    assert ((f.mean(0) - mean).abs() <= Z * (var / DRAWS).sqrt()).all()
    assert (
        (pred.epistemic_variance[:, 0] - var).abs() <= Z * var * math.sqrt(2 / (DRAWS - 1))
    ).all()
    assert_close(
        pred.variance - pred.epistemic_variance, torch.full((3, 1), SIGMA**2, dtype=torch.float64)
    )
    # one covariance between inputs: SE sqrt((c11 c22 + c12^2) / S)
    c12 = ((f[:, 1] - mean[1]) * (f[:, 2] - mean[2])).mean()
    se = math.sqrt((cov[1, 1] * cov[2, 2] + cov[1, 2] ** 2) / DRAWS)
    assert abs(float(c12 - cov[1, 2])) <= Z * se


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 3))


@pytest.mark.parametrize("name", bdl.method_names())
def test_every_method_with_a_prior_has_a_prior_predictive(name):
    cls = bdl.get_method(name)
    method = cls(_net())
    x = torch.randn(6, 4, generator=_gen())
    if not cls.explicit_prior:
        with pytest.raises(ValueError, match="no explicit weight prior") as err:
            bdl.prior_predictive(method, x)
        assert "\n" not in str(err.value)
        return
    pred = bdl.prior_predictive(method, x, samples=5, generator=_gen(1))
    assert pred.samples.shape == (5, 6, 3)
    # reproducible; inputs split into blocks see the same draws (one draw per call here)
    again = bdl.prior_predictive(method, x, samples=5, generator=_gen(1))
    assert_close(again.samples, pred.samples, rtol=0, atol=0)
    blocks = bdl.prior_predictive(method, x, samples=5, chunk_size=4, generator=_gen(1))
    whole = bdl.prior_predictive(method, x, samples=5, chunk_size=6, generator=_gen(1))
    assert_close(blocks.samples, whole.samples)
    # vectorised = a loop over the same prior draws
    params = {k: v.detach() for k, v in method.model.named_parameters()}
    draws = method.prior.sample(params, 5, _gen(1))
    method.model.eval()
    loop = torch.stack(
        [functional_call(method.model, {k: v[s] for k, v in draws.items()}, (x,)) for s in range(5)]
    )
    assert_close(pred.samples, loop.log_softmax(-1))  # a categorical keeps log-probabilities


def test_horseshoe_and_student_t_prior_predictives_are_heavier_tailed_than_normal():
    """Prior draws of a 1-50-1 network's output at one input: the horseshoe's and the
    Cauchy's outputs have kurtosis far above the Normal prior's (about 3-4 for a sum of
    50 units)."""
    x = torch.tensor([[1.0]])
    kurt = {}
    for name, prior in (("normal", bdl.priors.Normal(1.0)),
                        ("student", bdl.priors.StudentT(1.0, 1.0)),
                        ("horseshoe", bdl.priors.Horseshoe(1.0))):  # fmt: skip
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(1, 50), nn.ReLU(), nn.Linear(50, 1))
        f = bdl.prior_predictive(bdl.MAP(net, bdl.likelihoods.Gaussian(0.1), prior=prior), x,
                                 samples=4000, generator=_gen()).samples.flatten()  # fmt: skip
        f = f - f.median()
        kurt[name] = float((f**4).mean() / (f**2).mean() ** 2)
    assert kurt["normal"] < 6 and kurt["student"] > 20 and kurt["horseshoe"] > 20, kurt


def test_a_flat_prior_and_a_non_method_are_refused():
    flat = bdl.MAP(nn.Linear(2, 2), prior=bdl.priors.Normal(math.inf))
    with pytest.raises(ValueError, match="flat"):
        bdl.prior_predictive(flat, torch.randn(3, 2))
    with pytest.raises(TypeError, match="bayesdl method"):
        bdl.prior_predictive(nn.Linear(2, 2), torch.randn(3, 2))
