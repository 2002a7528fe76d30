"""Tests for the bundled sets (digits, boston) and the synthetic toy sets."""

from __future__ import annotations

import importlib
import inspect
import sys

import numpy as np
import pytest
import torch

import bayesdl.data
from bayesdl.data import boston, digits, regression_gap, two_moons

uci_module = importlib.import_module("bayesdl.data.uci")


def _global_rng_state():
    return torch.get_rng_state().clone(), np.random.get_state()[1].copy()


def test_digits_split():
    train, test = digits("train"), digits("test")
    assert len(train) + len(test) == 1797
    assert len(test) == 450  # ceil(0.25 * 1797)
    for d in (train, test):
        assert d.x.shape[1:] == (1, 8, 8) and d.x.dtype == torch.float32
        assert d.y.dtype == torch.int64 and d.num_classes == 10
        assert float(d.x.min()) == 0.0 and float(d.x.max()) == 1.0
    # Disjoint and together the whole set: compare rows as bytes.
    rows = {r.numpy().tobytes() for r in torch.cat([train.x, test.x]).flatten(1)}
    whole = {
        r.tobytes() for r in (np.asarray(_sklearn_images(), np.float32) / 16).reshape(1797, -1)
    }
    assert rows == whole
    # Stratified: each class's share of the test set is within one image of 25%.
    counts_all = torch.bincount(torch.cat([train.y, test.y]), minlength=10)
    counts_test = torch.bincount(test.y, minlength=10)
    assert ((counts_test - 0.25 * counts_all).abs() <= 1).all()


def _sklearn_images():
    from sklearn.datasets import load_digits

    return load_digits().images


def test_digits_seed():
    a, b, c = digits("test", seed=3), digits("test", seed=3), digits("test", seed=4)
    torch.testing.assert_close(a.x, b.x)
    assert not torch.equal(a.x, c.x)
    assert len(digits("test", test_fraction=0.5)) == 899


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"test_fraction": 0.0}, ValueError, "strictly between 0 and 1"),
        ({"test_fraction": 1.5}, ValueError, "test_fraction must be finite"),
        ({"test_fraction": "0.2"}, TypeError, "test_fraction must be a float"),
        ({"seed": -1}, ValueError, "seed must be >= 0"),
        ({"seed": 1.0}, TypeError, "seed must be an int"),
    ],
)
def test_digits_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        digits(**kwargs)


def test_sklearn_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"pip install bayesdl\[metrics\]"):
        digits()
    with pytest.raises(ImportError, match=r"pip install bayesdl\[metrics\]"):
        two_moons()


@pytest.mark.skipif(
    uci_module._mlxtend_boston_file() is None,
    reason="mlxtend is not installed (`pip install mlxtend` to run this)",
)
def test_boston():
    d = boston()
    assert d.x.shape == (506, 13) and d.x.dtype == torch.float32
    assert d.y.shape == (506, 1) and d.y.dtype == torch.float32
    assert d.num_classes is None and d.name == "boston"
    assert d.source.endswith("boston_housing.csv")
    # First row of the original data: CRIM 0.00632, ZN 18, ..., LSTAT 4.98, MEDV 24.0.
    torch.testing.assert_close(d.x[0, [0, 1, 12]], torch.tensor([0.00632, 18.0, 4.98]))
    torch.testing.assert_close(d.y[:2, 0], torch.tensor([24.0, 21.6]))
    assert float(d.y.min()) == 5.0 and float(d.y.max()) == 50.0


def test_boston_missing(monkeypatch):
    monkeypatch.setattr(uci_module, "_mlxtend_boston_file", lambda: None)
    with pytest.raises(ImportError, match=r"pip install bayesdl\[data\]"):
        boston()


def test_regression_gap():
    before = _global_rng_state()
    d = regression_gap(101, noise=0.0, seed=5)
    after = _global_rng_state()
    torch.testing.assert_close(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])
    assert d.x.shape == (101, 1) and d.y.shape == (101, 1) and d.x.dtype == torch.float32
    assert d.num_classes is None
    x = d.x[:, 0]
    assert ((x >= -1) & (x <= 1)).all() and not ((x > -0.3) & (x < 0.3)).any()
    assert int((x < 0).sum()) == 50 and int((x > 0).sum()) == 51
    torch.testing.assert_close(d.y, torch.sin(3 * d.x))
    noisy = regression_gap(2000, noise=0.1, seed=0)
    residual = noisy.y - torch.sin(3 * noisy.x)
    # Sample std of 2000 normals: relative standard error ~ 1/sqrt(2 * 2000) = 1.6%.
    assert abs(float(residual.std()) - 0.1) < 4 * 0.1 / np.sqrt(2 * 2000)


def test_regression_gap_determinism_and_errors():
    a, b, c = regression_gap(seed=1), regression_gap(seed=1), regression_gap(seed=2)
    torch.testing.assert_close(a.x, b.x)
    torch.testing.assert_close(a.y, b.y)
    assert not torch.equal(a.x, c.x)
    with pytest.raises(ValueError, match="n must be >= 2"):
        regression_gap(1)
    with pytest.raises(ValueError, match="noise must be finite and >= 0"):
        regression_gap(noise=-0.1)
    with pytest.raises(TypeError, match="n must be an int"):
        regression_gap(10.0)  # type: ignore[arg-type]


def test_two_moons():
    before = _global_rng_state()
    d = two_moons(301, noise=0.05, seed=3)
    after = _global_rng_state()
    torch.testing.assert_close(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])
    assert d.x.shape == (301, 2) and d.x.dtype == torch.float32
    assert d.y.shape == (301,) and d.y.dtype == torch.int64 and d.num_classes == 2
    assert sorted(torch.bincount(d.y).tolist()) == [150, 151]
    torch.testing.assert_close(two_moons(301, noise=0.05, seed=3).x, d.x)
    assert not torch.equal(two_moons(301, noise=0.05, seed=4).x, d.x)
    with pytest.raises(ValueError, match="noise"):
        two_moons(noise=float("nan"))


@pytest.mark.parametrize("name", bayesdl.data.__all__)
def test_public_arguments_are_documented(name):
    obj = getattr(bayesdl.data, name)
    doc = inspect.getdoc(obj) or ""
    assert doc, f"{name} has no docstring"
    for param in inspect.signature(obj).parameters:
        if param not in ("self", "args", "kwargs"):
            assert f"{param}:" in doc, f"{name}: argument {param!r} is not in the docstring"
