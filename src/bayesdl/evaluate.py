"""``bayesdl evaluate``: measure methods the way a decision-maker needs them measured.

For each method (any registered name, trained here or loaded with ``load=``) on one image
data set and its out-of-distribution (OOD) partner:

- in distribution: accuracy, NLL, ECE (15 equal-width bins), adaptive (equal-mass) ECE,
  MCE and Brier score of the Bayesian model average;
- referral to a human: accuracy on the cases kept when the most uncertain 10% / 20% are
  referred (by predictive entropy) and the area under the risk-coverage curve (AURC);
- OOD alarms: AUROC, AUPR and FPR at 95% TPR of predictive entropy (total uncertainty)
  and of mutual information (epistemic uncertainty), OOD as the positive class;
- cost: the time of ``predict(x, samples=S)`` as a ratio to one deterministic forward pass
  of the same network on the same inputs (the first ``TIMING_INPUTS`` test images), both
  timed ``TIMING_REPEATS`` times in alternation after a warm-up: the median ratio and its
  range (``predict_ratio_min`` / ``_max``) are reported, not one timing;
- with ``calibrate=True``, every metric again for each method after temperature scaling
  (``TemperatureScaling``) fitted on a validation split, as rows ``<method>+T``.

Every method is built and used through the common interface (``get_method(name)(model)``,
``fit``, ``predict``), so a method added to the registry is evaluated without changes here.

Outputs in ``out``: ``metrics.json``, ``metrics.csv``, ``reliability.png``,
``ood_entropy.png``, ``ood_mi.png`` (left out when no method has an epistemic part),
``referral.png``, ``explain_<method>_uncertain.png`` and ``explain_<method>_mistakes.png``
(the report's section "Why is the model unsure?", see ``EvaluateConfig.explain``), a
self-contained ``report.html``
and the fitted posteriors under ``posteriors/<method>.safetensors`` (reload them with
``load=out/posteriors``).
"""

from __future__ import annotations

import csv
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import bayesdl.methods as bmethods
from bayesdl import data as bdata
from bayesdl import diagnostics, distributed, metrics
from bayesdl._checks import check_device
from bayesdl.calibrate import TemperatureScaling
from bayesdl.io import load, save
from bayesdl.methods.base import BaseMethod, get_method, method_names
from bayesdl.models import check_dropout_pair, gal_cnn, model_factory
from bayesdl.predictive import CategoricalPredictive
from bayesdl.runtime import default_chunk_rows, eval_mode, seeded_global_rng

__all__ = [
    "EvaluateConfig", "evaluate", "format_summary", "METRIC_COLUMNS", "METRIC_LABELS",
    "TIMING_REPEATS", "TIMING_INPUTS", "deterministic_pass_seconds", "decision_metrics",
]  # fmt: skip

_DEFAULT_OOD = {"mnist": "fashion-mnist", "fashion-mnist": "mnist", "digits": "fashion-mnist"}
_DEFAULT_EPOCHS = {"mnist": 5, "fashion-mnist": 5, "digits": 60}
_OOD_SETS = ("mnist", "fashion-mnist", "digits", "noise")
#: Share of the training split held out for temperature scaling when the data set has no
#: validation split of its own (MNIST has one: 10,000 images).
VALID_FRACTION = 0.1

METRIC_COLUMNS = [
    "accuracy", "nll", "ece", "adaptive_ece", "mce", "brier", "aurc",
    "referral_acc_at_10", "referral_acc_at_20",
    "ood_auroc_entropy", "ood_auroc_mi", "ood_aupr_entropy", "ood_aupr_mi",
    "ood_fpr95_entropy", "ood_fpr95_mi",
    "predict_ratio", "predict_ratio_min", "predict_ratio_max",
    "predict_s", "predict_s_min", "predict_s_max", "fit_s",
]  # fmt: skip
"""Per-method entries of ``metrics.json`` and columns of ``metrics.csv`` (fractions; the
timings last: ``predict_ratio`` and ``predict_s`` are medians over ``TIMING_REPEATS``
timings, with their ``_min`` and ``_max``)."""

