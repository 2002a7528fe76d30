"""``bayesdl.explain``: attributions against their definitions, pruning, sparsity, errors."""

import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import bayesdl as bdl
from bayesdl.explain import attribute, sparsity, uncertainty, uncertainty_function

pytest.importorskip("captum")


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _net(inputs=5, out=3, dtype=torch.float32, drop=0.2):
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(inputs, 16), nn.ReLU(), nn.Dropout(drop), nn.Linear(16, out)
    ).to(dtype)  # fmt: skip


def _x(n=4, inputs=5, dtype=torch.float32):
    return 2 * torch.randn(n, inputs, generator=_gen(3), dtype=dtype)


# -- attribution against its definition --------------------------------------------------------
@pytest.mark.parametrize("kind", ["vi", "mc-dropout"])
@pytest.mark.parametrize("target", ["epistemic", "aleatoric", "total"])
def test_integrated_gradients_is_complete_and_converges(kind, target):
    """Sum of attributions -> u(x) - u(baseline), the error shrinking as steps grow."""
    method = bdl.get_method(kind)(_net(dtype=torch.float64))
    x = _x(dtype=torch.float64)
    u = uncertainty_function(method, target, 10, generator=_gen(1))
    with torch.no_grad():
        change = u(x) - u(torch.zeros_like(x))  # the truth: the target at both ends
    errors = []
    for steps in (4, 32, 256):
        a = attribute(method, x, target, samples=10, generator=_gen(1), steps=steps,
                      chunk_size=20_000)  # fmt: skip
        assert a.shape == x.shape
        errors.append(float((a.sum(1) - change).abs().max()))
    # a ReLU network's kinks slow the quadrature's convergence (not monotone at every step)
    assert errors[2] < errors[1] < errors[0] and errors[2] < errors[0] / 10, errors
    assert errors[2] <= 2e-3 * float(change.abs().max()), (errors, change)


def test_gradient_is_the_derivative_of_the_uncertainty():
    """``how="gradient"`` against central finite differences of u, in float64."""
    method = bdl.MeanFieldVI(_net(dtype=torch.float64))
    x = _x(3, dtype=torch.float64)
    u = uncertainty_function(method, "epistemic", 10, generator=_gen(2))
    grad = attribute(method, x, "epistemic", "gradient", samples=10, generator=_gen(2))
    h, fd = 1e-6, torch.zeros_like(x)
    with torch.no_grad():
        for j in range(x.shape[1]):
            e = torch.zeros_like(x)
            e[:, j] = h
            fd[:, j] = (u(x + e) - u(x - e)) / (2 * h)
    assert_close(grad, fd, rtol=1e-5, atol=1e-8)


def test_occlusion_is_the_drop_when_a_feature_is_set_to_the_baseline():
    method = bdl.MCDropout(_net())
    x, base = _x(3), torch.full((5,), 0.5)
    u = uncertainty_function(method, "total", 16, generator=_gen(4))
    occ = attribute(method, x, "total", "occlusion", samples=16, baseline=base, generator=_gen(4))
    with torch.no_grad():
        for j in range(5):
            moved = x.clone()
            moved[:, j] = 0.5
            assert_close(occ[:, j], u(x) - u(moved))


def test_common_random_numbers_whatever_the_batch_and_chunking():
    method = bdl.MeanFieldVI(_net())
    x = _x(50)
    u = uncertainty_function(method, "total", 30, generator=_gen(5))
    whole = u(x)
    for rows in (30, 90, 10_000):  # one input per call, three, all at once
        small = uncertainty_function(method, "total", 30, generator=_gen(5), chunk_size=rows)
        assert_close(small(x), whole)
        assert_close(torch.cat([small(x[:7]), small(x[7:])]), whole)
    x = _x()
    a = attribute(method, x, samples=8, generator=_gen(5), steps=4)
    assert_close(attribute(method, x, samples=8, generator=_gen(5), steps=4), a, rtol=0, atol=0)
    assert not torch.equal(attribute(method, x, samples=8, generator=_gen(6), steps=4), a)


def test_regression_targets_are_the_variance_split():
    method = bdl.MeanFieldVI(_net(out=2), bdl.likelihoods.Gaussian(sigma=0.3))
    pred = method.predict(_x(), 50, generator=_gen())
    epi = ((pred.samples - pred.samples.mean(0)) ** 2).mean(0).sum(-1)  # by definition
    assert_close(uncertainty(pred, "epistemic"), epi)
    assert_close(uncertainty(pred, "aleatoric"), torch.full((4,), 2 * 0.09))
    assert_close(uncertainty(pred, "total"), epi + 2 * 0.09)
    a = attribute(method, _x(), "epistemic", samples=10, steps=4, generator=_gen())
    assert a.shape == (4, 5) and a.isfinite().all()


