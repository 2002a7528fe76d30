"""L0 regularisation (Louizos et al., 2018) against the paper's closed forms and hand counts."""

import math

import pytest
import torch
from _policy import Z
from torch import nn
from torch.func import functional_call
from torch.testing import assert_close

import bayesdl as bdl
from bayesdl.methods.l0 import GAMMA, ZETA, _gate_weight


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _set_log_alpha(method, values):
    with torch.no_grad():
        for name, v in values.items():
            method._log_alpha(name).copy_(torch.as_tensor(v))


@pytest.mark.parametrize("beta", [2 / 3, 0.3])
def test_hard_concrete_probabilities_match_the_closed_forms(beta):
    """P(z = 0), P(z = 1) of sampled gates and the expected-L0 penalty. Paper, eq. 12:
    P(z=0) = P(s <= -gamma / (zeta - gamma)) = sigmoid(beta log(-gamma/zeta) - log_alpha);
    likewise P(z=1) = P(s >= (1 - gamma) / (zeta - gamma))
    = sigmoid(log_alpha - beta log((1 - gamma)/(zeta - 1))), which equals P(z=0) at
    log_alpha = 0 (the stretched distribution is then symmetric about 1/2);
    E[L0] = sum_g |g| (1 - P(z=0)). Tolerance: Z binomial SEs sqrt(P (1 - P) / n) per gate."""
    log_alpha = torch.linspace(-3.0, 3.0, 7, dtype=torch.float64)
    l0 = bdl.L0(nn.Linear(7, 3).double(), temperature=beta)
    _set_log_alpha(l0, {"": log_alpha})
    n = 40_000
    z = l0.sample_gates(n, _gen())[""]
    p0 = torch.sigmoid(beta * math.log(-GAMMA / ZETA) - log_alpha)
    p1 = torch.sigmoid(log_alpha - beta * math.log((1 - GAMMA) / (ZETA - 1)))
    for observed, p in (((z == 0).double().mean(0), p0), ((z == 1).double().mean(0), p1)):
        se = (p * (1 - p) / n).sqrt()
        assert ((observed - p).abs() <= Z * se).all(), (observed, p)
    assert ((z > 0) & (z < 1)).any(dim=0).all()  # a continuous part between the two atoms
    assert_close(l0.prob_nonzero()[""], 1 - p0)
    assert_close(l0.expected_l0(), 3 * (1 - p0).sum())  # a Linear(7, 3) input gates 3 weights


def test_deterministic_gates_follow_the_formula_and_predict_uses_them():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    l0 = bdl.L0(net)
    la0 = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
    la2 = torch.tensor([3.0, -3.0, 0.5, 1.0])
    _set_log_alpha(l0, {"0": la0, "2": la2})
    gates = l0.gates()
    for name, la in (("0", la0), ("2", la2)):
        expected = (torch.sigmoid(la) * (ZETA - GAMMA) + GAMMA).clamp(0, 1)
        assert_close(gates[name], expected)
    assert gates["0"][0] == 0 and gates["0"][-1] == 1  # both clamps are reached
    x = torch.randn(6, 5)
    h = torch.relu(net[0](x * gates["0"]))  # gates on the input units, by hand
    ref = torch.log_softmax(net[2](h * gates["2"]), -1)
    pred = l0.predict(x, deterministic=True)
    assert pred.samples.shape == (1, 6, 3)
    assert_close(pred.samples[0], ref)
    assert_close(l0.predict_deterministic(x).samples, pred.samples)