_HIGHER, _LOWER = "\u2191", "\u2193"  # arrows: higher / lower is better
METRIC_LABELS: dict[str, str] = {
    "accuracy": f"Accuracy {_HIGHER}",
    "nll": f"NLL {_LOWER}",
    "ece": f"ECE {_LOWER}",
    "adaptive_ece": f"Adaptive ECE {_LOWER}",
    "mce": f"MCE {_LOWER}",
    "brier": f"Brier score {_LOWER}",
    "aurc": f"AURC {_LOWER}",
    "referral_acc_at_10": f"Accuracy, 10% referred {_HIGHER}",
    "referral_acc_at_20": f"Accuracy, 20% referred {_HIGHER}",
    "ood_auroc_entropy": f"AUROC, entropy {_HIGHER}",
    "ood_auroc_mi": f"AUROC, MI {_HIGHER}",
    "ood_aupr_entropy": f"AUPR, entropy {_HIGHER}",
    "ood_aupr_mi": f"AUPR, MI {_HIGHER}",
    "ood_fpr95_entropy": f"FPR at 95% TPR, entropy {_LOWER}",
    "ood_fpr95_mi": f"FPR at 95% TPR, MI {_LOWER}",
    "predict_ratio": f"Predict cost, x one pass {_LOWER}",
    "predict_s": f"Predict time (s) {_LOWER}",
    "fit_s": f"Fit time (s) {_LOWER}",
    "temperature": "Temperature T",
}
"""The report's column headers: a human name and the direction of better (arrows)."""

TIMING_REPEATS = 5
"""Alternating timings of the deterministic pass and of ``predict`` per method."""

TIMING_INPUTS = 1000
"""Test images (the first ones) that the timings use."""

_OUTPUTS = [
    "metrics.json", "metrics.csv", "reliability.png", "ood_entropy.png", "ood_mi.png",
    "referral.png", "report.html",
]  # fmt: skip


def reference_methods() -> list[str]:
    """Registered methods that can serve as the exact reference of ``--reference``: the
    full-batch samplers (``BaseMethod.full_batch``: NUTS)."""
    return [n for n in method_names() if get_method(n).full_batch]


