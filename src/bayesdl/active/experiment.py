"""Active-learning experiments: several acquisition functions x repeats on one data set.

This is what ``bayesdl active-learn`` and ``benchmarks/active_mnist.py`` run. Each
(acquisition, repeat) pair is one ``ActiveLearner`` run with its own checkpoint directory
``OUT/runs/<acquisition>-<repeat>/``, so an interrupted experiment resumes run by run.
Outputs in ``OUT``: ``results.json``, ``results.csv`` (test accuracy against labels),
``curves.png`` (mean +- sd over repeats) and a printed summary table.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bayesdl import data as bdata
from bayesdl import distributed
from bayesdl._checks import check_device
from bayesdl.active.acquisition import get_acquisition
from bayesdl.active.loop import ActiveLearner
from bayesdl.methods import MCDropout, get_method, method_names
from bayesdl.models import INITS, gal_cnn

__all__ = [
    "ExperimentConfig", "run_experiment", "summarize", "format_summary", "PUBLISHED",
    "experiment_methods", "PUBLISHED_DATASET",
]  # fmt: skip

PUBLISHED = {
    "labels_to_95": {
        "bald": 335,
        "var-ratios": 295,
        "entropy": 355,
        "mean-std": 695,
        "random": 835,
    },
    "accuracy_at_1000": {"bald": 0.982, "var-ratios": 0.984, "entropy": 0.983, "random": 0.953},
    "source": "Gal, Islam & Ghahramani (2017), Deep Bayesian Active Learning with Image Data",
}
"""Published MNIST numbers (Gal et al. 2017, table 1 and figure 1) to compare with; the
summary shows them beside runs on ``PUBLISHED_DATASET`` only."""

PUBLISHED_DATASET = "mnist"
"""The data set of ``PUBLISHED``."""

_PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16}
_DATASETS = {"mnist": 3.5, "fashion-mnist": 3.5, "digits": 0.5}  # default weight decay
_DENSE = "7"  # gal_cnn's first dense layer, the only one Gal et al.'s code decays
_DECAY = ("dense", "all")


@dataclass
class ExperimentConfig:
    """Settings of an active-learning experiment (the CLI flags, one to one).

    Attributes:
        dataset: ``"mnist"``, ``"fashion-mnist"`` or ``"digits"``.
        method: Registered method name, one of ``experiment_methods()`` (default: MC
            dropout, as Gal et al.).
        acquisitions: Acquisition function names, one series of runs each.
        initial: Class-balanced initial labelled set size.
        step: Points acquired per step.
        budget: Final labelled set size.
        repeats: Runs per acquisition function (seeds ``seed``, ``seed + 1``, ...).
        pool_subset: Random unlabelled points scored per step (``None``: all).
        mc_samples: MC samples at acquisition (and at test time unless ``test_samples``).
        draws: Posterior draws for scoring the pool: ``"auto"`` (independent per point for
            per-point scores, shared for BatchBALD / EPIG), ``"shared"`` or
            ``"independent"`` (see ``ActiveLearner``).
        test_samples: MC samples for the test-set predictions (``None``: ``mc_samples``).
        train_steps: Gradient steps per retraining: fixed, or the minimum when
            ``train_epochs`` is set.
        train_epochs: Epochs per retraining, sized to the labelled set (``None``: a fixed
            ``train_steps``); see ``bayesdl.active.loop``.
        precision: ``"float32"``, or ``"bfloat16"`` to train and test in mixed precision
            (the pool is scored in full precision).
        weight_decay: ``c`` in Gal et al.'s ``c / N_labelled * ||w||^2``; ``None`` picks the
            data set's default (3.5 as Gal et al. for MNIST-sized images; 0.5 for the tiny
            8x8 digits CNN, whose 32 features a prior that strong switches off).
        decay: ``"dense"`` applies it to the CNN's first dense layer only, as Gal et al.'s
            code does (the other layers get a flat prior); ``"all"`` to every layer;
            ``None`` picks ``"dense"`` for the methods that draw from the network's dropout
            layers (``needs_dropout``, Gal et al.'s setting), ``"all"`` for every other method
            (their posteriors need a proper prior on every weight, e.g. VI's KL).
        init: Initialisation of the CNN (``bayesdl.models.gal_cnn``): ``"glorot"`` (the
            Keras defaults of Gal et al.'s code) or ``"torch"``.
        lr: Adam learning rate.
        batch_size: Minibatch size.
        eval_every: Evaluate on the test set every this many steps.
        test_size: Use the first ``test_size`` test points (``None``: all).
        seed: Base seed.
        device: Torch device for the model (``"cpu"``, ``"cuda"``).
    """

    dataset: str = "mnist"
    method: str = MCDropout.cli_name
    acquisitions: list[str] = field(default_factory=lambda: ["power-bald"])
    initial: int = 20
    step: int = 10
    budget: int = 1000
    repeats: int = 1
    pool_subset: int | None = 2000
    mc_samples: int = 20
    draws: str = "auto"
    test_samples: int | None = None
    train_steps: int = 500
    train_epochs: float | None = None
    precision: str = "float32"
    weight_decay: float | None = None
    decay: str | None = None
    init: str = "glorot"
    lr: float = 1e-3
    batch_size: int = 64
    eval_every: int = 1
    test_size: int | None = None
    seed: int = 0
    device: str = "cpu"

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad setting."""
        if self.dataset not in _DATASETS:
            raise ValueError(
                f"unknown dataset {self.dataset!r}; choose one of {sorted(_DATASETS)}."
            )
        if not self.acquisitions:
            raise ValueError("give at least one acquisition function.")
        for name in self.acquisitions:
            get_acquisition(name)  # unknown names fail with the list of known ones
        if self.precision not in _PRECISIONS:
            raise ValueError(
                f"unknown precision {self.precision!r}; choose one of {sorted(_PRECISIONS)}."
            )
        if self.decay is not None and self.decay not in _DECAY:
            raise ValueError(f"unknown decay {self.decay!r}; choose one of {list(_DECAY)}.")
        if self.init not in INITS:
            raise ValueError(f"unknown init {self.init!r}; choose one of {list(INITS)}.")
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {self.repeats}.")
        if self.method not in experiment_methods():
            get_method(self.method)  # an unknown name fails here, naming the known ones
            raise ValueError(
                f"method {self.method!r} cannot be used for active learning: its fit is full "
                "batch (every step sees all the data and every weight of the CNN), far too slow "
                "to retrain at each acquisition step; for a sampled posterior choose sgld or "
                f"sghmc. Choose one of {experiment_methods()}."
            )
        check_device(self.device)


def experiment_methods() -> list[str]:
    """Names of the registered methods an experiment can retrain at every step.

    Every registered method that is built on the experiment's CNN (which has dropout
    layers, so the dropout methods apply) and fitted on the labelled set through the
    common interface in reasonable time; ``tests/active/test_active_cli.py`` runs each
    one. Full-batch methods (``BaseMethod.full_batch``: HMC) are refused with the reason
    (``ExperimentConfig.validate``).
    """
    return [n for n in method_names() if not get_method(n).full_batch]


def _load(cfg: ExperimentConfig) -> tuple[Any, Any, Any]:
    if cfg.dataset == "mnist":
        train, test = bdata.mnist("train"), bdata.mnist("test")
    elif cfg.dataset == "fashion-mnist":
        train, test = bdata.fashion_mnist("train"), bdata.fashion_mnist("test")
    else:
        train, test = bdata.digits("train"), bdata.digits("test")
    if cfg.test_size is not None:
        test = test.subset(torch.arange(min(cfg.test_size, len(test))))
    size, classes = train.x.shape[-1], train.num_classes or 10
    device = torch.device(cfg.device)

    def factory() -> torch.nn.Module:  # channels-last: slightly faster convs on CPU (amp_speed)
        return gal_cnn(classes, train.x.shape[1], size, init=cfg.init).to(
            device, memory_format=torch.channels_last
        )

    return train, test, factory


def _atomic_json(path: Path, obj: Any) -> None:
    if not distributed.is_main():  # under torchrun rank 0 alone writes
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _weight_decay(cfg: ExperimentConfig) -> float | dict[str, float]:
    c = cfg.weight_decay or _DATASETS[cfg.dataset]
    decay = cfg.decay or ("dense" if get_method(cfg.method).needs_dropout else "all")
    return {_DENSE: c} if decay == "dense" else c


def run_experiment(
    cfg: ExperimentConfig, out: str | os.PathLike, *, resume: bool = False, progress: bool = True
) -> dict[str, Any]:
    """Run every (acquisition, repeat) and write results.json, results.csv and curves.png.

    Args:
        cfg: The experiment's settings.
        out: Output directory; refuses to reuse one holding results unless ``resume``.
        resume: Continue an interrupted experiment from its checkpoints.
        progress: Show progress bars.

    Returns:
        The results dictionary written to ``results.json``.

    Raises:
        FileExistsError: If ``out`` holds results and ``resume`` is False.
        ValueError: On a bad setting (named in the message).
    """
    cfg.validate()
    out = Path(out)
    if (out / "results.json").exists() and not resume:
        raise FileExistsError(f"{out} holds results.json; pass --resume or choose another --out.")
    config = asdict(cfg)
    earlier = _earlier_results(out) if resume else None
    if resume:
        _check_same_settings(out, config, earlier)
    train, test, factory = _load(cfg)
    classes = train.num_classes or 10
    if cfg.initial < classes:
        raise ValueError(
            f"--initial {cfg.initial} is fewer labels than the {classes} classes of "
            f"{cfg.dataset}, so the class-balanced initial set would leave "
            f"{classes - cfg.initial} classes without a label; give --initial {classes} or more."
        )

    def learner(acq: str, r: int) -> ActiveLearner:
        return ActiveLearner(
            factory, train, test, method=cfg.method,
            weight_decay=_weight_decay(cfg),
            acquisition=acq, initial=cfg.initial, step=cfg.step, budget=cfg.budget,
            pool_subset=cfg.pool_subset, mc_samples=cfg.mc_samples, draws=cfg.draws,
            test_samples=cfg.test_samples,
            eval_every=cfg.eval_every, train_steps=cfg.train_steps,
            train_epochs=cfg.train_epochs, amp=_PRECISIONS[cfg.precision],
            fit_kwargs={"lr": cfg.lr, "batch_size": cfg.batch_size},
            checkpoint_dir=out / "runs" / f"{acq}-{r}", resume=resume,
            seed=cfg.seed + r, progress=progress,
        )  # fmt: skip

    learner(cfg.acquisitions[0], 0)  # checks the settings before anything is written
    distributed.check_same(config, "the experiment's settings")  # every rank checked out first
    if distributed.is_main():  # under torchrun rank 0 alone writes, the folder included
        out.mkdir(parents=True, exist_ok=True)
    if not (out / _CONFIG).exists():
        _atomic_json(out / _CONFIG, config)
    results: dict[str, Any] = {"config": config, "runs": []}
    if cfg.dataset == PUBLISHED_DATASET:
        results["published"] = PUBLISHED
    # runs recorded by an interrupted experiment keep their record and timing
    finished = {(r["acquisition"], r["repeat"]): r for r in (earlier or {}).get("runs", [])}
    for acq in cfg.acquisitions:
        for r in range(cfg.repeats):
            if (acq, r) in finished:
                results["runs"].append(finished[acq, r])
                continue
            start = time.perf_counter()
            hist = learner(acq, r).run().to_dict()
            results["runs"].append({
                "acquisition": acq, "repeat": r, "labels": hist["labels"],
                "accuracy": hist["accuracy"], "nll": hist["nll"],
                "labelled_indices": hist["labelled_indices"],
                "wall_time_s": time.perf_counter() - start,
                "train_time_s": hist["train_time_s"], "score_time_s": hist["score_time_s"],
                "test_time_s": hist["test_time_s"],
            })  # fmt: skip
            _atomic_json(out / "results.json", results)
    results["summary"] = summarize(results)
    _atomic_json(out / "results.json", results)
    if distributed.is_main():
        _write_csv(out / "results.csv", results)
        _plot(out / "curves.png", results)
    return results


_CONFIG = "config.json"  # the settings of the experiment in OUT, written before the first run


def _earlier_results(out: Path) -> dict[str, Any] | None:
    path = out / "results.json"
    return json.loads(path.read_text()) if path.exists() else None


def _flag(name: str) -> str:
    """The CLI flag of an ``ExperimentConfig`` field."""
    return "--acquisition" if name == "acquisitions" else "--" + name.replace("_", "-")


def _flag_value(value: Any) -> str:
    if value is None:
        return "(its default)"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def _check_same_settings(
    out: Path, config: dict[str, Any], earlier: dict[str, Any] | None
) -> None:
    """Refuse to resume ``out`` with settings other than the ones it was started with."""
    path = out / _CONFIG
    saved = json.loads(path.read_text()) if path.exists() else (earlier or {}).get("config")
    if saved is None:
        return
    diffs = [
        f"{_flag(k)} {_flag_value(saved.get(k))} (this run: {_flag_value(config.get(k))})"
        for k in config
        if saved.get(k) != config.get(k)
    ]
    if diffs:
        raise ValueError(
            f"cannot resume {out}: it was started with " + ", ".join(diffs) + ". Repeat the "
            "first run's flags with --resume, or give another --out to start afresh."
        )


def labels_to_reach(labels: list[int], accuracy: list[float], target: float) -> int | None:
    """First labelled-set size at which test accuracy reaches ``target`` (None if never).

    Args:
        labels: Labelled-set sizes, increasing.
        accuracy: Test accuracy at each size.
        target: Accuracy to reach, a fraction.
    """
    for n, a in zip(labels, accuracy, strict=True):
        if a >= target:
            return n
    return None


def summarize(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per acquisition: labels to reach 90/95/98% (mean over repeats), accuracy at budget.

    A repeat that never reaches a target counts as missing; ``reached`` says how many did.

    Args:
        results: The dictionary ``run_experiment`` writes.
    """
    table: dict[str, dict[str, Any]] = {}
    for acq in dict.fromkeys(r["acquisition"] for r in results["runs"]):
        runs = [r for r in results["runs"] if r["acquisition"] == acq]
        row: dict[str, Any] = {"repeats": len(runs)}
        for target in (0.90, 0.95, 0.98):
            hits = [labels_to_reach(r["labels"], r["accuracy"], target) for r in runs]
            found = [h for h in hits if h is not None]
            row[f"labels_to_{round(target * 100)}"] = float(np.mean(found)) if found else None
            row[f"reached_{round(target * 100)}"] = len(found)
        final = [r["accuracy"][-1] for r in runs]
        row["final_labels"] = runs[0]["labels"][-1]
        row["accuracy_at_budget"] = float(np.mean(final))
        row["accuracy_at_budget_sd"] = float(np.std(final))
        row["wall_time_s"] = float(np.mean([r["wall_time_s"] for r in runs]))
        table[acq] = row
    return table


def format_summary(results: dict[str, Any]) -> str:
    """The summary as a fixed-width text table; on MNIST with the published numbers beside it.

    Args:
        results: The dictionary ``run_experiment`` writes.
    """
    paper = results["config"].get("dataset") == PUBLISHED_DATASET
    pub95, pub_acc = PUBLISHED["labels_to_95"], PUBLISHED["accuracy_at_1000"]
    lines = [
        f"{'acquisition':<12} {'runs':>4} {'to 90%':>7} {'to 95%':>7} {'to 98%':>7} "
        f"{'acc@budget':>12} {'time/run':>9}"
        + (f" | {'paper 95%':>9} {'paper acc':>9}" if paper else "")
    ]

    def fmt(v: Any) -> str:
        return "-" if v is None else f"{v:.0f}"

    for acq, row in results["summary"].items():
        acc = f"{row['accuracy_at_budget'] * 100:.2f}%@{row['final_labels']}"
        paper_acc = pub_acc.get(acq)
        line = (
            f"{acq:<12} {row['repeats']:>4} {fmt(row['labels_to_90']):>7} "
            f"{fmt(row['labels_to_95']):>7} {fmt(row['labels_to_98']):>7} {acc:>12} "
            f"{row['wall_time_s'] / 60:>7.1f}m"
        )
        if paper:
            line += (
                f" | {fmt(pub95.get(acq)):>9} "
                f"{'-' if paper_acc is None else f'{paper_acc * 100:.1f}%':>9}"
            )
        lines.append(line)
    return "\n".join(lines)


def _write_csv(path: Path, results: dict[str, Any]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["acquisition", "repeat", "labels", "accuracy", "nll"])
        for r in results["runs"]:
            for n, a, nll in zip(r["labels"], r["accuracy"], r["nll"], strict=True):
                w.writerow([r["acquisition"], r["repeat"], n, f"{a:.5f}", f"{nll:.5f}"])


def _plot(path: Path, results: dict[str, Any]) -> None:
    from bayesdl.plotting import plot_learning_curves

    curves: dict[str, list[tuple[list[int], list[float]]]] = {}
    for r in results["runs"]:
        curves.setdefault(r["acquisition"], []).append((r["labels"], r["accuracy"]))
    plot_learning_curves(
        curves, path=path, title=f"Active learning on {results['config']['dataset']}"
    )