def test_classification_targets_are_mi_expected_entropy_and_entropy():
    p = bdl.MCDropout(_net()).predict(_x(), 30, generator=_gen())
    probs = p.sample_probs.double()
    ent = -(probs.mean(0) * probs.mean(0).log()).sum(-1)
    exp_ent = -(probs * probs.log()).sum(-1).mean(0)
    assert_close(uncertainty(p, "total").double(), ent, rtol=1e-5, atol=1e-6)
    assert_close(uncertainty(p, "aleatoric").double(), exp_ent, rtol=1e-5, atol=1e-6)
    assert_close(uncertainty(p, "epistemic").double(), ent - exp_ent, rtol=1e-4, atol=1e-6)


# -- synthetic truth: which feature is off the training distribution ---------------------------
D = 4


def _regression(n, g):
    x = torch.rand(n, D, generator=g) * 2 - 1
    y = torch.sin(2 * x[:, :1]) + x[:, 1:2] * x[:, 2:3] + 0.5 * x[:, 3:4]
    return x, y + 0.05 * torch.randn(n, 1, generator=g)


def _mlp(drop=0.0):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(D, 32), nn.ReLU(), nn.Dropout(drop), nn.Linear(32, 32),
                         nn.ReLU(), nn.Dropout(drop), nn.Linear(32, 1))  # fmt: skip


SHIFT_METHODS = {
    "mc-dropout": (lambda lik: bdl.MCDropout(_mlp(0.2), lik), 60, 1e-2),
    "vi": (lambda lik: bdl.MeanFieldVI(_mlp(), lik), 100, 2e-2),
    "laplace": (lambda lik: bdl.Laplace(_mlp(), lik, subset="all", hessian="diag"), 60, 1e-2),
    "ensemble": (lambda lik: bdl.DeepEnsemble(_mlp(), lik, members=5), 60, 1e-2),
}


@pytest.mark.parametrize("name", list(SHIFT_METHODS))
def test_epistemic_attribution_finds_the_feature_moved_off_the_data(name):
    """A typical input with one feature moved far outside [-1, 1]: that feature ranks first
    in the epistemic attribution (integrated gradients from the data's centre) in >= 90%
    of 20 cases."""
    make, epochs, lr = SHIFT_METHODS[name]
    x, y = _regression(400, _gen(0))
    method = make(bdl.likelihoods.Gaussian(sigma=0.05))
    method.fit((x, y), epochs=epochs, lr=lr, batch_size=100, progress=False, generator=_gen(0))
    g = _gen(1)
    n = 20
    moved, _ = _regression(n, g)
    feature = torch.randint(D, (n,), generator=g)
    sign = torch.randint(2, (n,), generator=g) * 2.0 - 1
    moved[torch.arange(n), feature] = 4.0 * sign
    a = attribute(method, moved, "epistemic", samples=30, steps=16, generator=_gen(2))
    hits = (a.argmax(1) == feature).double().mean().item()
    assert hits >= 0.9, (name, hits)


def test_noisy_labels_raise_aleatoric_not_epistemic_attribution():
    """Labels are coin flips where x1 > 0.3 and follow x0 elsewhere: moving x1 from the clean
    region into the noisy one raises the aleatoric uncertainty (the attribution of x1, from
    the clean input, is its whole change) and leaves the epistemic part small."""
    g = _gen(0)
    x = torch.rand(600, 2, generator=g) * 2 - 1
    y = (x[:, 0] > 0).long()
    noisy = x[:, 1] > 0.3
    y[noisy] = torch.randint(2, (int(noisy.sum()),), generator=g)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                        nn.Linear(32, 2))  # fmt: skip
    method = bdl.DeepEnsemble(net, members=5)
    method.fit((x, y), epochs=60, lr=1e-2, batch_size=200, progress=False, generator=_gen(0))
    clean = torch.rand(20, 2, generator=g) * torch.tensor([1.6, 0.6]) + torch.tensor([-0.8, -0.8])
    clean = clean[clean[:, 0].abs() > 0.3]  # away from the clean class boundary
    into_noise = clean.clone()
    into_noise[:, 1] = 0.7
    ale = attribute(method, into_noise, "aleatoric", baseline=clean, steps=16, generator=_gen())
    epi = attribute(method, into_noise, "epistemic", baseline=clean, steps=16, generator=_gen())
    assert (ale[:, 0] == 0).all() and (epi[:, 0] == 0).all()  # x0 did not move
    rises = (ale[:, 1] > 0.2) & (ale[:, 1] > 3 * epi[:, 1].abs())
    assert rises.double().mean() >= 0.9, (ale[:, 1], epi[:, 1])