@dataclass
class EvaluateConfig:
    """Settings of ``bayesdl evaluate`` (the CLI flags, one to one).

    Attributes:
        dataset: In-distribution data: ``"mnist"``, ``"fashion-mnist"`` or ``"digits"``.
        methods: Registered method names (``bayesdl.methods.method_names()``); default
            MAP, mean-field VI and MC dropout.
        ood: OOD test set (``"mnist"``, ``"fashion-mnist"``, ``"digits"`` or ``"noise"``,
            uniform-noise images); ``None`` picks the data set's partner (Fashion-MNIST
            for MNIST and digits, MNIST for Fashion-MNIST). Images of another size are
            resized to the in-distribution size (area interpolation).
        epochs: Training epochs; ``None``: 5 for the MNIST-sized sets, 60 for digits.
        samples: Posterior samples S per prediction.
        lr: Learning rate of every method's fit; ``None``: each method's own default
            (``BaseMethod.default_lr``: Adam's 1e-3 for most, the SG-MCMC samplers' step
            size, which a shared Adam rate left at chance).
        batch_size: Training minibatch size.
        train_size: Train on the first ``train_size`` training points (``None``: all).
        test_size: Evaluate on the first ``test_size`` test (and OOD) points.
        load: Directory of ``<method>.safetensors`` files saved by an earlier run
            (``OUT/posteriors``); the methods are loaded instead of trained.
        seed: Seed of initialisation, shuffling and posterior sampling.
        device: Torch device of the models.
        dropout: The CNN's two dropout rates (after the convolutions, before the output
            layer; ``gal_cnn``'s ``dropout``), the same for every method. With ``load``,
            give the rates the posteriors were trained with (``load`` refuses others).
        calibrate: Also report every method after temperature scaling fitted on a
            validation split (MNIST's own 10,000 validation images; for the other data sets
            the last ``VALID_FRACTION`` of the training split, which is then held out of
            training), as rows ``<method>+T``; the temperatures go to ``temperatures``.
            With ``load``, use posteriors saved by a run with the same ``calibrate``, or the
            held-out images may have been trained on.
        reference: ``"hmc"``: also measure every method against a full-batch NUTS
            posterior of the same network (``diagnostics.reference_columns``): columns
            ``ref_agreement`` and ``ref_total_variation``. Refused, naming the sizes, when
            the training set and network are too large for NUTS.
        explain: The report's section "Why is the model unsure?" shows the ``explain``
            most uncertain test images (by predictive entropy) and the ``explain`` most
            confident mistakes of each method with more than one posterior draw: the image,
            the heat map of its epistemic attribution (``explain.attribute``, integrated
            gradients from a black image), the class probabilities and the aleatoric /
            epistemic split. 0: no such section. Needs Captum (extra ``explain``).
        model: ``"module:function"`` building the network instead of ``gal_cnn``
            (``models.model_factory``): called as ``function(num_classes, in_channels,
            image_size)``, e.g. a Hugging Face image classifier built from a config and
            wrapped with ``bayesdl.hf.adapt`` (nothing is downloaded); ``dropout`` does not
            apply to it. ``None``: ``gal_cnn``.
    """

    dataset: str = "mnist"
    methods: list[str] = field(
        default_factory=lambda: [
            bmethods.MAP.cli_name, bmethods.MeanFieldVI.cli_name, bmethods.MCDropout.cli_name
        ]
    )
    ood: str | None = None
    epochs: int | None = None
    samples: int = 20
    lr: float | None = None
    batch_size: int = 128
    train_size: int | None = None
    test_size: int | None = None
    load: str | None = None
    seed: int = 0
    device: str = "cpu"
    dropout: tuple[float, float] = (0.25, 0.5)
    calibrate: bool = False
    reference: str | None = None
    explain: int = 3
    model: str | None = None

    def resolved(self) -> EvaluateConfig:
        """A copy with the defaults filled in, after checking every setting.

        Raises:
            ValueError: Naming the first bad setting.
        """
        if self.dataset not in _DEFAULT_OOD:
            raise ValueError(
                f"unknown dataset {self.dataset!r}; choose one of {sorted(_DEFAULT_OOD)}."
            )
        if not self.methods:
            raise ValueError("give at least one method, e.g. --methods map,vi,mc-dropout.")
        unknown = [m for m in self.methods if m not in method_names()]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; choose from {method_names()}.")
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods are listed twice: {self.methods}.")
        ood = _DEFAULT_OOD[self.dataset] if self.ood is None else self.ood
        if ood not in _OOD_SETS or ood == self.dataset:
            raise ValueError(
                f"ood must be one of {[s for s in _OOD_SETS if s != self.dataset]}, got {ood!r}."
            )
        for name in ("samples", "batch_size", "epochs", "train_size", "test_size"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if isinstance(self.explain, bool) or not isinstance(self.explain, int) or self.explain < 0:
            raise ValueError(f"explain must be a non-negative integer, got {self.explain!r}.")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}.")
        if self.reference is not None and self.reference not in reference_methods():
            raise ValueError(
                f"reference must be one of {reference_methods()} or None, got {self.reference!r}."
            )
        dropout = check_dropout_pair(self.dropout)
        if self.model is not None:
            model_factory(self.model)  # a bad spec is refused before anything runs
        check_device(self.device)
        epochs = _DEFAULT_EPOCHS[self.dataset] if self.epochs is None else self.epochs
        changes = {"ood": ood, "epochs": epochs, "dropout": dropout}
        return EvaluateConfig(**(asdict(self) | changes))


# -- data ------------------------------------------------------------------------------------
def _images(name: str, split: str) -> bdata.Data:
    loader = {"mnist": bdata.mnist, "fashion-mnist": bdata.fashion_mnist, "digits": bdata.digits}
    return loader[name](split)


def _train_valid(cfg: EvaluateConfig) -> tuple[bdata.Data, bdata.Data | None]:
    """The training data and, with ``calibrate``, the validation data (else ``None``)."""
    train = _images(cfg.dataset, "train")
    valid = None
    if cfg.calibrate and cfg.dataset == "mnist":
        valid = _images(cfg.dataset, "valid")
    elif cfg.calibrate:
        n_valid = max(1, round(VALID_FRACTION * len(train)))
        valid = train.subset(torch.arange(len(train) - n_valid, len(train)))
        train = train.subset(torch.arange(len(train) - n_valid))
    if cfg.train_size is not None:
        train = train.subset(torch.arange(min(cfg.train_size, len(train))))
    return train, valid


def _ood_inputs(name: str, like: Tensor, seed: int) -> Tensor:
    """``len(like)`` OOD images (fewer if the set is smaller), shaped like ``like``."""
    if name == "noise":
        g = torch.Generator().manual_seed(seed)
        return torch.rand(like.shape, generator=g, dtype=like.dtype)
    x = _images(name, "test").x[: len(like)].to(like.dtype)
    if x.shape[1:] != like.shape[1:]:
        x = F.interpolate(x, size=tuple(like.shape[-2:]), mode="area")
    return x


