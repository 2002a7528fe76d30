"""``bayesdl label``: parse the options, load the data, serve the app with waitress.

Only argparse is imported at module level, so ``bayesdl --help`` stays fast and works
without the ``app`` extra.
"""

from __future__ import annotations

import argparse
import ipaddress
import secrets
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["add_label_parser", "run_label", "serve"]


def _int_in(low: int, high: int | None, what: str) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high] (no upper bound for None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value

    return parse


_port = _int_in(0, 65535, "a port in 0..65535 (0: any free)")
_positive = _int_in(1, None, "a positive integer")


def add_label_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Declare ``bayesdl label`` and its options.

    Args:
        sub: The top-level parser's subparsers.

    Returns:
        The subcommand's parser.
    """
    p = sub.add_parser(
        "label",
        help="web app: label what the model is least sure of; refer cases to an expert",
        description=(
            "Serve a local web app: label the batch the acquisition function picks (the model "
            "refits in the background after each batch), watch the held-out learning curve, "
            "refer uncertain new cases to an expert, export labels and the posterior. "
            "Everything is saved in --out; rerun the same command to resume."
        ),
    )
    p.add_argument("--data", required=True,
                   help="digits, mnist, fashion-mnist, a folder of PNG/JPEG images (optional "
                        "labels.csv: file,label for a held-out set) or a CSV of features "
                        "(optional 'label' column: labelled rows are held out)")  # fmt: skip
    p.add_argument("--out", required=True, help="work directory (created; reused to resume)")
    p.add_argument("--method", default="mc-dropout", choices=["mc-dropout", "vi"])
    p.add_argument("--acquisition", default="bald", help="acquisition function (default: bald)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    p.add_argument("--port", type=_port, default=8000, help="port (default: 8000; 0: any free)")
    p.add_argument("--batch-size", type=_positive, default=10, help="items per batch")
    p.add_argument("--train-steps", type=_positive, default=200,
                   help="gradient steps per refit (default: %(default)s)")  # fmt: skip
    p.add_argument("--mc-samples", type=_positive, default=20, help="MC samples per prediction")
    p.add_argument("--classes", default=None,
                   help="comma-separated class names (folders and CSVs)")  # fmt: skip
    p.add_argument("--image-size", type=_positive, default=28,
                   help="side that folder images are resized to (default: %(default)s)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    return p


def serve(args: argparse.Namespace, *, announce: Any = print) -> int:
    """Build the app for parsed ``bayesdl label`` arguments and serve it until stopped.

    Args:
        args: Parsed arguments (see :func:`add_label_parser`).
        announce: Called with the line that gives the address and token.

    Returns:
        The exit status, 0.
    """
    try:
        from waitress import create_server
    except ImportError as err:
        raise ImportError(
            "the labelling app needs Flask and waitress: pip install 'bayesdl[app]'."
        ) from err
    from bayesdl.app.engine import Labeller
    from bayesdl.app.sources import load_source
    from bayesdl.app.web import create_app

    classes = None
    if args.classes is not None:
        classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    data = load_source(args.data, classes=classes, image_size=args.image_size)
    labeller = Labeller(
        data, args.out, method=args.method, acquisition=args.acquisition,
        batch_size=args.batch_size, train_steps=args.train_steps,
        mc_samples=args.mc_samples, seed=args.seed,
    )  # fmt: skip
    token = secrets.token_urlsafe(24)
    app = create_app(labeller, token, cookie_name=f"bayesdl_token_{args.port}")
    server = create_server(app, host=args.host, port=args.port, threads=8)
    port = server.effective_port  # type: ignore[union-attr]
    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = args.host == "localhost"
    if not loopback:
        print(f"bayesdl label: warning: listening on {args.host}, reachable from other "
              "machines; anyone with the token can label.", file=sys.stderr)  # fmt: skip
    host = f"[{args.host}]" if ":" in args.host else args.host
    announce(f"bayesdl label: {data.name}, {len(data.pool_x)} items, work directory {args.out}")
    announce(f"bayesdl label: open http://{host}:{port}/?token={token}")
    sys.stdout.flush()
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        labeller.wait(timeout=60)
    return 0


def run_label(args: argparse.Namespace) -> int:
    """Run ``bayesdl label`` (see :func:`serve`).

    Args:
        args: Parsed arguments.

    Returns:
        The exit status, 0.
    """
    return serve(args)
