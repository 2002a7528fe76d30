"""Each plotting function draws the expected panels, saves a PNG and rejects bad input."""

import sys

import pytest
import torch

pytest.importorskip("matplotlib")

from bayesdl import CategoricalPredictive, GaussianPredictive, metrics, plotting  # noqa: E402


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _regression_predictives(g=50):
    means = torch.randn(8, g, 1, generator=_gen(1))
    return {
        "MAP": GaussianPredictive(means[:1], torch.tensor(0.01)),
        "VI": GaussianPredictive(means, torch.tensor(0.01)),
    }


def _titles(fig):
    return [a.get_title() for a in fig.axes if a.get_title()]


def test_beta_interval_matches_the_exact_quantiles():
    stats = pytest.importorskip("scipy.stats")
    for a, b in [(9.0, 5.0), (1.0, 1.0), (2.5, 30.0)]:
        lo, hi = plotting.beta_interval(a, b, 0.95)
        assert lo == pytest.approx(stats.beta.ppf(0.025, a, b), abs=1e-4)
        assert hi == pytest.approx(stats.beta.ppf(0.975, a, b), abs=1e-4)


def test_plot_coin_posterior(tmp_path):
    path = tmp_path / "coin.png"
    fig = plotting.plot_coin_posterior(7, 3, 2.0, 2.0, path=path)
    assert len(fig.axes) == 1
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert "posterior Beta(9, 5)" in labels and "prior Beta(2, 2)" in labels
    assert path.stat().st_size > 0


def test_plot_regression_one_panel_per_method(tmp_path):
    x_grid = torch.linspace(-2, 2, 50)[:, None]
    x, y = torch.rand(20, 1), torch.rand(20, 1)
    fig = plotting.plot_regression(
        x, y, x_grid, _regression_predictives(), path=tmp_path / "reg.png"
    )
    assert len(fig.axes) == 2
    assert _titles(fig) == ["MAP", "VI"]
    assert (tmp_path / "reg.png").exists()


def test_plot_confidence_maps_three_maps_with_colour_bars(tmp_path):
    gx, gy = torch.meshgrid(torch.linspace(-1, 1, 12), torch.linspace(-1, 1, 10), indexing="xy")
    logits = torch.randn(6, gx.numel(), 2, generator=_gen(2))
    x, y = torch.randn(30, 2, generator=_gen(3)), torch.randint(0, 2, (30,), generator=_gen(4))
    fig = plotting.plot_confidence_maps(
        x, y, gx, gy, CategoricalPredictive(logits[:1]), CategoricalPredictive(logits),
        bnn_name="VI", path=tmp_path / "maps.png",
    )  # fmt: skip
    assert len(fig.axes) == 6  # three maps + three colour bars
    titles = _titles(fig)
    assert len(titles) == 3 and titles[0].startswith("MAP") and titles[2].startswith("VI")
    assert (tmp_path / "maps.png").exists()


def test_plot_reliability_one_panel_per_method(tmp_path):
    y = torch.randint(0, 3, (200,), generator=_gen(5))
    bins = {
        name: metrics.reliability(torch.softmax(torch.randn(200, 3, generator=_gen(i)), -1), y)
        for i, name in enumerate(["MAP", "VI", "MC dropout"])
    }
    fig = plotting.plot_reliability(bins, path=tmp_path / "rel.png")
    assert len(fig.axes) == 3
    assert all("ECE" in t for t in _titles(fig))
    assert (tmp_path / "rel.png").exists()


def test_plot_referral_draws_each_curve_in_percent(tmp_path):
    y = torch.randint(0, 3, (100,), generator=_gen(7))
    curves = {}
    for i, name in enumerate(["MAP", "MC dropout"]):
        probs = torch.softmax(torch.randn(100, 3, generator=_gen(i)), -1)
        curves[name] = metrics.referral_curve(probs, y, -probs.max(-1).values)
    fig = plotting.plot_referral(curves, path=tmp_path / "ref.png")
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["MAP", "MC dropout"]
    assert lines[1].get_ydata() == pytest.approx(curves["MC dropout"].accuracy_retained * 100)
    assert (tmp_path / "ref.png").exists()