# -- timing ----------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def deterministic_pass_seconds(model: nn.Module, x: Tensor, batch: int, repeats: int = 3) -> float:
    """Best-of-``repeats`` time of one eval-mode forward pass over ``x`` in batches.

    Args:
        model: The network (moved inputs follow its first parameter's device).
        x: Inputs.
        batch: Rows per forward call (the methods' default chunk on this device).
        repeats: Timed repetitions after one warm-up; the fastest is returned.

    Returns:
        Seconds.
    """
    device = next(model.parameters()).device
    best = float("inf")
    with torch.no_grad(), eval_mode(model):
        for i in range(repeats + 1):
            _sync(device)
            start = time.perf_counter()
            for chunk in x.split(batch):
                model(chunk.to(device))
            _sync(device)
            if i:  # the first pass is a warm-up
                best = min(best, time.perf_counter() - start)
    return best


# -- metrics ---------------------------------------------------------------------------------
PRIOR_NOTE = (
    "Choosing a prior: every method here but MC / concrete dropout has an explicit weight "
    "prior, and bdl.prior_predictive(method, x) shows what it means before any data. In "
    "benchmarks/prior_knowledge.py (MNIST 5-9 from N = 10-3000 labels, three seeds) a prior "
    "centred at weights pretrained on digits 0-4 raised the OOD AUROC from N = 100 on (mean-field "
    "VI at N = 1000: 0.94 against 0.70) but did not raise accuracy, and lost 4-8 points at N = 10; "
    "the user guide's 'Choosing a prior' has the numbers."
)
"""The report's note on priors (see the guide's "Choosing a prior")."""


def decision_metrics(
    pred_in: CategoricalPredictive, y: Tensor, pred_out: CategoricalPredictive
) -> dict[str, float]:
    """Calibration, referral and OOD metrics of one method's predictions.

    Args:
        pred_in: Predictive on the in-distribution test inputs.
        y: Their labels, shape (N,).
        pred_out: Predictive on the OOD inputs.

    Returns:
        Metric name -> value (fractions, not percents); the keys of ``METRIC_COLUMNS``
        except the timings.
    """
    probs, y = pred_in.probs.cpu(), y.cpu()
    ent_in, ent_out = pred_in.entropy().cpu(), pred_out.entropy().cpu()
    mi_in, mi_out = pred_in.mutual_information().cpu(), pred_out.mutual_information().cpu()
    out = {
        "accuracy": metrics.accuracy(probs, y),
        "nll": metrics.nll(probs, y),
        "ece": metrics.ece(probs, y),
        "adaptive_ece": metrics.adaptive_ece(probs, y),
        "mce": metrics.mce(probs, y),
        "brier": metrics.brier(probs, y),
        "aurc": metrics.aurc(probs, y, ent_in),
        "referral_acc_at_10": metrics.accuracy_at_referral(probs, y, ent_in, 0.1),
        "referral_acc_at_20": metrics.accuracy_at_referral(probs, y, ent_in, 0.2),
    }
    for tag, s_in, s_out in (("entropy", ent_in, ent_out), ("mi", mi_in, mi_out)):
        out[f"ood_auroc_{tag}"] = metrics.ood_auroc(s_in, s_out)
        out[f"ood_aupr_{tag}"] = metrics.ood_aupr(s_in, s_out)
        out[f"ood_fpr95_{tag}"] = metrics.fpr_at_tpr(s_in, s_out, 0.95)
    return out


# -- the run ---------------------------------------------------------------------------------
def _obtain(
    name: str, cfg: EvaluateConfig, train: bdata.Data, factory: Any, out: Path, progress: bool
) -> tuple[BaseMethod, float | None]:
    """Train (or load) one method; returns it and its fit time (``None`` when loaded)."""
    if cfg.load is not None:
        path = Path(cfg.load) / f"{name}.safetensors"
        if not path.is_file():
            raise FileNotFoundError(
                f"--load: no saved posterior {path}; an earlier `bayesdl evaluate --out DIR` "
                f"writes them to DIR/posteriors."
            )
        method = load(path, factory())
        if method.cli_name != name:
            raise ValueError(f"{path} holds a {method.cli_name!r} posterior, not {name!r}.")
        return method, None
    with seeded_global_rng(cfg.seed):  # same initial weights for every method
        method = get_method(name)(factory())
    g = torch.Generator().manual_seed(cfg.seed)
    if progress:
        print(f"training {name} ({cfg.epochs} epochs on {len(train)} examples)", flush=True)
    report = method.fit(
        train, epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size, progress=progress,
        generator=g,
    )  # fmt: skip
    if distributed.is_main():  # under torchrun rank 0 alone writes
        (out / "posteriors").mkdir(exist_ok=True)
        save(method, out / "posteriors" / f"{name}.safetensors", overwrite=True)
    return method, report.wall_time_s


