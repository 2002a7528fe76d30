"""The ``bayesdl`` command line: parse, call the library, report.

Commands:

- ``bayesdl demo``: the article's pictures on built-in data;
- ``bayesdl active-learn``: uncertainty-driven active learning on an image data set;
- ``bayesdl evaluate``: calibration, OOD alarms, referral and cost of several methods, with
  an HTML report;
- ``bayesdl label``: a local web app to label what the model is least sure of and to refer
  unsure cases to an expert (``bayesdl.app``, extra ``app``).

Each command is a pair of functions registered in ``_COMMANDS``: ``add_<name>(sub)``
declares its arguments and ``run_<name>(args) -> int`` does the work. To add a command,
write the pair and add it to the table. Method choices come from the method registry
(``bayesdl.methods.method_names``), never from a list here.

Errors a user can fix (bad values, missing or existing files, a missing optional
dependency, an unavailable device) are printed as one line, ``bayesdl: error: ...``, with
exit status 2; an output directory that the failed command created and left empty is
removed again.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from bayesdl.app.cli import add_label_parser, run_label  # argparse only; Flask on use

__all__ = ["main", "build_parser"]

_USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, ImportError)
_DATASETS = ["mnist", "fashion-mnist", "digits"]


class HelpFormatter(argparse.HelpFormatter):
    """Help that ends every option with its default, as ``(default: 20)``.

    Like ``argparse.ArgumentDefaultsHelpFormatter``, except that options whose default is
    ``None`` or ``False`` (a flag), or whose help already says what the default is, are
    left as written: their help text explains the default in words.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            not action.option_strings
            or action.default is None
            or action.default is False  # a flag (0 == False, so not "in (None, False)")
            or action.default == argparse.SUPPRESS
            or "%(default)" in text
            or "default:" in text
        ):
            return text
        return f"{text} (default: %(default)s)"


def _parser(sub: argparse._SubParsersAction, name: str, **kwargs: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, formatter_class=HelpFormatter, **kwargs)


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value


def _add_training_options(
    p: argparse.ArgumentParser, lr: float | None, batch_size: int
) -> None:
    help_lr = "learning rate" if lr is not None else (
        "learning rate (default: each method's own, Adam's 1e-3 for most and the SG-MCMC "
        "samplers' step size)"
    )
    p.add_argument("--lr", type=_positive_float, default=lr, help=help_lr)
    p.add_argument("--batch-size", type=_positive_int, default=batch_size,
                   help="training minibatch size")  # fmt: skip


def _add_machine_options(p: argparse.ArgumentParser, device: str) -> None:
    p.add_argument("--device", default=device, help="torch device: cpu, cuda, cuda:1, ...")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="torch CPU threads (default: torch's choice)")  # fmt: skip


def _methods_help(names: Sequence[str]) -> str:
    return "one of: " + ", ".join(names)


