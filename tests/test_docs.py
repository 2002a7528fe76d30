"""Every public argument is documented, and the docstring examples run."""

import doctest
import importlib
import inspect

import pytest

MODULES = [
    "bayesdl",
    "bayesdl.priors",
    "bayesdl.likelihoods",
    "bayesdl.methods",
    "bayesdl.metrics",
    "bayesdl.data",
    "bayesdl.active",
    "bayesdl.evaluate",
    "bayesdl.distributed",
    "bayesdl.diagnostics",
    "bayesdl.report",
    "bayesdl.plotting",
    "bayesdl.app",
]


def _public_callables():
    seen = {}
    for modname in MODULES:
        mod = importlib.import_module(modname)
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name)
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__.startswith(
                "bayesdl"
            ):
                seen[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return sorted(seen.items())


def _documented(obj):
    if inspect.isclass(obj):
        yield obj.__init__, inspect.getdoc(obj) or ""
        for name, member in vars(obj).items():
            if isinstance(member, classmethod):
                member = member.__func__
            if not name.startswith("_") and inspect.isfunction(member):
                yield member, inspect.getdoc(member) or ""
    else:
        yield obj, inspect.getdoc(obj) or ""


@pytest.mark.parametrize("qualname,obj", _public_callables())
def test_every_public_argument_is_documented(qualname, obj):
    for fn, doc in _documented(obj):
        if fn is object.__init__ or not inspect.isfunction(fn):
            continue
        inherited = fn.__qualname__.split(".")[0] != getattr(obj, "__name__", "")
        if inherited and inspect.isclass(obj):
            continue  # checked on the class that defines it
        params = [p for p in inspect.signature(fn).parameters if p not in ("self", "cls")]
        params = [
            p
            for p in params
            if inspect.signature(fn).parameters[p].kind
            not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
        ]
        missing = [p for p in params if p not in doc]
        assert not missing, f"{qualname}: {fn.__name__} does not document {missing}"


@pytest.mark.parametrize(
    "modname",
    [
        "bayesdl.predictive",
        "bayesdl.methods.map",
        "bayesdl.methods.laplace",
        "bayesdl.methods.l0",
        "bayesdl.methods.concrete_dropout",
        "bayesdl.methods.ensemble",
        "bayesdl.methods.swag",
        "bayesdl.methods.sgmcmc",
        "bayesdl.calibrate",
        "bayesdl.active.acquisition",
        "bayesdl.active.pool",
        "bayesdl.active.loop",
        "bayesdl.metrics.calibration",
        "bayesdl.metrics.ood",
        "bayesdl.metrics.referral",
        "bayesdl.metrics.regression",
    ],
)
def test_doctests(modname):
    result = doctest.testmod(
        importlib.import_module(modname), optionflags=doctest.NORMALIZE_WHITESPACE
    )
    assert result.failed == 0 and result.attempted > 0
