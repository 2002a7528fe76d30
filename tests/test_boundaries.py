"""Module boundaries: no private name is imported from another module, and io has no
special case for any prior (each prior serialises itself)."""

import ast
import importlib
import inspect
from pathlib import Path

import bayesdl
import bayesdl.io

SRC = Path(bayesdl.__file__).parent


def _private_imports():
    """(file, module, name) for every ``from bayesdl.X import _name`` of a non-module."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith(
                "bayesdl"
            ):
                continue
            for alias in node.names:
                if not alias.name.startswith("_") or alias.name.startswith("__"):
                    continue
                obj = getattr(importlib.import_module(node.module), alias.name, None)
                if not inspect.ismodule(obj):
                    found.append((rel, node.module, alias.name))
    return found


def test_no_private_name_is_imported_from_another_module():
    assert _private_imports() == []


def test_io_has_no_special_case_for_a_prior():
    source = inspect.getsource(bayesdl.io)
    assert "Centered" not in source and "isinstance(prior" not in source
