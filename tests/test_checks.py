"""The one input check shared by fit, predict, the metrics and the active-learning loop."""

import time

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import bayesdl as bdl
import bayesdl._checks
from bayesdl._checks import (
    check_labels,
    check_model_input,
    check_output_memory,
    input_spec,
    output_size,
)
from bayesdl.models import gal_cnn


def _mlp(inputs=20, outputs=3):
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(inputs, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, outputs)
    )  # fmt: skip


def _cnn():
    torch.manual_seed(0)
    return gal_cnn(num_classes=10, image_size=8)


class _Custom(nn.Module):  # a forward pass that only running it would reveal
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(4, 2)
        self.body = nn.Linear(20, 4)

    def forward(self, x):
        return self.head(self.body(x))


def test_the_spec_is_read_from_the_first_layer():
    assert input_spec(_mlp()).shape == "(N, 20)"
    assert input_spec(_cnn()).shape == "(N, 1, H, W)"
    flat = nn.Sequential(nn.Flatten(), nn.Sequential(nn.Linear(64, 10)))
    assert input_spec(flat).shape == "(N, ...) with 64 values per example"
    assert input_spec(nn.Sequential(nn.Embedding(50, 8), nn.Flatten())).kind == "embedding"
    assert input_spec(_Custom()) is None
    assert input_spec(nn.Sequential(nn.LazyLinear(3))) is None  # not sized yet
    assert output_size(_mlp(outputs=7)) == 7 and output_size(_cnn()) == 10
    assert output_size(nn.Sequential(nn.Linear(3, 5), nn.Softmax(-1))) is None
    assert output_size(_Custom()) is None


@pytest.mark.parametrize(
    ("model", "x", "message"),
    [
        (_mlp(), torch.randn(20), r"shape \(20,\): one example without the batch dimension.*"
         r"\(N, 20\): use x.unsqueeze\(0\)"),
        (_mlp(), torch.randn(5, 19), r"x has 19 features \(shape \(5, 19\)\) but the model's "
         r"first layer '0' \(Linear\) takes \(N, 20\)"),
        (_mlp(), torch.randn(5, 1, 20), r"1 extra dimension\(s\).*use x.reshape\(5, 20\)"),
        (_cnn(), torch.randn(1, 8, 8), r"one example without the batch dimension"),
        (_cnn(), torch.randn(5, 8, 8), r"without the channel dimension.*x.unsqueeze\(1\)"),
        (_cnn(), torch.randn(5, 3, 8, 8), r"x has 3 channels .* takes \(N, 1, H, W\)"),
        (_cnn(), torch.randn(5, 8, 8, 1), r"channels last\? use x.movedim\(-1, 1\)"),
        (nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), torch.randn(8, 8),
         r"shape \(8, 8\): one example without the batch dimension"),
        (nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), torch.randn(4, 7, 7),
         r"x has 49 values per example .* pass 64 values per example"),
    ],
)  # fmt: skip
def test_shape_mistakes_name_the_expected_shape(model, x, message):
    with pytest.raises(ValueError, match=message):
        check_model_input(model, x)


def test_integer_and_bool_inputs_are_cast_and_token_indices_kept():
    net = _mlp()
    ints = torch.randint(0, 3, (4, 20))
    for x in (ints, ints.bool()):
        out = check_model_input(net, x)
        assert out.dtype == torch.float32
        assert_close(out, x.float())
    assert check_model_input(net.double(), ints).dtype == torch.float64
    embed = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(12, 2))
    assert check_model_input(embed, ints[:, :3]).dtype == torch.int64
    with pytest.raises(TypeError, match=r"takes integer token indices; use x.long\(\)"):
        check_model_input(embed, torch.randn(4, 3))
    with pytest.raises(TypeError, match="must be real"):
        check_model_input(net, torch.randn(4, 20, dtype=torch.complex64))
    # an unknown model: no shape is assumed, the generic checks still apply
    assert check_model_input(_Custom(), torch.randn(3, 20)).shape == (3, 20)
    with pytest.raises(ValueError, match=r"x contains 20 NaN value\(s\) in 1 row"):
        check_model_input(_Custom(), torch.tensor([[float("nan")] * 20]))


