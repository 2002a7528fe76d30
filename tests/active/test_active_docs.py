"""Every public argument of bayesdl.active is documented, and its docstring examples run."""

from __future__ import annotations

import doctest
import importlib
import inspect

import pytest

import bayesdl.active as active

_SKIP_KINDS = (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)


def _public():
    for name in active.__all__:
        obj = getattr(active, name)
        if inspect.isclass(obj):
            yield name, obj.__init__, inspect.getdoc(obj) or ""
            for member_name, member in vars(obj).items():
                if not member_name.startswith("_") and inspect.isfunction(member):
                    yield f"{name}.{member_name}", member, inspect.getdoc(member) or ""
                elif isinstance(member, classmethod):
                    fn = member.__func__
                    yield f"{name}.{member_name}", fn, inspect.getdoc(fn) or ""
        elif inspect.isfunction(obj):
            yield name, obj, inspect.getdoc(obj) or ""


@pytest.mark.parametrize("qualname,fn,doc", list(_public()), ids=lambda v: str(v)[:40])
def test_every_public_argument_is_documented(qualname, fn, doc):
    if fn is object.__init__ or not inspect.isfunction(fn):
        return  # dataclass-generated or inherited __init__: fields documented as Attributes
    params = [
        p.name
        for p in inspect.signature(fn).parameters.values()
        if p.name not in ("self", "cls") and p.kind not in _SKIP_KINDS
    ]
    missing = [p for p in params if p not in doc]
    assert not missing, f"{qualname} does not document {missing}"


@pytest.mark.parametrize(
    "modname", ["bayesdl.active.acquisition", "bayesdl.active.pool", "bayesdl.active.loop"]
)
def test_doctests(modname):
    result = doctest.testmod(importlib.import_module(modname))
    assert result.failed == 0 and result.attempted > 0