class _Convs(nn.Module):
    """Not a Sequential: a grouped convolution, flattening, a Linear."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 6, 3, padding=1, groups=2)
        self.fc = nn.Linear(6 * 5 * 5, 3)

    def forward(self, x):
        return self.fc(torch.tanh(self.conv(x)).flatten(1))


def test_gated_weights_equal_gated_inputs():
    """Prediction gates the weights, training gates the inputs: the same function."""
    torch.manual_seed(0)
    net = _Convs()
    z = {"conv": torch.rand(2, 4), "fc": torch.rand(2, 150)}
    x = torch.randn(3, 4, 5, 5)
    for s in range(2):
        w = _gate_weight(net.conv, net.conv.weight, z["conv"])[s]
        assert_close(net.conv._conv_forward(x, w, net.conv.bias),
                     net.conv(x * z["conv"][s].view(1, 4, 1, 1)))  # fmt: skip
        h = torch.randn(3, 150)
        w = _gate_weight(net.fc, net.fc.weight, z["fc"])[s]
        assert_close(h @ w.T + net.fc.bias, net.fc(h * z["fc"][s]))


def test_sampled_predict_is_vectorised_over_gate_draws():
    """predict(samples=S) equals S forward passes with the gate draws of sample_gates."""
    torch.manual_seed(0)
    l0 = bdl.L0(_Convs())
    _set_log_alpha(l0, {"conv": torch.randn(4), "fc": torch.randn(150)})
    x = torch.randn(7, 4, 5, 5)
    s = 5
    pred = l0.predict(x, samples=s, generator=_gen())
    params = l0.sample_params(s, _gen())
    assert set(params) == {"conv.weight", "fc.weight"}
    ref = [
        torch.log_softmax(functional_call(l0.model, {k: v[i] for k, v in params.items()}, (x,)), -1)
        for i in range(s)
    ]
    assert_close(pred.samples, torch.stack(ref))


def test_sparsity_matches_a_hand_count():
    """Linear(4, 3) - ReLU - Linear(3, 2) with hand-set gates; counting rule of sparsity()."""
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    l0 = bdl.L0(net)
    closed, open_ = -10.0, 10.0
    _set_log_alpha(l0, {"0": [open_, closed, open_, open_], "2": [open_, closed, open_]})
    sp = l0.sparsity()
    # layer 0: 3 of 4 inputs, 2 of 3 outputs (hidden unit 1 is not read) -> 6 of 12 weights
    # layer 2: 2 of 3 inputs, both outputs -> 4 of 6 weights; one example, 1 position each
    assert sp["layers"]["0"] == {"units": 4, "active_units": 3, "units_removed": 0.25,
                                 "weights_removed": 0.5, "flops_remaining": 0.5}  # fmt: skip
    assert sp["layers"]["2"]["weights_removed"] == pytest.approx(1 / 3)
    assert sp["weights_removed"] == pytest.approx(1 - 10 / 18)
    assert sp["units_removed"] == pytest.approx(2 / 7)
    assert sp["flops_remaining"] == pytest.approx(10 / 18)


def test_sparsity_counts_convolution_flops_at_their_output_size():
    """Conv2d(2, 3, 3) on 5x5 (3x3 outputs) - Flatten - Linear(27, 2), gates set by hand."""
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(27, 2))
    l0 = bdl.L0(net)
    fc = torch.full((27,), 10.0)
    fc[0] = -10.0  # one input of channel 0: channel 0 still used
    fc[9:18] = -10.0  # every input of channel 1: conv output channel 1 is removed
    _set_log_alpha(l0, {"0": [10.0, -10.0], "3": fc})
    with pytest.raises(ValueError, match="needs an example input x"):
        l0.sparsity()
    sp = l0.sparsity(torch.randn(4, 2, 5, 5))
    conv_kept, conv_all = 2 * 1 * 9, 3 * 2 * 9  # outputs x inputs x kernel
    fc_kept, fc_all = 17 * 2, 27 * 2
    assert sp["weights_removed"] == pytest.approx(1 - (conv_kept + fc_kept) / (conv_all + fc_all))
    assert sp["flops_remaining"] == pytest.approx(
        (9 * conv_kept + fc_kept) / (9 * conv_all + fc_all)  # 9 output positions per conv weight
    )
    assert sp["layers"]["3"]["units_removed"] == pytest.approx(10 / 27)


def test_l0_sparsifies_digits_and_keeps_map_accuracy():
    """The paper's claim on a small scale: >= 90% of the weights removed at (nearly) the
    accuracy of the dense network. 64-300-100-10 MLP on scikit-learn digits (1,347 train,
    450 test images), both methods 100 epochs of batch 128 with Adam (MAP at its usual lr
    1e-3, L0 at 1e-2 so that log_alpha can travel the ~3 nats to a closed gate in 1,100
    steps). Measured: MAP 97.3%, L0 97.6% (deterministic gates) with 94% of the weights
    removed (29/64 inputs, 20/300 and 79/100 hidden units kept). Other seeds give L0 - MAP
    of -0.2 and -1.1 points: one test example is 0.22 points and the binomial standard
    error of either accuracy about 0.7, so the 1-point margin is about that noise."""
    train, test = bdl.data.digits("train"), bdl.data.digits("test")
    x, y = train.x.flatten(1), train.y

    def net():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(64, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
                             nn.Linear(100, 10))  # fmt: skip

    def accuracy(pred):
        return (pred.probs.argmax(-1) == test.y).double().mean().item()

    fit = {"epochs": 100, "batch_size": 128, "progress": False}
    dense = bdl.MAP(net())
    dense.fit((x, y), lr=1e-3, generator=_gen(), **fit)
    l0 = bdl.L0(net(), l0_weight=0.1)
    l0.fit((x, y), lr=1e-2, generator=_gen(), **fit)
    acc_map, acc_l0 = (
        accuracy(dense.predict(test.x.flatten(1))),
        accuracy(l0.predict_deterministic(test.x.flatten(1))),
    )
    sp = l0.sparsity()
    print(f"MAP {acc_map:.4f}, L0 {acc_l0:.4f}, removed {sp['weights_removed']:.3f}")
    assert sp["weights_removed"] >= 0.9
    assert acc_l0 >= acc_map - 0.01
    # the gates' posterior predictive (sampled gates) is as accurate
    sampled = l0.predict(test.x.flatten(1), samples=30, generator=_gen())
    assert accuracy(sampled) >= acc_map - 0.01


def test_training_objective_is_nll_plus_l0_over_n_plus_weight_decay():
    """loss(N1) - loss(N2) with the same gate draws isolates the penalty terms."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    l0 = bdl.L0(net, l0_weight=0.7)
    x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    losses = {}
    for n in (10, 1000):  # the same per-example gates in both calls
        losses[n] = l0.loss(x, y, n, generator=_gen())
    log_prior = bdl.priors.Normal(1.0).log_prob(dict(net.named_parameters()))
    penalty = 0.7 * l0.expected_l0() - log_prior
    assert_close(losses[10] - losses[1000], penalty / 10 - penalty / 1000)


def test_l0_rejects_bad_arguments():
    net = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="l0_weight must be >= 0"):
        bdl.L0(net, l0_weight=-1.0)
    with pytest.raises(ValueError, match="droprate_init must lie in"):
        bdl.L0(net, droprate_init=1.0)
    with pytest.raises(ValueError, match="temperature must be positive"):
        bdl.L0(net, temperature=0.0)
    with pytest.raises(ValueError, match="no nn.Linear or nn.Conv2d"):
        bdl.L0(nn.Sequential(nn.ReLU()))
    with pytest.raises(ValueError, match="names no Linear/Conv2d layer"):
        bdl.L0(net, layers=["head"])
