"""Build bayesdl's API reference (HTML) from its docstrings with pdoc.

    python docs/build_api.py --out build/api      # then open build/api/index.html

pdoc (``pip install -e ".[dev]"``) imports the package and renders each public module's
``__all__`` with its signatures and Google-style docstrings, so the reference cannot drift
from the code. ``tests/test_api_docs.py`` runs :func:`build` in CI and checks the pages.
"""

from __future__ import annotations

import argparse
from pathlib import Path

MODULES = [
    "bayesdl",  # and the subpackages in its __all__: active, data, likelihoods, metrics, priors
    "bayesdl.methods",
    "bayesdl.engine",
    "bayesdl.runtime",
    "bayesdl.distributed",
    "bayesdl.predictive",
    "bayesdl.calibrate",
    "bayesdl.evaluate",
    "bayesdl.io",
    "bayesdl.plotting",
    "bayesdl.report",
    "bayesdl.types",
    "bayesdl.prior_draws",
    "bayesdl.inputs",
    "bayesdl.memory",
    "bayesdl.methods.layers",
]
"""The modules the reference starts from; pdoc documents each through its ``__all__`` and
adds the submodules a package's ``__all__`` names."""


def build(out: Path) -> list[Path]:
    """Render the reference into ``out``.

    Args:
        out: Output directory (created if needed); existing pages are overwritten.

    Returns:
        The HTML files written, sorted.

    Raises:
        ImportError: When pdoc is not installed (it is in the ``dev`` extra).
    """
    try:
        import pdoc
        import pdoc.render
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError('the API reference needs pdoc: pip install -e ".[dev]"') from err
    out = Path(out)
    pdoc.render.configure(docformat="google", show_source=False, search=True)
    pdoc.pdoc(*MODULES, output_directory=out)
    return sorted(out.rglob("*.html"))


def main(argv: list[str] | None = None) -> None:
    """Command line: ``--out DIR`` (default ``build/api``)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("build/api"), help="output directory")
    args = p.parse_args(argv)
    pages = build(args.out)
    print(f"{len(pages)} pages in {args.out}; open {args.out / 'index.html'}")


if __name__ == "__main__":
    main()
