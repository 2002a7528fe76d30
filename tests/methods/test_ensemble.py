"""Deep ensembles: independent members, exact vectorised prediction, shrinking spread.

What is checked against what:
* initialisation: a fit with a vanishing learning rate leaves the initialisations in the
  bank: member 0 is the user's, the others differ from it and from each other, the same
  generator gives the same ensemble, and torch's global RNG is left as it was;
* prediction: ``predict`` against a Python loop over the members, each a copy of the
  network with the member's weights and BatchNorm statistics (equal up to rounding);
* epistemic spread: ten times the data shrinks the spread of the members' predictions
  (a Bayesian posterior variance falls like 1 / N);
* per-member learned noise with ``Gaussian(sigma=None)``, and the errors.
"""

import copy

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import bayesdl as bdl


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _classification(n=64):
    g = _gen(1)
    x = torch.randn(n, 4, generator=g)
    return x, (x[:, 0] > 0).long() + (x[:, 1] > 1).long()


def _mlp():
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3))


def _flat(params):
    return torch.cat([v.flatten(1) for v in params.values()], 1)


def test_members_differ_at_initialisation_and_after_training():
    torch.manual_seed(0)
    net = _mlp()
    init = {k: v.clone() for k, v in net.state_dict().items()}
    data = _classification()
    ens = bdl.DeepEnsemble(net, members=4)
    rng = torch.get_rng_state()
    # lr = 1e-30: the weights move by ~1e-30, so the bank holds the initialisations
    ens.fit(data, epochs=1, lr=1e-30, optimizer=torch.optim.SGD, progress=False, generator=_gen())
    assert torch.equal(torch.get_rng_state(), rng)  # the global RNG was not reseeded
    start = ens.sample_params(4)
    for k, v in init.items():
        assert_close(start[k][0], v)  # member 0 keeps the user's initialisation
    flat = _flat(start)
    # independent draws of the same init distribution: |a - b| ~ sqrt(2) |a|
    assert (torch.pdist(flat) > 0.5 * flat.norm(dim=1).min()).all()
    twin = bdl.DeepEnsemble(_mlp(), members=4)
    twin.fit(data, epochs=1, lr=1e-30, optimizer=torch.optim.SGD, progress=False, generator=_gen())
    assert_close(_flat(twin.sample_params(4))[1:], flat[1:], rtol=0, atol=0)  # reproducible
    # trained: every member fits the data, and they still differ
    ens.fit(data, epochs=60, lr=0.05, batch_size=64, progress=False, generator=_gen())
    trained = ens.sample_params(4)
    for i in range(4):
        member = copy.deepcopy(net).requires_grad_(False)
        member.load_state_dict({k: v[i] for k, v in trained.items()})
        assert (member(data[0]).argmax(-1) == data[1]).float().mean() > 0.9
    assert (torch.pdist(_flat(trained)) > 0.5 * _flat(trained).norm(dim=1).min()).all()


def test_predict_equals_a_loop_over_the_members():
    """With BatchNorm, whose running statistics are banked per member, and dropout."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3)
    )
    x, y = _classification()
    ens = bdl.DeepEnsemble(model, members=3)
    ens.fit((x, y), epochs=3, batch_size=16, progress=False, generator=_gen())
    pred = ens.predict(x, samples=10)
    assert pred.samples.shape == (3, 64, 3)  # min(samples, members)
    members = ens.sample_params(3)
    ref = []
    for i in range(3):
        member = copy.deepcopy(model).eval()
        member.load_state_dict({k: v[i] for k, v in members.items()}, strict=False)
        ref.append(torch.log_softmax(member(x), -1))
    # equal up to rounding: the batched matrix products sum in another order
    assert_close(pred.samples, torch.stack(ref))
    stats = members["1.running_mean"]
    assert (stats[0] - stats[1]).abs().max() > 1e-3  # each member has its own statistics
    for k, v in model.state_dict().items():  # after fit the model holds member 0
        if v.is_floating_point():
            assert_close(v, members[k][0], rtol=0, atol=0)
    assert_close(ens.predict(x, samples=2).samples, pred.samples[[0, 2]])  # evenly spaced


def test_predictive_spread_shrinks_with_more_data():
    """Ten times the data: the members' predictions agree far more closely.

    A 10-d regression (a tanh of a linear function) fitted by an MLP with 16 ReLU units
    (193 weights). With N = 20 the data leave most directions of weight space free, so
    members trained from different initialisations disagree on new inputs; with N = 200
    they are pinned down. For a Bayesian posterior the epistemic variance falls like
    1 / N, tenfold here; over four data seeds the ensemble's mean spread fell 7.6 to 16
    fold. A deep ensemble is not a posterior sample, so we require only 3: far from 1 (no
    shrinkage). Each fit takes the same number of full-batch steps.
    """
    g = _gen(99)
    x_test = torch.randn(200, 10, generator=g)
    w = torch.randn(10, 1, generator=g) / 10**0.5
    spread = {}
    for n in (20, 200):
        x = torch.randn(n, 10, generator=g)
        y = torch.tanh(x @ w) + 0.1 * torch.randn(n, 1, generator=g)
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 1))
        ens = bdl.DeepEnsemble(net, likelihood=bdl.likelihoods.Gaussian(sigma=0.1), members=3)
        ens.fit((x, y), epochs=60, lr=0.03, batch_size=n, progress=False, generator=_gen())
        spread[n] = ens.predict(x_test).epistemic_variance.mean()
    assert spread[20] / spread[200] > 3, spread


def test_learned_noise_is_per_member(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(40, 2)
    y = x.sum(1, keepdim=True) + 0.3 * torch.randn(40, 1)
    lik = bdl.likelihoods.Gaussian(sigma=None, init_sigma=1.0)
    ens = bdl.DeepEnsemble(nn.Linear(2, 1), likelihood=lik, members=3)
    ens.fit((x, y), epochs=30, lr=0.05, batch_size=10, progress=False, generator=_gen())
    pred = ens.predict(x)
    log_sigma = ens.member_log_sigma
    assert_close(pred.noise_variance[:, 0, 0], (2 * log_sigma).exp())
    assert_close(log_sigma[0], lik.log_sigma.detach())  # the likelihood holds member 0's
    # every member trains its noise from init_sigma: all moved alike, and not identically
    moved = log_sigma.mean().abs()  # from log(1.0) = 0
    assert moved > 0.3 and (log_sigma.max() - log_sigma.min()) < 0.1 * moved
    assert (log_sigma.max() - log_sigma.min()) > 0
    path = bdl.save(ens, tmp_path / "ens.safetensors")
    loaded = bdl.load(path, nn.Linear(2, 1))
    assert_close(loaded.predict(x).noise_variance, pred.noise_variance)


def test_errors():
    for bad in (0, -2, 2.5):
        with pytest.raises(ValueError, match="members must be a positive integer"):
            bdl.DeepEnsemble(_mlp(), members=bad)
    with pytest.raises(RuntimeError, match="no posterior samples yet; call fit"):
        bdl.DeepEnsemble(_mlp()).predict(torch.randn(2, 4))
