"""The ``bayesdl`` command line: parse, call the library, report.

Each subcommand is a pair of functions registered in ``_COMMANDS``: ``add_<name>(sub)``
declares its arguments and ``run_<name>(args) -> int`` does the work. To add a command
(``active-learn``, ``evaluate``, ``bench``), write the pair and add it to the table.

Errors a user can fix (bad values, missing or existing files, a missing optional
dependency) are printed as one line, ``bayesdl: error: ...``, with exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

__all__ = ["main", "build_parser"]

_USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, ImportError)


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value


# -- demo ------------------------------------------------------------------------------------
def add_demo(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Declare ``bayesdl demo`` and its options.

    Args:
        sub: The top-level parser's subparsers.

    Returns:
        The subcommand's parser.
    """
    p = sub.add_parser(
        "demo",
        help="the article's pictures on built-in data (< 2 min on CPU)",
        description=(
            "Bayes' theorem on a coin, 1-d regression with a gap (MAP vs mean-field VI vs "
            "MC dropout), two-moons confidence / entropy / mutual-information maps and "
            "reliability diagrams. Writes PNGs and metrics.json to --out."
        ),
    )
    p.add_argument("--out", default="bayesdl-demo", help="output directory (default: %(default)s)")
    p.add_argument("--fast", action="store_true", help="tiny settings, a few seconds (smoke test)")
    p.add_argument("--seed", type=_non_negative_int, default=0, help="random seed (default: 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress messages or bars")
    p.add_argument(
        "--overwrite", action="store_true", help="replace the files of an earlier demo in --out"
    )
    return p


def run_demo(args: argparse.Namespace) -> int:
    """Run ``bayesdl demo`` and print the summary table.

    Args:
        args: Parsed arguments (``out``, ``fast``, ``seed``, ``no_progress``, ``overwrite``).

    Returns:
        The exit status, 0.
    """
    from bayesdl.demo import format_summary
    from bayesdl.demo import run_demo as _run

    results = _run(
        args.out, fast=args.fast, seed=args.seed, progress=not args.no_progress,
        overwrite=args.overwrite,
    )  # fmt: skip
    print(format_summary(results))
    print(f"written to {args.out}")
    return 0


# -- active-learn ----------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("expected a positive integer, got 0")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def _rate_pair(text: str) -> tuple[float, float]:
    from bayesdl.models import check_dropout_pair  # torch: only once --dropout is given

    try:
        return check_dropout_pair(float(p) for p in text.split(","))
    except ValueError:  # not numbers, or not two rates in [0, 1)
        raise argparse.ArgumentTypeError(
            f"expected two rates in [0, 1) like 0.25,0.5, got {text!r}"
        ) from None