def test_output_memory_is_refused_before_any_allocation():
    # truth: 10**9 samples x 2 inputs x 3 float32 values = 24 GB; 3 copies at the peak
    with pytest.raises(
        ValueError,
        match=r"samples=1000000000 on 2 input\(s\) would need 24.0 GB for its \(S, N, 3\) "
        r"float32 outputs \(3x that at the peak\), but 10.0 GB is available on cpu; use fewer "
        r"samples .*chunk_size",
    ):
        check_output_memory(10**9, 2, 3, torch.float32, torch.device("cpu"), available=10**10)
    # exactly at the limit passes, one value more fails
    check_output_memory(10, 5, 2, torch.float64, torch.device("cpu"), available=3 * 10 * 5 * 2 * 8)
    with pytest.raises(ValueError, match="would need"):
        check_output_memory(10, 5, 2, torch.float64, torch.device("cpu"), available=2399)
    with pytest.raises(ValueError, match=r"at least .* \(S, N, \.\.\.\)"):
        check_output_memory(10**12, 1, None, torch.float32, torch.device("cpu"), available=10**9)


def test_labels_are_checked_once_for_everyone():
    assert check_labels(torch.tensor([0, 2, 1], dtype=torch.int32), 3, 3).dtype == torch.int64
    with pytest.raises(TypeError, match=r"y.long\(\).*bdl.likelihoods.Gaussian\(\)"):
        check_labels(torch.rand(3), 3, 3, regression_hint=True)
    with pytest.raises(ValueError, match=r"first indices \[1\] with values \[5\]"):
        check_labels(torch.tensor([0, 5, 1]), 3, 3)
    with pytest.raises(ValueError, match=r"e.g. \[-1, 5\]"):
        check_labels(torch.tensor([-1, 5, 1]), 3, 3, minibatch=True)
    # the metrics use the same check
    with pytest.raises(TypeError, match="y must be an integer tensor of class indices"):
        bdl.metrics.accuracy(torch.full((3, 2), 0.5), torch.zeros(3))


def test_active_loop_refuses_inputs_the_model_cannot_take_before_training():
    train, test = bdl.data.digits("train"), bdl.data.digits("test")

    def net():  # takes 63 features: the digits have 64
        return nn.Sequential(nn.Flatten(), nn.Linear(63, 10), nn.Dropout(0.5), nn.Linear(10, 10))

    learner = bdl.active.ActiveLearner(
        net, train, test, initial=10, step=5, budget=20, train_steps=5, progress=False
    )
    start = time.perf_counter()
    with pytest.raises(
        ValueError, match=r"train X has 64 values per example .* takes \(N, \.\.\.\) with 63"
    ):
        learner.run()
    assert time.perf_counter() - start < 5 and learner.method is None  # nothing was trained
    with pytest.raises(TypeError, match="train labels must be an integer tensor"):
        bdl.active.ActiveLearner(net, (train.x, train.y.float()), test, progress=False)


def test_fit_and_predict_check_their_inputs_against_the_model():
    x = torch.randn(30, 20)
    y = torch.arange(30) % 3
    method = bdl.MCDropout(_mlp())
    with pytest.raises(ValueError, match=r"X has 19 features \(shape \(30, 19\)\)"):
        method.fit((x[:, :19], y), epochs=1, progress=False)
    method.fit((x.round().long(), y), epochs=1, progress=False)  # integer inputs are cast
    with pytest.raises(ValueError, match="one example without the batch dimension"):
        method.predict(x[0])
    with pytest.raises(ValueError, match=r"1 extra dimension\(s\)"):
        method.predict(x[:, None])
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    ints = torch.randint(0, 2, (4, 20))
    assert_close(
        method.predict(ints, 3, generator=g()).samples,
        method.predict(ints.float(), 3, generator=g()).samples,
    )
    assert_close(
        method.predict(ints.bool(), 3, generator=g()).samples,
        method.predict(ints.float(), 3, generator=g()).samples,
    )