def _calibrated(
    method: BaseMethod,
    valid: bdata.Data,
    preds: tuple[CategoricalPredictive, CategoricalPredictive],
    cfg: EvaluateConfig,
) -> tuple[float, tuple[CategoricalPredictive, CategoricalPredictive], float]:
    """Fit a temperature on ``valid``; returns it, the scaled predictives and the seconds."""
    start = time.perf_counter()
    g = torch.Generator(device=method.device).manual_seed(cfg.seed + 1)
    pred_valid = distributed.predict_sharded(method, valid.x, cfg.samples, generator=g)
    scaler = TemperatureScaling().fit(pred_valid, valid.y)
    scaled = (scaler(preds[0]), scaler(preds[1]))
    return float(scaler.temperature or 0.0), scaled, time.perf_counter() - start


def _predict(method: BaseMethod, x: Tensor, cfg: EvaluateConfig) -> CategoricalPredictive:
    g = torch.Generator(device=method.device).manual_seed(cfg.seed)
    # under torchrun: each rank its block of x, the same draws, gathered (one process's result)
    return distributed.predict_sharded(method, x, cfg.samples, generator=g).cpu()


def _seconds(fn: Callable[[], Any], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _summary(values: list[float], name: str) -> dict[str, float]:
    return {
        name: statistics.median(values), f"{name}_min": min(values), f"{name}_max": max(values)
    }


def predict_timings(
    method: BaseMethod, x: Tensor, samples: int, repeats: int = TIMING_REPEATS, seed: int = 0
) -> dict[str, float]:
    """Time ``predict(x, samples)`` against one deterministic pass, ``repeats`` times.

    After one warm-up of each, the deterministic pass (eval mode, batches of the method's
    default chunk) and ``predict`` are timed in alternation, so a change in the machine's
    load reaches both sides of each ratio.

    Args:
        method: A fitted method.
        x: Inputs.
        samples: Posterior samples S.
        repeats: Timings of each.
        seed: Seed of the posterior samples.

    Returns:
        ``predict_ratio`` (median of the ``repeats`` ratios) with ``predict_ratio_min`` and
        ``predict_ratio_max``, and ``predict_s`` (median seconds) with ``predict_s_min`` and
        ``predict_s_max``.

    Raises:
        ValueError: If ``repeats`` is not a positive integer.
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}.")
    model, device = method.model, method.device
    batch = default_chunk_rows(device)

    def bare() -> None:
        with torch.no_grad(), eval_mode(model):
            for chunk in x.split(batch):
                model(chunk.to(device))

    def bayes() -> None:
        method.predict(x, samples=samples, generator=torch.Generator(device).manual_seed(seed))

    bare()  # warm-ups
    bayes()
    det, pred = [], []
    for _ in range(repeats):
        det.append(_seconds(bare, device))
        pred.append(_seconds(bayes, device))
    ratios = [p / d for p, d in zip(pred, det, strict=True)]
    return _summary(ratios, "predict_ratio") | _summary(pred, "predict_s")


def evaluate(
    config: EvaluateConfig, out: str | Path, *, overwrite: bool = False, progress: bool = True
) -> dict[str, Any]:
    """Train or load each method, measure it, and write the results and the report.

    Args:
        config: The settings (checked and completed with ``resolved()``).
        out: Output directory (created).
        overwrite: Replace the results of an earlier evaluation in ``out``; refused by
            default.
        progress: Print what is happening and show training progress bars.

    Returns:
        ``{"config": ..., "methods": {name: {metric: value}}, "runtime_s": ...}``, as
        written to ``metrics.json``; with ``calibrate`` also the rows ``<name>+T`` and
        ``"temperatures": {name: T}``.

    Raises:
        ValueError: On a bad setting or a saved posterior of another method.
        FileExistsError: If ``out`` holds results and ``overwrite`` is false.
        FileNotFoundError: If a data set or a posterior to load is missing.
    """
    cfg = config.resolved()
    out = Path(out)
    existing = [n for n in [*_OUTPUTS, "posteriors"] if (out / n).exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{out} already holds {existing}; pass --overwrite to replace them or pick "
            f"another --out."
        )
    start = time.perf_counter()
    (train, valid), test = _train_valid(cfg), _images(cfg.dataset, "test")
    if cfg.test_size is not None:
        test = test.subset(torch.arange(min(cfg.test_size, len(test))))
    x_ood = _ood_inputs(cfg.ood, test.x, cfg.seed)
    classes, channels, size = train.num_classes or 10, train.x.shape[1], train.x.shape[-1]
    device = torch.device(cfg.device)

    build = None if cfg.model is None else model_factory(cfg.model)

    def factory() -> nn.Module:
        if build is None:
            return gal_cnn(classes, channels, size, dropout=cfg.dropout).to(device)
        net = build(classes, channels, size)
        if not isinstance(net, nn.Module):
            raise TypeError(f"model {cfg.model!r} returned {type(net).__name__}, not an nn.Module.")
        return net.to(device)

    full_batch = [n for n in cfg.methods if get_method(n).full_batch]
    if cfg.reference is not None or full_batch:  # refuse before training anything
        n_params = sum(p.numel() for p in factory().parameters())
        if cfg.reference is not None:
            diagnostics.check_nuts_size(len(train), n_params)
        for name in full_batch:  # full-batch NUTS on all the training data, in full
            diagnostics.check_nuts_size(len(train), n_params, what=f"method {name!r} (NUTS)")
    distributed.check_same(asdict(cfg), "the evaluation's settings")  # all checked `out` first
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"config": asdict(cfg), "methods": {}}
    if valid is not None:
        results["temperatures"] = {}
    by_method: dict[str, tuple[CategoricalPredictive, CategoricalPredictive]] = {}
    explained: dict[str, list[tuple[Path, str]] | str] = {}
    for name in cfg.methods:
        method, fit_s = _obtain(name, cfg, train, factory, out, progress)
        pred_in, pred_out = _predict(method, test.x, cfg), _predict(method, x_ood, cfg)
        timings = predict_timings(method, test.x[:TIMING_INPUTS], cfg.samples, seed=cfg.seed)
        row = decision_metrics(pred_in, test.y, pred_out) | timings | {"fit_s": fit_s}
        results["methods"][name] = {c: row[c] for c in METRIC_COLUMNS}
        by_method[name] = (pred_in, pred_out)
        if cfg.explain:
            explained[name] = _explain(method, name, test, pred_in, cfg, out)
        if valid is not None:
            temperature, scaled, cal_s = _calibrated(method, valid, (pred_in, pred_out), cfg)
            cal = decision_metrics(scaled[0], test.y, scaled[1]) | timings
            cal |= {"fit_s": None if fit_s is None else fit_s + cal_s}
            results["methods"][f"{name}+T"] = {c: cal[c] for c in METRIC_COLUMNS}
            results["temperatures"][name] = temperature
            by_method[f"{name}+T"] = scaled
        if progress:
            for key in [name, f"{name}+T"] if valid is not None else [name]:
                r = results["methods"][key]
                print(f"  {key}: accuracy {r['accuracy']:.4f}, ECE {r['ece']:.4f}, "
                      f"OOD AUROC {r['ood_auroc_entropy']:.4f}", flush=True)  # fmt: skip
    if cfg.reference is not None:
        with seeded_global_rng(cfg.seed):
            model = factory()
        columns, ref = diagnostics.reference_columns(
            model, (train.x, train.y), test.x, {n: p for n, (p, _) in by_method.items()},
            init_epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size,
            generator=torch.Generator().manual_seed(cfg.seed), progress=progress,
        )  # fmt: skip
        for name, cols in columns.items():
            results["methods"][name] |= cols
        results["reference"] = asdict(ref)
    results["runtime_s"] = time.perf_counter() - start
    results["n_test"], results["n_ood"], results["n_train"] = len(test), len(x_ood), len(train)
    results["n_timed"] = min(len(test), TIMING_INPUTS)
    results["n_valid"] = 0 if valid is None else len(valid)
    if distributed.is_main():
        _write(out, results, by_method, test.y, explained)
    return results


# -- why is the model unsure? ----------------------------------------------------------------
_EXPLAIN_STEPS = 16
"""Points of the integrated-gradients path of the report's attributions."""


def _explain(
    method: BaseMethod, name: str, test: bdata.Data, pred: CategoricalPredictive,
    cfg: EvaluateConfig, out: Path,
) -> list[tuple[Path, str]] | str:  # fmt: skip
    """The report's figures for one method, or why there are none."""
    import importlib.util

    from bayesdl import explain, plotting

    if pred.num_samples == 1:
        return "one posterior draw (a point estimate) has no epistemic uncertainty to explain"
    if importlib.util.find_spec("captum") is None:
        return "Captum is not installed (pip install 'bayesdl[explain]')"
    k = cfg.explain
    entropy, probs = pred.entropy(), pred.probs
    predicted = probs.argmax(-1)
    wrong = (predicted != test.y.to(predicted.device)).nonzero().flatten()
    groups = [("uncertain", "most uncertain test images (by predictive entropy)",
               entropy.argsort(descending=True)[:k]),
              ("mistakes", "most confident mistakes",
               wrong[probs.max(-1).values[wrong].argsort(descending=True)][:k])]  # fmt: skip
    figures = []
    for tag, caption, idx in groups:
        if len(idx) == 0:
            continue
        idx = idx.cpu()
        x = test.x[idx]
        attr = explain.attribute(method, x, "epistemic", samples=cfg.samples,
                                 generator=torch.Generator().manual_seed(cfg.seed),
                                 steps=_EXPLAIN_STEPS)  # fmt: skip
        sub = CategoricalPredictive(pred.samples[:, idx.to(pred.samples.device)])
        titles = [f"test #{int(i)}: label {int(test.y[i])}, predicted {int(predicted[i])}"
                  for i in idx]  # fmt: skip
        path = out / f"explain_{name}_{tag}.png"
        fig = plotting.plot_explanations(x, attr, sub, titles=titles, path=path)
        del fig
        figures.append((path, f"{name}: the {len(idx)} {caption}"))
    return figures


# -- outputs ---------------------------------------------------------------------------------
def _write(
    out: Path,
    results: dict[str, Any],
    by_method: dict[str, tuple[CategoricalPredictive, CategoricalPredictive]],
    y: Tensor,
    explained: dict[str, list[tuple[Path, str]] | str] | None = None,
) -> None:
    from bayesdl import plotting
    from bayesdl.report import html_report

    (out / "metrics.json").write_text(json.dumps(results, indent=1))
    with open(out / "metrics.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", *METRIC_COLUMNS])
        for name, row in results["methods"].items():
            writer.writerow([name, *(row[c] for c in METRIC_COLUMNS)])
    bins = {n: metrics.reliability(p.probs, y) for n, (p, _) in by_method.items()}
    plotting.plot_reliability(bins, path=out / "reliability.png")
    # A method with one posterior draw (a point estimate) has no epistemic part: its
    # mutual information is 0 everywhere, a histogram of it says nothing.
    no_epistemic = [n for n, (p, _) in by_method.items() if p.num_samples == 1]
    notes = []
    if no_epistemic:
        notes.append(
            f"No mutual-information histogram for {', '.join(no_epistemic)}: one posterior "
            "draw (a point estimate) has no epistemic uncertainty, so its mutual information "
            "is 0 everywhere and its MI columns read n/a."
        )
    notes.append(PRIOR_NOTE)
    (out / "ood_mi.png").unlink(missing_ok=True)  # an earlier run's, if there is none now
    for tag, label, score, names in (
        ("entropy", "predictive entropy", CategoricalPredictive.entropy, list(by_method)),
        ("mi", "mutual information", CategoricalPredictive.mutual_information,
         [n for n in by_method if n not in no_epistemic]),
    ):  # fmt: skip
        if not names:
            continue
        scores = {n: (score(by_method[n][0]), score(by_method[n][1])) for n in names}
        plotting.plot_score_histograms(
            scores, score_name=label, labels=("in distribution", f"OOD ({results['config']['ood']})"),
            path=out / f"ood_{tag}.png",
        )  # fmt: skip
    mi_columns = [c for c in METRIC_COLUMNS if c.startswith("ood_") and c.endswith("_mi")]
    shown = {
        n: {**row, **({c: "n/a" for c in mi_columns} if n in no_epistemic else {})}
        for n, row in results["methods"].items()
    }
    curves = {n: metrics.referral_curve(p.probs, y, p.entropy()) for n, (p, _) in by_method.items()}
    plotting.plot_referral(curves, path=out / "referral.png")
    cfg = results["config"]
    tables = [
        (
            "In distribution",
            shown,
            ["accuracy", "nll", "ece", "adaptive_ece", "mce", "brier"],
        ),
        (
            "Referral to a human (by predictive entropy)",
            shown,
            ["aurc", "referral_acc_at_10", "referral_acc_at_20"],
        ),
        (
            "Out-of-distribution alarms",
            shown,
            [
                "ood_auroc_entropy",
                "ood_auroc_mi",
                "ood_aupr_entropy",
                "ood_aupr_mi",
                "ood_fpr95_entropy",
                "ood_fpr95_mi",
            ],
        ),
        (
            f"Cost: median of {TIMING_REPEATS} timings on {results['n_timed']} test images "
            "(range in brackets)",
            shown,
            ["predict_ratio", "predict_s", "fit_s"],
        ),
    ]  # fmt: skip
    if "reference" in results:
        ref = results["reference"]
        caption = (
            f"Distance to a NUTS reference posterior ({ref['chains']} chains x {ref['draws']} "
            f"draws; R-hat of its predictions <= {ref['max_r_hat_predictions']:.3f})"
        )
        tables.append((caption, results["methods"], ["ref_agreement", "ref_total_variation"]))
    if "temperatures" in results:
        caption = (
            f"Temperature scaling: T fitted on {results['n_valid']} validation images "
            "(rows <method>+T)"
        )
        temperatures = {n: {"temperature": t} for n, t in results["temperatures"].items()}
        tables.append((caption, temperatures, ["temperature"]))
    html_report(
        out / "report.html",
        title=f"bayesdl evaluate: {cfg['dataset']} (OOD: {cfg['ood']})",
        intro=(
            f"{len(by_method)} method(s) on {results['n_test']} test images, OOD alarms "
            f"against {results['n_ood']} {cfg['ood']} images, S = {cfg['samples']} posterior "
            f"samples. Metrics are fractions; OOD is the positive class; the predict cost "
            f"is the time of predict(samples=S) over that of one deterministic pass. "
            f"\u2191: higher is better; \u2193: lower is better."
        ),
        column_labels=METRIC_LABELS,
        notes=notes,
        tables=tables,
        images=[
            (out / "reliability.png", "Reliability diagrams (15 equal-width bins)"),
            (out / "referral.png", "Accuracy on the cases kept vs the fraction referred"),
            (out / "ood_entropy.png", "Predictive entropy, in distribution vs OOD"),
            *(
                [(out / "ood_mi.png", "Mutual information (epistemic), in distribution vs OOD")]
                if (out / "ood_mi.png").exists()
                else []
            ),
        ],
        settings=cfg | {"runtime_s": round(results["runtime_s"], 1)},
        sections=_explain_sections(explained or {}),
    )