def test_plot_score_histograms_one_panel_per_method_two_sets_each(tmp_path):
    scores = {name: (torch.rand(50), torch.rand(60) + 1) for name in ["MAP", "VI", "MCD"]}
    fig = plotting.plot_score_histograms(scores, bins=10, path=tmp_path / "h.png")
    assert len(fig.axes) == 3 and (tmp_path / "h.png").exists()
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert len(heights) == 20  # two histograms of 10 bins on shared edges
    width = fig.axes[0].patches[0].get_width()
    assert sum(heights[:10]) * width == pytest.approx(1.0)  # densities integrate to 1


def test_draws_into_given_axes():
    from matplotlib.figure import Figure

    fig = Figure()
    axes = fig.subplots(1, 2)
    x_grid = torch.linspace(-2, 2, 50)[:, None]
    out = plotting.plot_regression(
        torch.rand(5, 1), torch.rand(5, 1), x_grid, _regression_predictives(), ax=axes
    )
    assert out is fig and len(fig.axes) == 2
    with pytest.raises(ValueError, match="2 Axes"):
        plotting.plot_regression(
            torch.rand(5, 1), torch.rand(5, 1), x_grid, _regression_predictives(), ax=axes[0]
        )
    single = Figure().subplots()
    assert plotting.plot_coin_posterior(1, 1, ax=single) is single.figure


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="heads"):
        plotting.plot_coin_posterior(-1, 3, 1.0, 1.0)
    with pytest.raises(ValueError, match="prior_a"):
        plotting.plot_coin_posterior(1, 3, 0.0, 1.0)
    with pytest.raises(ValueError, match="empty"):
        plotting.plot_regression(torch.rand(3, 1), torch.rand(3, 1), torch.rand(4, 1), {})
    with pytest.raises(ValueError, match="x_grid"):
        plotting.plot_regression(
            torch.rand(3, 1), torch.rand(3, 1), torch.rand(7, 1), _regression_predictives()
        )
    with pytest.raises(ValueError, match="empty"):
        plotting.plot_reliability({})
    with pytest.raises(ValueError, match="empty"):
        plotting.plot_referral({})
    with pytest.raises(ValueError, match="empty"):
        plotting.plot_score_histograms({})


def test_missing_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"pip install bayesdl\[plot\]"):
        plotting.plot_coin_posterior(1, 1)


def test_plot_fit_draws_the_two_terms_of_the_objective(tmp_path):
    from bayesdl.types import FitReport

    data, prior = [2.0, 1.5, 1.2], [0.5, 0.4, 0.35]
    report = FitReport(losses=[d + p for d, p in zip(data, prior, strict=True)], data_loss=data,
                       prior_loss=prior)  # fmt: skip
    fig = plotting.plot_fit(report, path=tmp_path / "fit.png")
    left, right = fig.axes
    assert list(left.lines[0].get_ydata()) == data and list(right.lines[0].get_ydata()) == prior
    assert list(left.lines[1].get_ydata()) == report.losses
    assert (tmp_path / "fit.png").stat().st_size > 0
    with pytest.raises(ValueError, match="no per-epoch data_loss"):
        plotting.plot_fit(FitReport(losses=[1.0]))
    with pytest.raises(ValueError, match="one value per epoch"):
        plotting.plot_fit(FitReport(data_loss=[1.0, 2.0], prior_loss=[1.0]))


def test_plot_function_draws_one_column_per_prior(tmp_path):
    x, y = torch.rand(10, 1), torch.rand(10, 1)
    grid = torch.linspace(-1, 2, 25)[:, None]
    draws = {name: (torch.randn(5, 25), torch.randn(5, 25)) for name in ("a", "b", "c")}
    fig = plotting.plot_function_draws(x, y, grid, draws, path=tmp_path / "f.png")
    assert len(fig.axes) == 6 and (tmp_path / "f.png").stat().st_size > 0
    assert [len(ax.lines) for ax in fig.axes] == [5] * 6  # every draw is drawn
    assert fig.axes[3].get_title() == "a: posterior (VI)"