def test_a_huge_sample_count_fails_fast(monkeypatch):
    # a machine with 16 GB free (this test must not depend on the one it runs on)
    monkeypatch.setattr(bayesdl._checks, "available_memory", lambda device: 16 * 10**9)
    method = bdl.MCDropout(_mlp())
    start = time.perf_counter()
    with pytest.raises(
        ValueError, match=r"samples=1000000000 on 1 input\(s\) would need 12.0 GB .* but 16.0 GB"
    ):
        method.predict(torch.randn(1, 20), samples=10**9, chunk_size=100)
    assert time.perf_counter() - start < 2.0
    # a method with finitely many draws caps S first: MAP holds one, so this is cheap
    assert bdl.MAP(_mlp()).predict(torch.randn(2, 20), samples=10**9).samples.shape == (1, 2, 3)


def test_the_spec_follows_a_layer_replaced_after_a_predict():
    # predict keeps what it read from the layers while they stay the same objects; a
    # replaced layer (even one allocated where the old one was) is read again
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Sequential(nn.Linear(8, 3)))
    m = bdl.MAP(model)
    m.predict(torch.rand(2, 4))
    assert (input_spec(model).size, output_size(model)) == (4, 3)
    model[0] = nn.Linear(5, 8)
    model[2][0] = nn.Linear(8, 7)
    assert (input_spec(model).size, output_size(model)) == (5, 7)
    with pytest.raises(ValueError, match="has 4 features .* takes \\(N, 5\\)"):
        m.predict(torch.rand(2, 4))
    assert m.predict(torch.rand(2, 5)).probs.shape == (2, 7)
    del model[0]  # now ReLU, then the nested Linear(8, 7)
    assert input_spec(model).size == 8


def test_finite_inputs_whose_sum_overflows_are_accepted_and_nan_named():
    # the fast path sums; a sum that overflows falls back to the exact element-wise check
    big = torch.full((3, 4), 3e38)
    assert torch.isinf(big.sum()) and torch.isfinite(big).all()
    check_model_input(_mlp(inputs=4), big)
    bad = big.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(
        ValueError, match="1 NaN value\\(s\\) in 1 row\\(s\\), first indices \\[1\\]"
    ):
        check_model_input(_mlp(inputs=4), bad)
    inf = torch.zeros(3, 4)
    inf[2, 0] = -float("inf")
    with pytest.raises(
        ValueError, match="1 inf value\\(s\\) in 1 row\\(s\\), first indices \\[2\\]"
    ):
        check_model_input(_mlp(inputs=4), inf)


def test_predict_follows_a_parameter_replaced_after_a_predict():
    # placement reads the first parameter from the layer it was found in; a parameter
    # swapped for one of another dtype (same layer object) is what predict follows
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    m = bdl.MAP(model)
    assert m.predict(torch.rand(2, 4)).probs.dtype == torch.float32
    for layer in (model[0], model[2]):
        layer.weight = nn.Parameter(layer.weight.detach().double())
        layer.bias = nn.Parameter(layer.bias.detach().double())
    assert m.dtype == torch.float64
    assert m.predict(torch.rand(2, 4)).probs.dtype == torch.float64
    model[0].bias = None  # a parameter removed: still the weight first
    assert m.predict(torch.rand(2, 4)).probs.dtype == torch.float64
    del model[0].weight  # the first parameter gone from its layer: the walk finds the next
    model[0].weight = torch.zeros(8, 4, dtype=torch.float16)  # a plain tensor attribute
    assert bayesdl._checks.placement(model, bayesdl._checks.model_structure(model)) == (
        torch.device("cpu"), torch.float64,
    )  # fmt: skip


def test_non_finite_logits_name_the_input_rows():
    # the predictive's check counts rows along the inputs (dimension 1 of (S, N, C))
    logits = torch.zeros(4, 5, 3)
    logits[2, 3, 1] = float("nan")
    logits[0, 1, 0] = float("inf")
    with pytest.raises(ValueError, match="in 2 row\\(s\\), first indices \\[1, 3\\]"):
        bdl.CategoricalPredictive(logits)


def test_the_finiteness_check_does_not_warn_on_a_tensor_with_grad():
    # predict_differentiable and attributions check inputs that carry autograd
    import warnings

    x = torch.rand(3, 20, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_model_input(_mlp(), x)
