"""Documentation checks for bayesdl.metrics: doctests and documented arguments."""

from __future__ import annotations

import doctest
import inspect
import re

import pytest

import bayesdl.metrics
from bayesdl.metrics import calibration, ood, referral, regression

MODULES = [calibration, ood, referral, regression]
FUNCTIONS = [
    getattr(bayesdl.metrics, name)
    for name in bayesdl.metrics.__all__
    if inspect.isfunction(getattr(bayesdl.metrics, name))
]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_doctests(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


@pytest.mark.parametrize("fn", FUNCTIONS, ids=lambda f: f.__name__)
def test_every_argument_is_documented(fn):
    doc = inspect.getdoc(fn) or ""
    assert "Args:" in doc and "Returns:" in doc and "Raises:" in doc, fn.__name__
    for name in inspect.signature(fn).parameters:
        assert re.search(rf"^\s+{name}:", doc, flags=re.MULTILINE), (fn.__name__, name)


def test_all_is_complete_and_importable():
    public = {name for name in dir(bayesdl.metrics) if not name.startswith("_")}
    modules = {"calibration", "ood", "referral", "regression"}
    assert public - modules == set(bayesdl.metrics.__all__)
