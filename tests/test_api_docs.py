"""The API reference builds from the docstrings (pdoc), with a page for every public name."""

from __future__ import annotations

import importlib.util
import re
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _builder():
    spec = importlib.util.spec_from_file_location("_docs_build_api", ROOT / "docs" / "build_api.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    pytest.importorskip("pdoc", reason='pdoc is in the dev extra: pip install -e ".[dev]"')
    out = tmp_path_factory.mktemp("api")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pages = _builder().build(out)
    return out, pages, [str(w.message) for w in caught if "pdoc" in (w.filename or "")]


def _ids(page: Path) -> set[str]:
    return set(re.findall(r'id="([^"]+)"', page.read_text()))


def test_the_build_warns_about_nothing(reference):
    _, _, warned = reference
    assert not warned, "pdoc could not render: " + " | ".join(warned)


def test_every_public_name_has_its_entry(reference):
    import bayesdl

    out, pages, _ = reference
    top = _ids(out / "bayesdl.html")
    for name in bayesdl.__all__:
        obj = getattr(bayesdl, name)
        if getattr(obj, "__file__", None):  # a subpackage: its own page
            assert (out / "bayesdl" / f"{name}.html").is_file(), f"no page for bayesdl.{name}"
        else:
            assert name in top, f"bayesdl.{name} is missing from bayesdl.html"
    for module in ("methods", "metrics", "active", "data", "priors", "likelihoods", "predictive"):
        page = out / "bayesdl" / f"{module}.html"
        names = importlib.import_module(f"bayesdl.{module}").__all__
        missing = [n for n in names if n not in _ids(page)]
        assert not missing, f"bayesdl.{module}: no entry for {missing}"
    assert {"BaseMethod", "register_method", "BaseMethod.fit", "BaseMethod.predict"} <= _ids(
        out / "bayesdl" / "methods.html"
    )


def test_pages_carry_the_docstrings(reference):
    import bayesdl

    out, _, _ = reference
    text = (out / "bayesdl.html").read_text()
    first_line = bayesdl.MAP.__doc__.strip().splitlines()[0]
    assert first_line.split("``")[0].strip() in text  # "Point estimate"
    metrics = (out / "bayesdl" / "metrics.html").read_text()
    assert bayesdl.metrics.ece.__doc__.strip().splitlines()[0][:40] in metrics


def test_links_between_pages_resolve(reference):
    out, pages, _ = reference
    broken = []
    for page in pages:
        for href in re.findall(r'href="([^"#?]+)[^"]*"', page.read_text()):
            if re.match(r"[a-z]+:", href) or href.startswith("//") or "${" in href:
                continue  # external (the pdoc footer) or the search script's template
            if not (page.parent / href).resolve().is_file():
                broken.append(f"{page.relative_to(out)} -> {href}")
    assert not broken, broken
