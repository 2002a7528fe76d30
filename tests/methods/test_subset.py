"""``subset=`` on every method: everything equals the full method, frozen parameters stay
bitwise fixed, Laplace over a subset is the matching block of the full GGN (brute force),
and bad subsets are one-line errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import bayesdl as bdl
from bayesdl.methods.layers import select_params


def _net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Dropout(0.2), nn.Linear(6, 4))


def _data(n: int = 32):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, generator=g), torch.randint(0, 4, (n,), generator=g)


# (factory taking subset=..., fit kwargs); each method's default subset covers everything
CASES = {
    "vi": (lambda net, **kw: bdl.MeanFieldVI(net, **kw), {"epochs": 2}),
    "swag": (lambda net, **kw: bdl.SWAG(net, rank=2, collect_unit="step", **kw), {"epochs": 2}),
    "ensemble": (lambda net, **kw: bdl.DeepEnsemble(net, members=2, **kw), {"epochs": 2}),
    "sgld": (lambda net, **kw: bdl.SGLD(net, num_samples=3, **kw), {"epochs": 2}),
    "sghmc": (lambda net, **kw: bdl.SGHMC(net, num_samples=3, **kw), {"epochs": 2}),
    "mc-dropout": (lambda net, **kw: bdl.MCDropout(net, **kw), {"epochs": 2}),
    "laplace": (
        lambda net, **kw: bdl.Laplace(net, hessian="full", prior_precision=1.0, **kw),
        {},
    ),
}
EVERYTHING = {  # the same "everything" written three ways
    "all": "all",
    "predicate": lambda name, p: True,
    "names": ["0", "3"],
}


def _fit_predict(name: str, subset) -> torch.Tensor:
    make, fit_kw = CASES[name]
    kw = {} if subset is None else {"subset": subset}
    if name == "mc-dropout" and isinstance(subset, list):
        kw = {"subset": ["2"]}  # MC dropout's subset names dropout modules
    if name == "laplace" and subset is None:
        kw = {"subset": "all"}
    method = make(_net(), **kw)
    x, y = _data()
    method.fit((x, y), batch_size=8, progress=False, generator=torch.Generator().manual_seed(2),
               **fit_kw)  # fmt: skip
    return method.predict(x[:5], samples=4, generator=torch.Generator().manual_seed(3)).probs


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("spelling", list(EVERYTHING))
def test_subset_everything_equals_the_full_method(name, spelling):
    full = _fit_predict(name, None)
    torch.testing.assert_close(_fit_predict(name, EVERYTHING[spelling]), full, rtol=0, atol=0)


def _frozen_net() -> nn.Sequential:
    net = _net()
    for p in net[0].parameters():
        p.requires_grad_(False)
    return net


@pytest.mark.parametrize("name", [n for n in CASES if n != "laplace"])
def test_frozen_parameters_bitwise_unchanged_and_subset_respected(name):
    make, fit_kw = CASES[name]
    net = _frozen_net()
    frozen = {n: p.detach().clone() for n, p in net[0].named_parameters()}
    subset = ["2"] if name == "mc-dropout" else "last_layer"
    method = make(net, subset=subset)
    x, y = _data()
    method.fit((x, y), batch_size=8, progress=False, generator=torch.Generator().manual_seed(2),
               **fit_kw)  # fmt: skip
    for n, p in net[0].named_parameters():
        assert torch.equal(p, frozen[n]), f"{name} changed frozen parameter 0.{n}"
    draws = getattr(method, "sample_params", None)
    if draws is not None:  # only the subset is sampled: never a copy of the frozen layer
        assert set(draws(2)) == {"3.weight", "3.bias"}


def _brute_force_ggn(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """sum_n J_n^T (diag(p) - p p^T) J_n over every parameter, one example at a time."""
    params = dict(net.named_parameters())
    total = 0
    for xi in x:
        def f(*flat, xi=xi):
            p = dict(zip(params, flat, strict=True))
            return torch.func.functional_call(net, p, (xi.unsqueeze(0),)).squeeze(0)

        jac = torch.autograd.functional.jacobian(f, tuple(params.values()))
        j = torch.cat([t.flatten(1) for t in jac], 1)  # (K, P)
        prob = f(*params.values()).softmax(-1)
        total = total + j.T @ (torch.diag(prob) - torch.outer(prob, prob)) @ j
    return total


def test_laplace_subset_is_the_block_of_the_full_laplace():
    net = _net().double()
    x, y = _data(24)
    x = x.double()
    full = bdl.Laplace(net, subset="all", hessian="full", prior_precision=0.7)
    full.fit_posterior((x, y), progress=False)
    last = bdl.Laplace(net, subset="last_layer", hessian="full", prior_precision=0.7)
    last.fit_posterior((x, y), progress=False)
    truth = _brute_force_ggn(net, x) + 0.7 * torch.eye(full.num_params, dtype=torch.float64)
    torch.testing.assert_close(full.posterior_precision(), truth)
    k = 6 * 3 + 6  # the first layer's weight and bias come first in model order
    block = truth[k:, k:]
    torch.testing.assert_close(last.posterior_precision(), block)
    # the subset posterior is the conditional given the rest at the MAP: its covariance is
    # the inverse of the block, and the marginal of the full covariance is never smaller
    torch.testing.assert_close(last.posterior_covariance(), torch.linalg.inv(block))
    gap = full.posterior_covariance()[k:, k:] - last.posterior_covariance()
    assert torch.linalg.eigvalsh(gap).min() > -1e-10


@pytest.mark.parametrize("hessian", ["diag", "kfac"])
def test_laplace_subset_curvature_equals_the_full_ones_block(hessian):
    net = _net().double()
    x, y = _data(24)
    x = x.double()
    full = bdl.Laplace(net, subset="all", hessian=hessian, prior_precision=0.7)
    full.fit_posterior((x, y), progress=False)
    last = bdl.Laplace(net, subset=["3"], hessian=hessian, prior_precision=0.7, chunk_size=5)
    last.fit_posterior((x, y), progress=False)
    k = 6 * 3 + 6
    torch.testing.assert_close(last.posterior_precision(), full.posterior_precision()[k:, k:])


def test_select_params_forms():
    net = _net()
    assert list(select_params(net, "last_layer", "t")) == ["3.weight", "3.bias"]
    assert list(select_params(net, ["0.bias", "3"], "t")) == ["0.bias", "3.weight", "3.bias"]
    chosen = select_params(net, lambda n, p: n.endswith("bias"), "t")
    assert list(chosen) == ["0.bias", "3.bias"]
    assert len(select_params(net, "all", "t")) == 4


@pytest.mark.parametrize(
    ("subset", "message"),
    [
        (["nope"], "subset entry 'nope' names no"),
        ("lora", "found no LoRA adapter parameters"),
        (lambda n, p: False, "predicate is false for every parameter"),
    ],
)
@pytest.mark.parametrize("name", ["vi", "swag", "ensemble", "sgld", "laplace"])
def test_bad_subsets_are_one_line_errors(name, subset, message):
    make, _ = CASES[name]
    with pytest.raises(ValueError, match=message) as err:
        make(_net(), subset=subset)
    assert "\n" not in str(err.value)


def test_mc_dropout_bad_subsets():
    with pytest.raises(ValueError, match="no LoRA adapter dropout layers"):
        bdl.MCDropout(_net(), subset="lora")
    with pytest.raises(ValueError, match="names no dropout layer"):
        bdl.MCDropout(_net(), subset=["0"])


def test_mc_dropout_subset_samples_only_the_chosen_dropout():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.5), nn.ReLU(), nn.Linear(8, 8),
                        nn.Dropout(0.5), nn.Linear(8, 2))  # fmt: skip
    x = torch.randn(5, 3)
    last = bdl.MCDropout(net, subset="last_layer")
    assert last.dropout_names == ["4"]
    s = last.predict(x, samples=6, generator=torch.Generator().manual_seed(0)).samples
    # the first dropout is off: the features before the second dropout are the network's
    h = net[3](net[2](net[0](x)))
    masks = (s.exp() > 0).all()  # log-probabilities are finite
    assert masks
    by_hand = []
    g = torch.Generator().manual_seed(0)
    for _ in range(1):
        keep = (torch.rand(6, 8, generator=g) < 0.5).float() / 0.5
        by_hand = torch.stack([net[5](h * k) for k in keep]).log_softmax(-1)
    torch.testing.assert_close(s, by_hand)