# -- pruning --------------------------------------------------------------------------------------
def _data(n=64):
    x = torch.randn(n, 5, generator=_gen(1))
    return x, (x[:, 0] > 0).long() + (x[:, 1] > 1).long()


def _fitted(kind):
    data = _data()
    if kind == "vi":
        m = bdl.MeanFieldVI(_net())
        m.fit(data, epochs=3, batch_size=16, progress=False, generator=_gen())
    elif kind == "laplace":
        m = bdl.Laplace(_net(), subset="all", hessian="diag")
        m.fit(data, epochs=3, batch_size=16, progress=False, generator=_gen())
    else:
        m = bdl.SWAG(_net(), swa_start=0.5, rank=4)
        m.fit(data, epochs=6, batch_size=16, progress=False, generator=_gen())
    return m


@pytest.mark.parametrize("kind", ["vi", "laplace", "swag"])
def test_prune_fixes_the_lowest_snr_weights_at_zero_through_save_and_load(kind, tmp_path):
    method = _fitted(kind)
    x = _data()[0][:10]
    before = method.predict(x, 8, generator=_gen())
    none, report0 = bdl.prune(method, 0.0)
    assert sum(report0.removed.values()) == 0
    assert_close(none.predict(x, 8, generator=_gen()).samples, before.samples, rtol=0, atol=0)

    pruned, report = bdl.prune(method, 0.6, by="snr")
    post = method.weight_posterior()
    weights = {n: ms for n, ms in post.items() if ms[0].dim() >= 2}
    total = sum(m.numel() for m, _ in weights.values())
    assert sum(report.removed.values()) == round(0.6 * total)
    assert report.total == {n: m.numel() for n, (m, _) in weights.items()}
    # brute force: every removed weight has an SNR no higher than every kept one
    saved = bdl.save(pruned, tmp_path / "p.safetensors")
    loaded = bdl.load(saved, _net())
    draws = loaded.sample_params(50, generator=_gen())
    removed_snr, kept_snr = [], []
    for name, (mean, sd) in weights.items():
        zero = (draws[name] == 0).all(0)
        snr = mean.abs() / sd
        removed_snr.append(snr[zero])
        kept_snr.append(snr[~zero])
        assert int(zero.sum()) == report.removed[name]
    assert torch.cat(removed_snr).max() <= torch.cat(kept_snr).min()
    assert_close(loaded.predict(x, 8, generator=_gen()).samples,
                 pruned.predict(x, 8, generator=_gen()).samples)  # fmt: skip
    assert method.weight_posterior()[next(iter(weights))][0].count_nonzero() > 0  # unchanged


def test_prune_by_magnitude_removes_the_smallest_means():
    method = _fitted("vi")
    pruned, report = bdl.prune(method, 0.5, by="magnitude")
    means = {n: m for n, (m, _) in method.weight_posterior().items() if m.dim() >= 2}
    after = {n: m for n, (m, _) in pruned.weight_posterior().items() if m.dim() >= 2}
    removed = torch.cat([means[n][after[n] == 0] for n in means]).abs()
    kept = torch.cat([means[n][after[n] != 0] for n in means]).abs()
    assert removed.max() <= kept.min() and sum(report.removed.values()) == len(removed)


@pytest.mark.parametrize("hessian", ["diag", "kfac", "full"])
def test_laplace_marginal_sd_is_the_diagonal_of_the_covariance(hessian):
    m = bdl.Laplace(_net(), subset="all" if hessian == "diag" else "last_layer", hessian=hessian)
    m.fit(_data(), epochs=2, batch_size=16, progress=False, generator=_gen())
    sd = torch.cat([s.flatten() for _, s in m.weight_posterior().values()])
    assert_close(sd, m.posterior_covariance().diagonal().sqrt())


def test_swag_marginal_sd_matches_its_draws():
    m = _fitted("swag")
    post = m.weight_posterior()
    draws = m.sample_params(4000, generator=_gen(7))
    for name, (mean, sd) in post.items():
        # sd of the sample sd of 4000 Gaussian draws ~ sd / sqrt(2 * 4000); 5 of those
        assert_close(draws[name].std(0), sd, rtol=5 / math.sqrt(8000), atol=1e-6)
        assert_close(draws[name].mean(0), mean, rtol=0, atol=float(5 * sd.max() / math.sqrt(4000)))


