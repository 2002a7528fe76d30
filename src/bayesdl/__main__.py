"""``python -m bayesdl``: the same as the ``bayesdl`` command."""

from bayesdl.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
