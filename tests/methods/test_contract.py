"""One contract for every registered method: shapes, dtype/device, reproducibility,
save -> load -> identical predictions, and the vectorised predict against a loop."""

import pytest
import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.testing import assert_close

import bayesdl as bdl
from bayesdl.methods.mc_dropout import dropout_mask
from bayesdl.models import gal_cnn

METHODS = bdl.method_names()


def _net(dtype=torch.float32):
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 16), nn.Tanh(),
        nn.Dropout(0.2), nn.Linear(16, 3),
    ).to(dtype)  # fmt: skip


def _data(n=64, dtype=torch.float32):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 4, generator=g, dtype=dtype)
    return x, (x[:, 0] > 0).long() + (x[:, 1] > 1).long()


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("device", DEVICES)
def test_contract(name, dtype, device, tmp_path):
    x, y = (t.to(device) for t in _data(dtype=dtype))
    method = bdl.get_method(name)(_net(dtype).to(device))
    assert isinstance(method, bdl.methods.Method)
    report = method.fit((x, y), epochs=2, batch_size=16, progress=False, generator=_gen())
    assert len(report.losses) == 2 and report.n_data == 64 and report.wall_time_s > 0
    pred = method.predict(x[:10], samples=5, generator=_gen())
    s = min(5, method.max_samples or 5)  # MAP 1; sample banks and ensembles hold a few
    assert pred.samples.shape == (s, 10, 3)
    assert pred.samples.dtype == dtype and pred.samples.device == x.device
    assert_close(pred.probs.sum(-1), torch.ones(10, dtype=dtype))
    again = method.predict(x[:10], samples=5, generator=_gen())
    assert_close(pred.samples, again.samples, rtol=0, atol=0)
    # the differentiable path: the same draws, and a finite gradient with respect to x
    xg = x[:10].clone().requires_grad_()
    diff = method.predict_differentiable(xg, samples=5, generator=_gen())
    assert_close(diff.samples.detach(), pred.samples)
    diff.entropy().sum().backward()
    assert xg.grad is not None and xg.grad.shape == xg.shape and xg.grad.isfinite().all()
    path = bdl.save(method, tmp_path / "m.safetensors")
    loaded = bdl.load(path, _net(dtype).apply(_scramble).to(device))
    assert_close(loaded.predict(x[:10], samples=5, generator=_gen()).samples, pred.samples)


def _scramble(m):
    if isinstance(m, nn.Linear):
        nn.init.normal_(m.weight)


def test_every_input_sees_the_same_draws():
    x, _ = _data(20)
    for method in (bdl.MCDropout(_net()), bdl.MeanFieldVI(_net())):
        # chunk_size <= N: inputs in blocks, one sample per call; every block, same draws
        one_sample_per_call = method.predict(x, samples=8, chunk_size=20, generator=_gen())
        for rows in (3, 7):
            other = method.predict(x, samples=8, chunk_size=rows, generator=_gen())
            assert_close(other.samples, one_sample_per_call.samples)
        # one call for all samples: a subset of the inputs gets the same draws as the whole
        whole = method.predict(x, samples=8, chunk_size=10_000, generator=_gen())
        part = method.predict(x[:5], samples=8, chunk_size=10_000, generator=_gen())
        assert_close(part.samples, whole.samples[:, :5])
        # without a generator, inputs predicted in separate blocks still share the draws
        twice = method.predict(torch.cat([x[:1], x[:1]]), samples=8, chunk_size=8)
        assert_close(twice.samples[:, 0], twice.samples[:, 1])


def test_vi_vectorised_predict_equals_a_python_loop():
    x, _ = _data(12)
    vi = bdl.MeanFieldVI(_net(), subset=["3", "6"])  # the prefix (layers 0-2) is shared
    s = 6
    pred = vi.predict(x, samples=s, chunk_size=12, generator=_gen())  # one sample per chunk
    g = _gen()
    ref = []
    for _ in range(s):
        params = {k: v[0] for k, v in vi.sample_params(1, g).items()}
        ref.append(torch.log_softmax(functional_call(vi.model, params, (x,)), -1))
    assert_close(pred.samples, torch.stack(ref))


def _loop_reference(model, x, s, gen):
    """MC dropout by the model's own forward, one mask per dropout layer and sample."""

    def hook(m, inputs, output):
        return inputs[0] * dropout_mask(m, 1, inputs[0].shape[1:], inputs[0], gen)[0]

    model.eval()
    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, nn.Dropout | nn.Dropout2d)
    ]
    try:
        return torch.stack([torch.log_softmax(model(x), -1) for _ in range(s)])
    finally:
        for h in handles:
            h.remove()