def test_bad_input_is_a_one_line_error():
    vi = bdl.MeanFieldVI(_net())
    for fraction in (1.0, -0.1, "0.5", True):
        with pytest.raises(ValueError, match="fraction must be a number in \\[0, 1\\)"):
            bdl.prune(vi, fraction)
    with pytest.raises(ValueError, match="by must be 'snr' or 'magnitude'"):
        bdl.prune(vi, 0.5, by="size")
    with pytest.raises(ValueError, match="MAP has none"):
        bdl.prune(bdl.MAP(_net()), 0.5, by="snr")
    kfac = bdl.Laplace(_net())
    kfac.fit(_data(), epochs=1, progress=False)
    with pytest.raises(TypeError, match="hessian='diag'"):
        bdl.prune(kfac, 0.5)
    with pytest.raises(ValueError, match="x has 4 features"):
        attribute(vi, torch.randn(3, 4))
    with pytest.raises(ValueError, match="how must be one of"):
        attribute(vi, _x(), how="shap")
    with pytest.raises(ValueError, match="target must be one of"):
        attribute(vi, _x(), target="both")
    with pytest.raises(ValueError, match="baseline must have the shape"):
        attribute(vi, _x(), baseline=torch.zeros(3))
    with pytest.raises(ValueError, match="window must be 1 positive"):
        attribute(vi, _x(), how="occlusion", window=(2, 2))
    with pytest.raises(TypeError, match="method must be a bayesdl method"):
        attribute(_net(), _x())
    for call in (lambda: bdl.prune(bdl.MAP(_net()), 0.5), lambda: bdl.prune(kfac, 0.5),
                 lambda: attribute(vi, torch.randn(3, 4))):  # fmt: skip
        with pytest.raises((ValueError, TypeError)) as info:
            call()
        assert "\n" not in str(info.value)


# -- sparsity ---------------------------------------------------------------------------------
def test_sparsity_gathers_snr_and_gates_per_layer():
    vi = _fitted("vi")
    rows = sparsity(vi)
    assert [r["name"] for r in rows] == ["0.weight", "3.weight"]
    for r in rows:
        mean, sd = vi.weight_posterior()[r["name"]]
        snr = (mean.abs() / sd).flatten()
        assert r["weights"] == mean.numel() and r["zero"] == 0
        assert r["snr_median"] == pytest.approx(float(snr.median()))
        assert r["snr_below_1"] == pytest.approx(float((snr < 1).double().mean()))
    pruned, report = bdl.prune(vi, 0.5)
    assert [r["zero"] for r in sparsity(pruned)] == list(report.removed.values())
    l0 = bdl.L0(_net())
    gates = {r["name"]: r["gates_open"] for r in sparsity(l0)}
    expected = {f"{n}.weight": float(p.detach().mean()) for n, p in l0.prob_nonzero().items()}
    assert gates == pytest.approx(expected)
    assert sparsity(bdl.MAP(_net())) == []


def test_sparsity_gathers_the_horseshoe_unit_scales():
    """A prior with latent scales adds each weight tensor's median posterior scale."""
    m = bdl.MAP(_net(), prior=bdl.priors.Horseshoe(1.0, group="unit"))
    scales = m.prior.unit_scales()
    rows = {r["name"]: r for r in sparsity(m)}
    assert set(rows) == {n for n, p in m.model.named_parameters() if p.dim() >= 2}
    for name, r in rows.items():
        assert r["scale_median"] == pytest.approx(float(scales[name].flatten().median()))
        assert r["snr_median"] is None and r["gates_open"] is None
    assert all(r["scale_median"] is None for r in sparsity(_fitted("vi")))


def test_plot_explanations_draws_heat_maps_for_images_and_bars_for_features(tmp_path):
    pytest.importorskip("matplotlib")
    from bayesdl.plotting import plot_explanations

    pred = bdl.CategoricalPredictive(torch.randn(5, 2, 3, generator=_gen()))
    images = torch.rand(2, 1, 8, 8, generator=_gen())
    fig = plot_explanations(images, images - 0.5, pred, titles=["a", "b"], path=tmp_path / "i.png")
    heat = [ax for ax in fig.axes if ax.get_title() == "epistemic attribution"]
    assert len(heat) == 2 and heat[0].images[-1].get_array().shape == (8, 8)
    assert (tmp_path / "i.png").stat().st_size > 0
    table = torch.tensor([[0.5, -1.0, 2.0], [0.0, 1.0, -0.5]])
    fig = plot_explanations(table, table, pred, feature_names=["age", "dose", "weight"])
    bars = fig.axes[0].patches
    assert [b.get_width() for b in bars] == pytest.approx([0.5, -1.0, 2.0])
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["age", "dose", "weight"]
    with pytest.raises(ValueError, match="one shape"):
        plot_explanations(table, table[:, :2], pred)