def add_active_learn(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Declare ``bayesdl active-learn`` and its options.

    Args:
        sub: The top-level parser's subparsers.

    Returns:
        The subcommand's parser.
    """
    from bayesdl.active.experiment import ExperimentConfig

    d = ExperimentConfig()
    p = sub.add_parser(
        "active-learn",
        help="uncertainty-driven active learning (Gal et al. 2017 protocol)",
        description=(
            "Label the pool step by step with each acquisition function, retrain, and record "
            "test accuracy against the number of labels. Writes results.json, results.csv "
            "and curves.png to --out; checkpoints every step (--resume continues)."
        ),
    )
    p.add_argument("--dataset", default=d.dataset, choices=["mnist", "fashion-mnist", "digits"])
    p.add_argument("--method", default=d.method, choices=["mc-dropout", "vi"])
    p.add_argument("--acquisition", default="bald", help="comma-separated, e.g. bald,random")
    p.add_argument(
        "--initial", type=_positive_int, default=d.initial, help="balanced initial labels"
    )
    p.add_argument("--step", type=_positive_int, default=d.step, help="labels acquired per step")
    p.add_argument("--budget", type=_positive_int, default=d.budget, help="final number of labels")
    p.add_argument("--repeats", type=_positive_int, default=d.repeats, help="runs per acquisition")
    p.add_argument("--pool-subset", type=_non_negative_int, default=d.pool_subset,
                   help="random pool points scored per step (0: all)")  # fmt: skip
    p.add_argument("--mc-samples", type=_positive_int, default=d.mc_samples,
                   help="MC samples when scoring the pool (and testing, unless --test-samples)")  # fmt: skip
    p.add_argument("--test-samples", type=_positive_int, default=None,
                   help="MC samples for the test-set predictions (default: --mc-samples)")  # fmt: skip
    p.add_argument("--train-steps", type=_positive_int, default=d.train_steps,
                   help="gradient steps per retraining (the minimum with --train-epochs)")  # fmt: skip
    p.add_argument("--train-epochs", type=_positive_float, default=d.train_epochs,
                   help="epochs per retraining, sized to the labelled set (default: fixed steps)")  # fmt: skip
    p.add_argument("--precision", default=d.precision, choices=["float32", "bfloat16"],
                   help="bfloat16: mixed-precision training and testing (faster with AVX-512 BF16)")  # fmt: skip
    p.add_argument("--decay", default=None, choices=["dense", "all"],
                   help="weight decay on the first dense layer only (Gal et al.'s code; default, "
                        "except for vi) or on every layer")  # fmt: skip
    p.add_argument("--init", default=d.init, choices=["glorot", "torch"],
                   help="CNN initialisation: Keras's Glorot-uniform, zero biases (Gal et al.) "
                        "or PyTorch's default")  # fmt: skip
    p.add_argument("--eval-every", type=_positive_int, default=d.eval_every)
    p.add_argument("--test-size", type=_positive_int, default=None, help="first N test points only")
    p.add_argument("--seed", type=_non_negative_int, default=d.seed)
    p.add_argument("--device", default=d.device, help="torch device (default: %(default)s)")
    p.add_argument("--threads", type=_positive_int, default=None, help="torch CPU threads")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def run_active_learn(args: argparse.Namespace) -> int:
    """Run ``bayesdl active-learn`` and print the summary table.

    Args:
        args: Parsed arguments of ``add_active_learn``.

    Returns:
        The exit status, 0.
    """
    import torch

    from bayesdl.active.experiment import ExperimentConfig, format_summary, run_experiment

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = ExperimentConfig(
        dataset=args.dataset, method=args.method,
        acquisitions=[a.strip() for a in args.acquisition.split(",") if a.strip()],
        initial=args.initial, step=args.step, budget=args.budget, repeats=args.repeats,
        pool_subset=args.pool_subset or None, mc_samples=args.mc_samples,
        test_samples=args.test_samples, train_steps=args.train_steps,
        train_epochs=args.train_epochs, precision=args.precision,
        eval_every=args.eval_every, test_size=args.test_size, seed=args.seed, device=args.device,
        decay=args.decay, init=args.init,
    )  # fmt: skip
    results = run_experiment(cfg, args.out, resume=args.resume, progress=not args.no_progress)
    print(format_summary(results))
    print(f"written to {args.out}")
    return 0


# -- evaluate --------------------------------------------------------------------------------
def add_evaluate(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Declare ``bayesdl evaluate`` and its options.

    Args:
        sub: The top-level parser's subparsers.

    Returns:
        The subcommand's parser.
    """
    p = sub.add_parser(
        "evaluate",
        help="calibration, OOD alarms, referral and cost of each method; HTML report",
        description=(
            "Train (or --load) each method on the data set, then measure accuracy, NLL, "
            "ECE, Brier, referral curves, OOD AUROC/AUPR/FPR95 against the OOD set and the "
            "predict cost as a ratio to one deterministic pass. Writes metrics.json, "
            "metrics.csv, PNGs and a self-contained report.html to --out."
        ),
    )
    p.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist", "digits"])
    p.add_argument("--methods", default="map,vi,mc-dropout", help="comma-separated method names")
    p.add_argument("--ood", default=None, choices=["mnist", "fashion-mnist", "digits", "noise"],
                   help="OOD test set (default: fashion-mnist; mnist for fashion-mnist)")  # fmt: skip
    p.add_argument("--epochs", type=_positive_int, default=None,
                   help="training epochs (default: 5; 60 for digits)")  # fmt: skip
    p.add_argument("--samples", type=_positive_int, default=20, help="posterior samples S")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--batch-size", type=_positive_int, default=128)
    p.add_argument("--train-size", type=_positive_int, default=None, help="first N training points")
    p.add_argument("--test-size", type=_positive_int, default=None, help="first N test points")
    p.add_argument("--load", default=None, help="directory of saved posteriors (OUT/posteriors)")
    p.add_argument("--seed", type=_non_negative_int, default=0)
    p.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")
    p.add_argument("--threads", type=_positive_int, default=None, help="torch CPU threads")
    p.add_argument("--dropout", type=_rate_pair, default=(0.25, 0.5), metavar="P_CONV,P_DENSE",
                   help="the CNN's dropout rates (default: Gal et al.'s 0.25,0.5)")  # fmt: skip
    p.add_argument(
        "--calibrate", action="store_true",
        help="also report each method after temperature scaling fitted on a validation split "
        "(MNIST's 10,000 validation images, else the last 10%% of the training set), as rows "
        "<method>+T",
    )  # fmt: skip
    p.add_argument("--reference", default=None, choices=["hmc"],
                   help="also measure each method against a full-batch NUTS posterior (small "
                   "data and networks only)")  # fmt: skip
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--overwrite", action="store_true", help="replace earlier results in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress messages or bars")
    return p


def run_evaluate(args: argparse.Namespace) -> int:
    """Run ``bayesdl evaluate`` and print the summary table.

    Args:
        args: Parsed arguments of ``add_evaluate``.

    Returns:
        The exit status, 0.
    """
    import torch

    from bayesdl.evaluate import EvaluateConfig, evaluate, format_summary

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = EvaluateConfig(
        dataset=args.dataset, methods=[m.strip() for m in args.methods.split(",") if m.strip()],
        ood=args.ood, epochs=args.epochs, samples=args.samples, lr=args.lr,
        batch_size=args.batch_size, train_size=args.train_size, test_size=args.test_size,
        load=args.load, seed=args.seed, device=args.device, dropout=args.dropout,
        calibrate=args.calibrate, reference=args.reference,
    )  # fmt: skip
    results = evaluate(cfg, args.out, overwrite=args.overwrite, progress=not args.no_progress)
    print(format_summary(results))
    print(f"written to {args.out} (open {args.out}/report.html in a browser)")
    return 0


# -- the command table -----------------------------------------------------------------------
_COMMANDS: dict[
    str,
    tuple[
        Callable[[argparse._SubParsersAction], argparse.ArgumentParser],
        Callable[[argparse.Namespace], int],
    ],
] = {
    "demo": (add_demo, run_demo),
    "active-learn": (add_active_learn, run_active_learn),
    "evaluate": (add_evaluate, run_evaluate),
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    from bayesdl import __version__

    parser = argparse.ArgumentParser(
        prog="bayesdl",
        description="Bayesian deep learning on PyTorch: posteriors, model averaging, uncertainty.",
    )
    parser.add_argument("--version", action="version", version=f"bayesdl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (add, run) in _COMMANDS.items():
        add(sub).set_defaults(_run=run, _name=name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bayesdl`` console script and ``python -m bayesdl``.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when ``None``.

    Returns:
        The exit status: 0 on success, 2 on bad arguments or a user error (printed as
        one line on stderr).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # argparse: --help/--version (0) or a usage error (2)
        return stop.code if isinstance(stop.code, int) else 2
    if args.command is None:
        parser.print_usage(sys.stderr)
        print("bayesdl: error: choose a command: " + ", ".join(_COMMANDS), file=sys.stderr)
        return 2
    try:
        return args._run(args)
    except _USER_ERRORS as err:
        message = " ".join(str(err).split())  # one line, whatever the exception held
        print(f"bayesdl: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bayesdl: interrupted", file=sys.stderr)
        return 130
