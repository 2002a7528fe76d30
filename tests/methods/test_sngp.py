"""SNGP against closed forms: Bayesian linear regression, the Laplace precision by brute
force, the RBF kernel of the random features, spectral norms by SVD, and the prior variance
far from the data."""

import math

import pytest
import torch
from _blr import SIGMA, blr_data, blr_posterior
from _policy import Z
from torch import nn
from torch.testing import assert_close

import bayesdl as bdl


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _blr_sngp():
    """SNGP whose GP layer sees the inputs themselves (a lone Linear head, identity
    features), fitted to convergence on conjugate BLR data with a column of ones as bias."""
    x, y = blr_data()
    a = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    torch.manual_seed(0)
    sngp = bdl.SNGP(nn.Linear(4, 1).double(), bdl.likelihoods.Gaussian(sigma=SIGMA),
                    random_features=None, prior_precision=1.0)  # fmt: skip
    sngp.fit((a, y), epochs=150, lr=0.2, batch_size=len(a), optimizer=torch.optim.SGD,
             progress=False, generator=_gen())  # fmt: skip
    return sngp, a, y


def test_identity_features_give_bayesian_linear_regression():
    sngp, a, y = _blr_sngp()
    mean, cov = blr_posterior(a[:, :-1], y)  # exact posterior of (w, b), prior N(0, 1)
    assert_close(sngp.gp_weight.detach()[0], mean, rtol=0, atol=1e-8)
    assert_close(sngp.posterior_covariance()[0], cov, rtol=1e-10, atol=1e-12)


def test_predictive_variance_of_the_gp_output_is_the_closed_form():
    sngp, a, y = _blr_sngp()
    _, cov = blr_posterior(a[:, :-1], y)
    g = torch.Generator().manual_seed(5)
    x_new = torch.cat([torch.randn(6, 3, generator=g, dtype=torch.float64) * 3,
                       torch.ones(6, 1, dtype=torch.float64)], 1)  # fmt: skip
    s = 4000
    pred = sngp.predict(x_new, samples=s, generator=_gen(1))
    f = pred.samples[..., 0] if pred.samples.dim() == 3 else pred.samples
    exact_var = torch.einsum("nd,de,ne->n", x_new, cov, x_new)
    # sample variance of s Gaussian draws: standard error var * sqrt(2 / (s - 1))
    se = exact_var * math.sqrt(2 / (s - 1))
    assert ((f.var(0) - exact_var).abs() <= Z * se).all()


def _moons_sngp(features=256):
    data = bdl.data.two_moons(100, noise=0.1, seed=0)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                        nn.Linear(32, 2))  # fmt: skip
    sngp = bdl.SNGP(net, random_features=features, lengthscale=1.0)
    sngp.fit((data.x, data.y), epochs=40, lr=0.02, batch_size=50, progress=False,
             generator=_gen())  # fmt: skip
    return sngp, data


def test_laplace_precision_is_the_brute_force_sum():
    sngp, data = _moons_sngp(features=64)
    phi = sngp.features(data.x).double()
    with torch.no_grad():
        p = (phi @ sngp.gp_weight.detach().double().T).softmax(-1)
    for k in range(2):  # Liu et al.'s eq. 9, one example at a time
        prec = torch.eye(64, dtype=torch.float64) * sngp.prior_precision
        for i in range(len(phi)):
            prec += p[i, k] * (1 - p[i, k]) * torch.outer(phi[i], phi[i])
        assert_close(sngp.posterior_covariance()[k].double(), torch.linalg.inv(prec),
                     rtol=1e-3, atol=1e-5)  # fmt: skip


def test_random_features_approximate_the_rbf_kernel():
    d, ls = 4096, 0.7
    sngp = bdl.SNGP(nn.Linear(2, 1), bdl.likelihoods.Gaussian(sigma=1.0),
                    random_features=d, lengthscale=ls, seed=3)  # fmt: skip
    x = torch.tensor([[0.0, 0.0], [0.3, -0.2], [1.0, 1.0], [-0.5, 0.8], [2.0, 0.0]])
    phi = sngp.features(x).double()
    exact = torch.exp(-(torch.cdist(x, x).double() ** 2) / (2 * ls**2))
    # each of the D terms 2 cos(w.h + b) cos(w.h' + b) has variance <= 1.5
    assert ((phi @ phi.T - exact).abs() <= Z * math.sqrt(1.5 / d)).all()