# -- demo ------------------------------------------------------------------------------------
def add_demo(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Declare ``bayesdl demo`` and its options.

    Args:
        sub: The top-level parser's subparsers.

    Returns:
        The subcommand's parser.
    """
    from bayesdl.demo import RUNTIME_S

    p = _parser(
        sub,
        "demo",
        help=f"the article's pictures on built-in data (about {RUNTIME_S} s on 2 CPU cores)",
        description=(
            "Bayes' theorem on a coin, 1-d regression with a gap (MAP vs mean-field VI vs "
            "MC dropout), two-moons confidence / entropy / mutual-information maps and "
            "reliability diagrams. Writes PNGs and metrics.json to --out. Takes about "
            f"{RUNTIME_S} s on two CPU cores."
        ),
    )
    p.add_argument("--out", default="bayesdl-demo", help="output directory")
    p.add_argument("--fast", action="store_true", help="tiny settings, a few seconds (smoke test)")
    p.add_argument("--seed", type=_non_negative_int, default=0,
                   help="seed of the data, initialisations and Monte Carlo samples")  # fmt: skip
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
    from bayesdl.active.acquisition import acquisition_names
    from bayesdl.active.experiment import ExperimentConfig, experiment_methods
    from bayesdl.methods import method_names

    d = ExperimentConfig()
    methods = experiment_methods()
    p = _parser(
        sub,
        "active-learn",
        help="uncertainty-driven active learning (Gal et al. 2017 protocol)",
        description=(
            "Label the pool step by step with each acquisition function, retrain, and record "
            "test accuracy against the number of labels. Writes results.json, results.csv "
            "and curves.png to --out; checkpoints every step (--resume continues)."
        ),
    )
    p.add_argument("--dataset", default=d.dataset, choices=_DATASETS, help="image data set")
    p.add_argument("--method", default=d.method, choices=method_names(), metavar="METHOD",
                   help="posterior approximation retrained at every step, "
                        + _methods_help(methods) + " (the others are refused with the reason)")  # fmt: skip
    p.add_argument("--acquisition", default=",".join(d.acquisitions),
                   help="acquisition function(s), comma-separated (one series of runs each), "
                        "from: " + ", ".join(acquisition_names()))  # fmt: skip
    p.add_argument("--initial", type=_positive_int, default=d.initial,
                   help="class-balanced initial labels: every class gets initial // classes, "
                        "some one more; at least the number of classes")  # fmt: skip
    p.add_argument("--step", type=_positive_int, default=d.step, help="labels acquired per step")
    p.add_argument("--budget", type=_positive_int, default=d.budget,
                   help="final number of labels (initial ones included)")  # fmt: skip
    p.add_argument("--repeats", type=_positive_int, default=d.repeats,
                   help="runs per acquisition function (seeds --seed, --seed + 1, ...)")  # fmt: skip
    p.add_argument("--pool-subset", type=_non_negative_int, default=d.pool_subset,
                   help="random pool points scored per step (0: all)")  # fmt: skip
    p.add_argument("--mc-samples", type=_positive_int, default=d.mc_samples,
                   help="MC samples when scoring the pool (and testing, unless --test-samples)")  # fmt: skip
    p.add_argument("--test-samples", type=_positive_int, default=None,
                   help="MC samples for the test-set predictions (default: --mc-samples)")  # fmt: skip
    p.add_argument("--draws", default=d.draws, choices=["auto", "shared", "independent"],
                   help="posterior draws for scoring the pool: auto = each point its own for "
                        "per-point scores, shared for batchbald / epig")  # fmt: skip
    p.add_argument("--train-steps", type=_positive_int, default=d.train_steps,
                   help="gradient steps per retraining (the minimum with --train-epochs)")  # fmt: skip
    p.add_argument("--train-epochs", type=_positive_float, default=d.train_epochs,
                   help="epochs per retraining, sized to the labelled set (default: a fixed "
                        "--train-steps)")  # fmt: skip
    _add_training_options(p, d.lr, d.batch_size)
    p.add_argument("--weight-decay", type=_positive_float, default=None,
                   help="c in Gal et al.'s prior c / N_labelled * ||w||^2 (default: 3.5 for "
                        "MNIST-sized images, 0.5 for digits)")  # fmt: skip
    p.add_argument("--precision", default=d.precision, choices=["float32", "bfloat16"],
                   help="bfloat16: mixed-precision training and testing (faster with AVX-512 BF16)")  # fmt: skip
    p.add_argument("--decay", default=None, choices=["dense", "all"],
                   help="weight decay on the first dense layer only (Gal et al.'s code) or on "
                        "every layer (default: dense for the dropout methods, else all)")  # fmt: skip
    p.add_argument("--init", default=d.init, choices=["glorot", "torch"],
                   help="CNN initialisation: Keras's Glorot-uniform, zero biases (Gal et al.) "
                        "or PyTorch's default")  # fmt: skip
    p.add_argument("--eval-every", type=_positive_int, default=d.eval_every,
                   help="test the model every this many steps (and always at the last)")  # fmt: skip
    p.add_argument("--test-size", type=_positive_int, default=None,
                   help="first N test points only (default: all)")  # fmt: skip
    p.add_argument("--seed", type=_non_negative_int, default=d.seed,
                   help="seed of the first run: initial set, initialisation, shuffling, samples")  # fmt: skip
    _add_machine_options(p, d.device)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--resume", action="store_true",
                   help="continue from the checkpoints in --out (give the same settings)")  # fmt: skip
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
        pool_subset=args.pool_subset or None, mc_samples=args.mc_samples, draws=args.draws,
        test_samples=args.test_samples, train_steps=args.train_steps,
        train_epochs=args.train_epochs, precision=args.precision,
        weight_decay=args.weight_decay, lr=args.lr, batch_size=args.batch_size,
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
    from bayesdl.evaluate import EvaluateConfig, reference_methods
    from bayesdl.methods import method_names

    d = EvaluateConfig()
    p = _parser(
        sub,
        "evaluate",
        help="calibration, OOD alarms, referral and cost of each method; HTML report",
        description=(
            "Train (or --load) each method on the data set, then measure accuracy, NLL, "
            "ECE, Brier, referral curves, OOD AUROC/AUPR/FPR95 against the OOD set and the "
            "predict cost as a ratio to one deterministic pass. Writes metrics.json, "
            "metrics.csv, PNGs and a self-contained report.html to --out."
        ),
    )
    p.add_argument("--dataset", default=d.dataset, choices=_DATASETS,
                   help="in-distribution image data set")  # fmt: skip
    p.add_argument("--methods", default=",".join(d.methods),
                   help="comma-separated method names, each " + _methods_help(method_names()))  # fmt: skip
    p.add_argument("--ood", default=None, choices=[*_DATASETS, "noise"],
                   help="OOD test set (default: fashion-mnist; mnist for fashion-mnist)")  # fmt: skip
    p.add_argument("--epochs", type=_positive_int, default=None,
                   help="training epochs (default: 5; 60 for digits)")  # fmt: skip
    p.add_argument("--samples", type=_positive_int, default=d.samples,
                   help="posterior samples S per prediction")  # fmt: skip
    _add_training_options(p, d.lr, d.batch_size)
    p.add_argument("--train-size", type=_positive_int, default=None,
                   help="first N training points only (default: all)")  # fmt: skip
    p.add_argument("--test-size", type=_positive_int, default=None,
                   help="first N test (and OOD) points only (default: all)")  # fmt: skip
    p.add_argument("--load", default=None,
                   help="directory of saved posteriors (OUT/posteriors of an earlier run) to "
                        "evaluate instead of training (default: train)")  # fmt: skip
    p.add_argument("--seed", type=_non_negative_int, default=d.seed,
                   help="seed of initialisation, shuffling and posterior sampling")  # fmt: skip
    _add_machine_options(p, d.device)
    p.add_argument("--dropout", type=_rate_pair, default=d.dropout, metavar="P_CONV,P_DENSE",
                   help="the CNN's dropout rates (default: Gal et al.'s 0.25,0.5)")  # fmt: skip
    p.add_argument(
        "--calibrate", action="store_true",
        help="also report each method after temperature scaling fitted on a validation split "
        "(MNIST's 10,000 validation images, else the last 10%% of the training set), as rows "
        "<method>+T",
    )  # fmt: skip
    p.add_argument("--reference", default=None, choices=reference_methods(),
                   help="also measure each method against a full-batch NUTS posterior (small "
                   "data and networks only; default: no reference)")  # fmt: skip
    p.add_argument("--explain", type=_non_negative_int, default=d.explain, metavar="K",
                   help="the report shows the K most uncertain test images and the K most "
                   "confident mistakes of each method with their epistemic attribution "
                   "(default: %(default)s; 0: no such section)")  # fmt: skip
    p.add_argument("--model", default=None, metavar="MODULE:FUNCTION",
                   help="build the network with FUNCTION(num_classes, in_channels, image_size) "
                   "from an importable module instead of the CNN, e.g. a Hugging Face model "
                   "built from a config and wrapped with bayesdl.hf.adapt (default: the CNN)")  # fmt: skip
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
        explain=args.explain, model=args.model,
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
    "label": (add_label_parser, run_label),  # the web app (bayesdl.app, extra: app)
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


def _remove_if_empty(path: Path) -> None:
    """Remove ``path`` if it is a directory tree without a single file in it."""
    if not path.is_dir() or any(p.is_file() or p.is_symlink() for p in path.rglob("*")):
        return
    for sub in sorted(path.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        sub.rmdir()
    path.rmdir()


def _under_torchrun(args: argparse.Namespace) -> bool:
    """Join the process group when ``torchrun`` started several ranks (``WORLD_SIZE`` > 1);
    the other ranks than 0 show no progress bars. False in a single process."""
    import os

    if os.environ.get("WORLD_SIZE", "1") == "1":
        return False
    from bayesdl import distributed

    distributed.init_from_env()
    if not distributed.is_main() and hasattr(args, "no_progress"):
        args.no_progress = True
    return True


def _rank() -> int:
    from bayesdl import distributed

    return distributed.rank()


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
    out = getattr(args, "out", None)
    fresh = out is not None and not Path(out).exists()
    try:
        if _under_torchrun(args):  # before any check that could write or differ between ranks
            fresh = fresh and _rank() == 0
        return args._run(args)
    except _USER_ERRORS as err:
        if fresh:
            _remove_if_empty(Path(out))
        message = " ".join(str(err).split())  # one line, whatever the exception held
        print(f"bayesdl: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bayesdl: interrupted", file=sys.stderr)
        return 130