class _Custom(nn.Module):
    """Not a Sequential: conv features, then a head with Dropout2d, dropout and Linear."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU())
        self.classifier = nn.Sequential(
            nn.Dropout2d(0.3), nn.Flatten(), nn.Dropout(0.4), nn.Linear(4 * 4 * 4, 3)
        )

    def forward(self, x):
        return self.classifier(self.features(x))


@pytest.mark.parametrize("case", ["sequential", "gal_cnn", "custom_head", "custom_whole"])
def test_mc_dropout_vectorised_predict_equals_a_python_loop(case):
    torch.manual_seed(0)
    if case == "sequential":
        model, x, head = _net(), _data(12)[0], None
    elif case == "gal_cnn":  # Dropout -> Flatten -> Linear is folded into the weights
        model, x, head = gal_cnn(image_size=12), torch.randn(12, 1, 12, 12), None
    else:
        model, x = _Custom(), torch.randn(12, 1, 6, 6)
        head = "classifier" if case == "custom_head" else None
    mc = bdl.MCDropout(model, head=head)
    s = 5
    pred = mc.predict(x, samples=s, chunk_size=12, generator=_gen())
    assert_close(pred.samples, _loop_reference(model, x, s, _gen()))


def test_mc_dropout_marginals_match_ordinary_train_mode_dropout():
    """Shared-per-sample masks give the same per-input predictive as nn.Dropout's masks."""
    model = _net()
    x, _ = _data(5)
    s = 4000
    ours = bdl.MCDropout(model).predict(x, samples=s, generator=_gen()).sample_probs
    model.train()
    torch.manual_seed(3)
    with torch.no_grad():
        ref = torch.softmax(model(x.repeat(s, 1)), -1).unflatten(0, (s, -1))
    from _policy import Z

    se = (ours.var(0) / s + ref.var(0) / s).sqrt()
    assert ((ours.mean(0) - ref.mean(0)).abs() <= Z * se).all()


def test_mc_dropout_keeps_batchnorm_in_eval_mode():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3)
    )
    mc = bdl.MCDropout(model)
    mc.fit(_data(32), epochs=1, progress=False)
    stats = model[1].running_mean.clone()
    mc.predict(_data(32)[0], samples=4)
    assert_close(model[1].running_mean, stats, rtol=0, atol=0)


def test_predict_restores_every_module_mode():
    model = _net()
    model.train()
    model[2].eval()  # a mixed state the user chose
    method = bdl.MCDropout(model)
    method.train()
    model[2].eval()
    method.predict(_data(4)[0], samples=3)
    assert model.training and not model[2].training and model[5].training


def test_fit_with_a_generator_ignores_and_keeps_the_global_rng():
    # nn.Dropout draws its training masks from torch's global RNG, which torch seeds at random
    # per process; with a generator, fit must not depend on (or move) that state.
    def fitted(global_seed: int) -> tuple[list[Tensor], Tensor]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3))
        method = bdl.MCDropout(model)
        x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
        torch.manual_seed(global_seed)
        method.fit((x, y), epochs=2, batch_size=16, progress=False,
                   generator=torch.Generator().manual_seed(1))  # fmt: skip
        return [p.detach().clone() for p in method.parameters()], torch.rand(3)

    params_a, after_a = fitted(123)
    params_b, after_b = fitted(456)
    for a, b in zip(params_a, params_b, strict=True):
        assert torch.equal(a, b)
    torch.manual_seed(123)
    assert torch.equal(after_a, torch.rand(3))  # the caller's global stream did not move
    assert not torch.equal(after_a, after_b)


def test_fit_zeroes_subnormal_weights():
    # A weight with no data gradient (its input is always 0) is pulled only by the prior, and
    # Adam leaves such weights stuck near 1e-38: subnormals, which slow CPU matmuls ~100x.
    tiny = torch.finfo(torch.float32).tiny
    torch.manual_seed(0)
    method = bdl.MAP(nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2)))
    first = method.model[0].weight
    with torch.no_grad():
        first[:, 0] = tiny / 4  # subnormal, as Adam leaves them
    x = torch.randn(32, 3)
    x[:, 0] = 0.0
    y = (x[:, 1] > 0).long()
    before = first[:, 1:].detach().clone()
    method.fit((x, y), epochs=1, batch_size=32, lr=1e-3, progress=False,
               optimizer=torch.optim.SGD, generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert torch.equal(first[:, 0], torch.zeros(8))
    assert not torch.equal(first[:, 1:], before) and (first[:, 1:].abs() >= tiny).all()