def _explain_sections(
    explained: dict[str, list[tuple[Path, str]] | str],
) -> list[tuple[str, str, list[tuple[Path, str]]]]:
    if not explained:
        return []
    skipped = [f"{n}: {why}." for n, why in explained.items() if isinstance(why, str)]
    text = (
        "For each method, its most uncertain test images and its most confident mistakes: "
        "the image, where in it the epistemic uncertainty (mutual information) comes from "
        "(integrated gradients from a black image with the same posterior draws along the "
        "path; red raises the uncertainty, blue lowers it), and the model average's class "
        "probabilities with the aleatoric and epistemic parts of its entropy. "
        + " ".join(skipped)
    )
    figures = [f for v in explained.values() if not isinstance(v, str) for f in v]
    return [("Why is the model unsure?", text, figures)]


def format_summary(results: dict[str, Any]) -> str:
    """The printed table: one row per method, the headline metrics.

    Args:
        results: What ``evaluate`` returned.

    Returns:
        The table as text.
    """
    cols = [
        ("accuracy", "acc"), ("nll", "NLL"), ("ece", "ECE"), ("brier", "Brier"),
        ("referral_acc_at_10", "acc@10%ref"), ("ood_auroc_entropy", "AUROC(H)"),
        ("ood_auroc_mi", "AUROC(MI)"), ("predict_ratio", "predict x"),
    ]  # fmt: skip
    lines = [f"{'method':<14}" + "".join(f"{h:>11}" for _, h in cols)]
    for name, row in results["methods"].items():
        lines.append(f"{name:<14}" + "".join(f"{row[c]:>11.4f}" for c, _ in cols))
    return "\n".join(lines)
