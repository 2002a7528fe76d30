"""Temperature scaling (Guo et al., 2017) against a known temperature and known effects."""

import math

import pytest
import torch
from _policy import Z
from torch import nn
from torch.testing import assert_close

import bayesdl as bdl
from bayesdl.calibrate import TemperatureScaling


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _synthetic(n, t_true, seed, classes=5, samples=1):
    """True logits l ~ N(0, 1.5^2), labels ~ softmax(l); the model reports t_true * l
    (overconfident for t_true > 1), plus per-sample jitter when samples > 1."""
    g = _gen(seed)
    logits = 1.5 * torch.randn(n, classes, generator=g, dtype=torch.float64)
    y = torch.multinomial(logits.softmax(-1), 1, generator=g).squeeze(-1)
    jitter = 0.3 * torch.randn(samples, n, classes, generator=g, dtype=torch.float64)
    return logits, t_true * (logits + (jitter if samples > 1 else 0)), y


def test_recovers_a_known_temperature():
    """The fitted T is the maximum-likelihood estimate of the true temperature. Its
    standard error follows from the Fisher information of beta = 1/T,
    I = sum_n Var_{p_n}(z_n) with p_n = softmax(z_n / T) the true class probabilities and
    z_n the model's logits; SE(T) = SE(beta) T^2 (delta method). Tolerance: Z standard errors.
    """
    t_true = 2.5
    logits, model_logits, y = _synthetic(5000, t_true, seed=0)
    cal = TemperatureScaling().fit(model_logits, y)
    p = logits.softmax(-1)
    z = model_logits
    fisher = ((p * z**2).sum(-1) - (p * z).sum(-1) ** 2).sum()
    se = t_true**2 / fisher.sqrt()
    assert se < 0.05 * t_true  # the test can tell a wrong temperature
    assert abs(cal.temperature - t_true) <= Z * se, (cal.temperature, float(se))


def test_keeps_the_arg_max_of_one_sample_and_the_decomposition():
    _, model_logits, y = _synthetic(500, 2.0, seed=1)
    pred = bdl.CategoricalPredictive(model_logits.unsqueeze(0))
    cal = TemperatureScaling().fit(pred, y)
    scaled = cal(pred)
    assert torch.equal(scaled.predicted(), pred.predicted())
    assert scaled.entropy().mean() > pred.entropy().mean()  # softened (T > 1)
    # S samples: each sample is rescaled; total = aleatoric + epistemic still holds
    _, logits_s, y_s = _synthetic(500, 2.0, seed=2, samples=6)
    pred_s = bdl.CategoricalPredictive(logits_s)
    scaled_s = TemperatureScaling().fit(pred_s, y_s)(pred_s)
    assert scaled_s.samples.shape == (6, 500, 5)
    assert torch.equal(scaled_s.samples.argmax(-1), pred_s.samples.argmax(-1))
    assert_close(scaled_s.entropy(), scaled_s.expected_entropy() + scaled_s.mutual_information())


def test_reduces_the_ece_of_an_overconfident_model():
    """Fit on a validation split, measure ECE on a separate test split. Before: the model
    is 3x overconfident. After: the remaining ECE is at the level of the binning noise
    (about sqrt(conf (1 - conf) / n_bin) per bin, ~0.02 here), far below the original."""
    _, logits, y = _synthetic(4000, 3.0, seed=3, samples=4)
    val, test = slice(0, 2000), slice(2000, None)
    cal = TemperatureScaling().fit(bdl.CategoricalPredictive(logits[:, val]), y[val])
    before = bdl.metrics.ece(bdl.CategoricalPredictive(logits[:, test]).probs, y[test])
    after = bdl.metrics.ece(cal(logits[:, test]).probs, y[test])
    assert before > 0.15 and after < 0.04, (before, after)


def test_works_on_a_methods_predictive():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3))
    g = _gen(4)
    x, y = torch.randn(64, 2, generator=g), torch.randint(0, 3, (64,), generator=g)
    pred = bdl.MCDropout(net).predict(x, samples=8, generator=_gen())
    cal = TemperatureScaling().fit(pred, y)
    nll = -pred.log_likelihood(y).mean()
    assert -cal(pred).log_likelihood(y).mean() <= nll + 1e-6  # T = 1 is a candidate
    assert math.isfinite(cal.temperature) and cal.temperature > 0


def test_errors():
    logits = torch.randn(10, 3)
    y = torch.randint(0, 3, (10,))
    gaussian = bdl.GaussianPredictive(torch.zeros(2, 10, 1), torch.tensor(1.0))
    with pytest.raises(TypeError, match="needs a CategoricalPredictive"):
        TemperatureScaling().fit(gaussian, y)
    with pytest.raises(ValueError, match=r"y must hold class indices in \[0, 3\)"):
        TemperatureScaling().fit(logits, y + 1)
    with pytest.raises(ValueError, match=r"y must have shape \(N,\) = \(10,\)"):
        TemperatureScaling().fit(logits, y[:5])
    with pytest.raises(TypeError, match="y must be an integer tensor"):
        TemperatureScaling().fit(logits, y.double())
    bad = logits.clone()
    bad[3, 1] = math.nan
    with pytest.raises(ValueError, match=r"NaN value\(s\) in 1 row\(s\), first indices \[3\]"):
        TemperatureScaling().fit(bad, y)
    with pytest.raises(ValueError, match="logits must have shape"):
        TemperatureScaling().fit(torch.randn(2, 2, 10, 3), y)
    with pytest.raises(RuntimeError, match="call fit first"):
        TemperatureScaling()(logits)
    with pytest.raises(ValueError, match="temperature must be positive"):
        TemperatureScaling(temperature=0.0)
    assert_close(TemperatureScaling(2.0)(logits).samples[0], (logits / 2).log_softmax(-1))