def test_hidden_layers_are_spectrally_normalised_and_the_model_untouched():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                        nn.Linear(32, 2))  # fmt: skip
    keys = list(net.state_dict())
    params = [id(p) for p in net.parameters()]
    x = torch.randn(5, 2)
    before = net(x)
    sngp = bdl.SNGP(net, random_features=64)
    assert list(net.state_dict()) == keys and [id(p) for p in net.parameters()] == params
    assert_close(net(x), before, rtol=0, atol=0)
    assert sngp.normalised == ["0", "2"]  # the head "4" is replaced, not normalised
    with torch.no_grad():  # raw spectral norms well above 1, so the normalisation has work to do
        for name in ("0", "2"):
            net.get_submodule(name).weight.mul_(5.0)
            assert torch.linalg.matrix_norm(net.get_submodule(name).weight, 2) > 1.5
    data = bdl.data.two_moons(64, noise=0.1, seed=0)
    sngp.fit((data.x, data.y), epochs=20, lr=0.05, batch_size=16, progress=False,
             generator=_gen())  # fmt: skip
    weights = sngp._normalised_weights(update=False)
    for name in ("0", "2"):
        assert_close(torch.linalg.matrix_norm(weights[f"{name}.weight"].detach(), 2),
                     torch.tensor(1.0), rtol=0, atol=2e-2)  # fmt: skip
    assert not bdl.SNGP(nn.Sequential(nn.Linear(2, 4), nn.Linear(4, 2)),
                        spectral_norm=False).normalised  # fmt: skip


def test_far_from_the_data_the_variance_returns_to_the_prior():
    sngp, data = _moons_sngp()
    cov = sngp.posterior_covariance().double()

    def ratio(x):  # posterior variance of each logit over its prior variance |phi|^2 / lambda
        phi = sngp.features(x).double()
        post = torch.einsum("nd,kde,ne->nk", phi, cov, phi)
        return post / (phi.square().sum(-1, keepdim=True) / sngp.prior_precision)

    assert ratio(data.x).max() < 0.5
    far = torch.tensor([[30.0, 30.0], [-40.0, 10.0], [0.0, -50.0], [25.0, -25.0]])
    assert ratio(far).min() > 0.9
    pred_far = sngp.predict(far, samples=200, generator=_gen())
    pred_in = sngp.predict(data.x, samples=200, generator=_gen())
    assert pred_far.mutual_information().min() > pred_in.mutual_information().quantile(0.95)


class _Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten())
        self.out = nn.Linear(3 * 4 * 4, 3)

    def forward(self, x):
        return self.out(self.body(x))


def test_a_custom_model_with_a_conv_body_round_trips(tmp_path):
    torch.manual_seed(0)
    x, y = torch.randn(24, 1, 6, 6), torch.arange(24) % 3
    sngp = bdl.SNGP(_Custom(), random_features=32, head="out")
    assert sngp.normalised == ["body.0"]
    sngp.fit((x, y), epochs=2, batch_size=8, progress=False, generator=_gen())
    pred = sngp.predict(x[:5], samples=4, generator=_gen())
    path = bdl.save(sngp, tmp_path / "s.safetensors")
    loaded = bdl.load(path, _Custom())
    assert_close(loaded.predict(x[:5], samples=4, generator=_gen()).samples, pred.samples)


class _Tail(nn.Module):
    def __init__(self):
        super().__init__()
        self.out = nn.Linear(2, 3)

    def forward(self, x):
        return self.out(x) * 2.0


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: bdl.SNGP(nn.Sequential(nn.Conv2d(1, 2, 3))), "has none"),
        (lambda: bdl.SNGP(nn.Sequential(nn.Linear(2, 3), nn.ReLU()), head="1"), "nn.Linear"),
        (lambda: bdl.SNGP(nn.Linear(2, 3), head="missing"), "not a submodule"),
        (lambda: bdl.SNGP(nn.Linear(2, 3), random_features=0), "random_features"),
        (lambda: bdl.SNGP(nn.Linear(2, 3), lengthscale=-1.0), "lengthscale"),
        (lambda: bdl.SNGP(nn.Linear(2, 3), prior_precision=0.0), "prior_precision"),
        (lambda: bdl.SNGP(nn.Linear(2, 3), seed=-1), "seed"),
        (lambda: bdl.SNGP(nn.Linear(2, 4), bdl.likelihoods.HeteroscedasticGaussian()),
         "Categorical and Gaussian"),
        (lambda: bdl.SNGP(nn.Linear(2, 3)).predict(torch.randn(2, 2)), "fit"),
        (lambda: bdl.SNGP(_Tail()).fit((torch.randn(4, 2), torch.zeros(4).long()),
                                       epochs=1, progress=False), "model's output"),
    ],
)  # fmt: skip
def test_bad_input_is_a_one_line_error(build, match):
    with pytest.raises(ValueError, match=match) as err:
        build()
    assert "\n" not in str(err.value)
