"""The active-learning loop: acquire, label, retrain, evaluate, checkpoint.

One step of :class:`ActiveLearner` (step 0 labels the initial set instead of acquiring):

1. **score**: predict on a random subset of the unlabelled pool (``pool_subset`` points,
   ``mc_samples`` MC samples) with the model of the previous step and pick ``step`` points
   with the acquisition function;
2. **label**: ask the oracle (by default the data set's own labels);
3. **train**: a fresh method from the factory (or the previous one with ``warm_start``);
4. **test**: accuracy and NLL of the model average (``test_samples`` MC samples) on the
   test set, every ``eval_every`` steps and at the last step;
5. **checkpoint** (when ``checkpoint_dir`` is set), atomically.

Retraining schedule: by default a *fixed number of gradient steps* (``train_steps``)
whatever the size of the labelled set, i.e. ``epochs = ceil(train_steps / batches_per_epoch)``.
With a fixed number of epochs, 20 labelled points would get a handful of updates and 1,000
points many. ``train_epochs=E`` sizes the schedule to the labelled set instead (Gal et al.
train 50 epochs): ``max(E, ceil(train_steps / batches_per_epoch))`` epochs, so
``train_steps`` becomes the floor that small sets still get, and the cost of a step grows
with the labelled set (the total over a run is roughly ``E x sum of the set sizes`` images,
less than a fixed step count large enough for the final set). The prior (weight decay) is
divided by the number of labelled points, because every bayesdl objective scales the prior
term by ``1/n_data``; ``weight_decay=c`` reproduces Gal et al.'s ``c / N_labelled * ||w||^2``
on every layer, and ``weight_decay={"7": c}`` on the named layers only (the others get a
flat prior), which is what their code does: it decays only the CNN's first dense layer.

Mixed precision (``amp=torch.bfloat16``): training and the test-set predictions run under
``torch.autocast`` (faster on CPUs with bfloat16 support: the Gal CNN's timings are in
``benchmarks/results/amp_speed.md``); the pool is always scored in full precision,
because acquisition scores are small differences of entropies.

Randomness and resuming. Nothing here draws from torch's global RNG without seeding it:

* the pool subsets and the acquisition noise come from one CPU generator, seeded from
  ``seed`` and saved in every checkpoint (its state as base64);
* the initial set, the model initialisation and training, and the MC samples for the
  pool and the test set use generators seeded from ``(seed, step, purpose)``;
* the model's constructor and ``nn.Dropout`` during training draw from torch's global RNG,
  which cannot take a generator: the loop builds each step's model with it seeded from
  ``(seed, step)``, and ``fit`` seeds it from the step's shuffling generator, both inside
  ``torch.random.fork_rng``, so the caller's global RNG state is restored afterwards.

So a run resumed from the checkpoint of step t repeats steps t+1, ... exactly as the
uninterrupted run would (on the same machine, library versions and thread count).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bayesdl import distributed, metrics, priors
from bayesdl._checks import (
    check_amp,
    check_dict_input,
    check_labels,
    check_model_input,
    check_output_memory,
    output_size,
)
from bayesdl.active import _checkpoint as ckpt
from bayesdl.active.acquisition import get_acquisition, preferred_draws, select
from bayesdl.active.history import ActiveHistory, StepRecord
from bayesdl.active.pool import Pool
from bayesdl.active.schedule import BATCHBALD_SCHEDULE, FixedLengthBatches
from bayesdl.inputs import is_dict_input, num_examples, take
from bayesdl.methods.base import Method, get_method
from bayesdl.methods.mc_dropout import MCDropout
from bayesdl.predictive import CategoricalPredictive
from bayesdl.progress import progress_bar
from bayesdl.runtime import seeded_global_rng

__all__ = ["ActiveLearner", "ActiveHistory", "StepRecord"]

_TRAIN, _POOL, _TEST, _INITIAL, _ACQUISITION, _SHUFFLE = range(6)
_RESERVED_FIT = ("epochs", "progress", "generator", "amp")


def derive_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed mixed from ``seed`` and ``keys`` (numpy ``SeedSequence``)."""
    state = np.random.SeedSequence([seed, *keys]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def _generator(seed: int, *keys: int, device: torch.device | str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(derive_seed(seed, *keys))


def _split_data(data: Any, name: str) -> tuple[Tensor, Tensor, int | None]:
    if isinstance(data, tuple) and len(data) == 2:
        x, y = data
        classes = None
    elif hasattr(data, "x") and hasattr(data, "y"):
        x, y, classes = data.x, data.y, getattr(data, "num_classes", None)
    else:
        raise TypeError(f"{name} must be a bayesdl Data or a tuple (X, y), got {type(data)}.")
    if is_dict_input(x):  # keyword inputs of a Hugging Face model (``bayesdl.hf.adapt``)
        x = check_dict_input(x, f"{name} X")
    elif not isinstance(x, Tensor) or x.dim() == 0:
        raise TypeError(f"{name}: X must be a tensor (N, ...) or a dict of them.")
    if not isinstance(y, Tensor):
        raise TypeError(f"{name}: y must be a tensor.")
    n = num_examples(x)
    if n == 0 or y.shape != (n,):
        raise ValueError(
            f"{name} must hold N >= 1 inputs and labels of shape (N,), got X "
            f"{_shape(x)} and y {tuple(y.shape)}."
        )
    top = int(y.max()) + 1 if classes is None else int(classes)
    check_labels(y, n, top, name=f"{name} labels")
    return x, y, classes


def _shape(x: Any) -> Any:
    """The shape of inputs as JSON: a list, or name -> list for a dict batch."""
    if is_dict_input(x):
        return {k: list(v.shape) for k, v in x.items()}
    return list(x.shape)


def _tensors(x: Any) -> list[Tensor]:
    """The tensors of inputs, a dict batch's in key order."""
    return [x[k] for k in sorted(x)] if is_dict_input(x) else [x]


def _check_int(value: Any, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
    return value


def _digest(*tensors: Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def retrain_epochs(
    n_labelled: int, batch_size: int, train_steps: int, train_epochs: float | None
) -> int:
    """Epochs of one retraining on ``n_labelled`` points (schedule: the module docstring).

    ``ceil(train_steps / batches)``, or with ``train_epochs`` the larger of that floor and
    ``ceil(train_epochs)``.
    """
    epochs = math.ceil(train_steps / math.ceil(n_labelled / batch_size))
    if train_epochs is not None:
        epochs = max(epochs, math.ceil(train_epochs))
    return epochs


def _decay_prior(weight_decay: float | Mapping[str, float]) -> priors.Normal:
    """Gal et al.'s ``c`` (global or per layer, flat elsewhere) as a Normal prior."""
    per_layer = weight_decay if isinstance(weight_decay, Mapping) else {"": weight_decay}
    if not per_layer:
        raise ValueError("weight_decay mapping is empty; name at least one layer.")
    for layer, c in per_layer.items():
        if not (isinstance(c, (int, float)) and math.isfinite(c) and c > 0):
            raise ValueError(f"weight_decay must be positive, got {c!r} for layer {layer!r}.")
    scales = {layer: 1.0 / math.sqrt(2.0 * c) for layer, c in per_layer.items()}
    if not isinstance(weight_decay, Mapping):
        return priors.Normal(scales[""])
    return priors.Normal({"": math.inf, **scales})


class ActiveLearner:
    """Pool-based Bayesian active learning with checkpoints (Gal et al., 2017).

    Args:
        factory: Called with no arguments once per training run; returns either a bayesdl
            method (``lambda: bdl.MCDropout(Net())``) or a bare ``nn.Module`` that is
            wrapped with the registered method ``method``.
        train: The pool: a ``bayesdl.data.Data`` or a tuple ``(X, y)``; ``y`` is what the
            default oracle answers and what ``balanced`` uses.
        test: Test set, a ``Data`` or ``(X, y)``; never used for training or selection.
        method: Registry name used when ``factory`` returns a model (default
            MC dropout, as Gal et al.); must be ``None`` when it returns a method.
        method_kwargs: Constructor arguments of ``method`` (e.g. ``{"prior": ...}``).
        weight_decay: Gal et al.'s ``c`` in ``c / N_labelled * ||w||^2``: sets the prior to
            ``priors.Normal(1 / sqrt(2 c))`` (only when ``factory`` returns a model). A
            mapping ``{module prefix: c}`` decays only those layers (flat prior elsewhere).
        acquisition: Acquisition function name (see ``bayesdl.active.acquisition_names``);
            default ``"power-bald"`` (Kirsch et al. 2023), chosen on the digits pool of
            ``benchmarks/acquisition_pools.py`` (above random on 6 of 6 seeds, BALD on 4).
        acquisition_kwargs: Options of a batch acquisition (``num_configs``, ``beta``).
        initial: Size of the initial labelled set (class-balanced if ``balanced``).
        step: Points acquired per step.
        budget: Labelled-set size at which the loop stops (initial set included).
        pool_subset: Unlabelled points scored per step (random subset); ``None`` scores all.
        mc_samples: MC samples S for scoring the pool (Gal et al.'s code uses 100).
        draws: Posterior draws for scoring the pool (``predict(draws=...)``): ``"auto"``
            (default) gives each pool point its own S draws (``"independent"``) for per-point
            scores and the same S draws (``"shared"``) for functions that read the joint
            predictive (BatchBALD, EPIG); see ``acquisition.preferred_draws`` and
            ``benchmarks/results/acquisition_pools.md`` for the measurements behind it.
        test_samples: MC samples for the test-set predictions (``None``: ``mc_samples``).
        eval_every: Evaluate on the test set every this many steps (and at the last one).
        train_steps: Gradient steps per (re)training; with ``train_epochs`` the minimum.
            See the module docstring.
        train_epochs: Epochs per (re)training, sized to the labelled set (``None``: a fixed
            ``train_steps``).
        schedule: ``"fixed"`` (default): the ``train_steps`` / ``train_epochs`` schedule of
            the module docstring. ``"batchbald"``: Kirsch et al. (2019)'s published one
            (``bayesdl.active.schedule``): epochs of 5,056 samples drawn from the labelled
            set in minibatches of 64, at most 30, early stopping with patience 3 on
            ``val_data``'s NLL (the best epoch is restored); ``train_steps``,
            ``train_epochs`` and ``fit_kwargs["batch_size"]`` are then unused. Pair it with
            ``mc_samples=100``, their sample count.
        val_data: ``(X_val, y_val)``, the labelled validation set of ``schedule="batchbald"``
            (theirs: 1,024 points held out of the training set).
        amp: ``torch.bfloat16`` to train and evaluate on the test set in mixed precision
            (``None``: full precision); see the module docstring. Needs a method trained by
            ``BaseMethod.fit`` (MAP, MC dropout, VI, concrete dropout, L0).
        fit_kwargs: Other ``Method.fit`` arguments (default ``{"lr": 1e-3,
            "batch_size": 64}``); ``epochs``, ``progress``, ``generator`` and ``amp`` are
            the loop's.
        warm_start: Continue training the previous step's method instead of a fresh one.
        balanced: Draw the initial set class-balanced from ``train``'s labels (Gal et al.);
            otherwise uniformly at random.
        oracle: ``oracle(indices) -> labels`` for int64 pool indices (k,); returns integer
            labels (k,). Default: ``train``'s labels. Its answers are stored in checkpoints
            and never asked again on resume.
        checkpoint_dir: Directory for the checkpoint written after every step.
        resume: Continue from the checkpoint in ``checkpoint_dir`` when there is one.
        overwrite: Delete an existing checkpoint in ``checkpoint_dir`` and start afresh.
        seed: Seed of every random choice of the run.
        progress: Show a progress bar over the steps (plain lines when not a terminal).
        callbacks: Called as ``callback(record)`` with each step's ``StepRecord``.

    Every random choice comes from generators seeded by ``seed`` (see the module
    docstring), except that model construction and ``nn.Dropout`` during training cannot
    take a generator: for those torch's global RNG is seeded from ``(seed, step)`` inside
    ``torch.random.fork_rng`` (by the loop, and by ``fit`` from its generator), leaving the
    caller's global RNG state unchanged.

    Raises:
        ValueError: On inconsistent settings: ``budget`` larger than the pool, ``step`` < 1,
            ``initial`` > ``budget``, an unknown acquisition, ``pool_subset`` < ``step``.
        FileExistsError: If ``checkpoint_dir`` holds a checkpoint and neither ``resume``
            nor ``overwrite`` is set.

    Examples:
        >>> import torch, bayesdl as bdl
        >>> from torch import nn
        >>> train, test = bdl.data.digits("train"), bdl.data.digits("test")
        >>> net = lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(),
        ...                             nn.Dropout(0.5), nn.Linear(32, 10))
        >>> learner = ActiveLearner(net, train, test, initial=10, step=5, budget=20,
        ...                         train_steps=20, mc_samples=4, progress=False)
        >>> history = learner.run()
        >>> history.labels
        [10, 15, 20]

    References:
        Gal, Islam & Ghahramani, "Deep Bayesian Active Learning with Image Data", ICML 2017.
    """

    def __init__(
        self,
        factory: Callable[[], Method | nn.Module],
        train: Any,
        test: Any,
        *,
        method: str | None = None,
        method_kwargs: dict[str, Any] | None = None,
        weight_decay: float | Mapping[str, float] | None = None,
        acquisition: str = "power-bald",
        acquisition_kwargs: dict[str, Any] | None = None,
        initial: int = 20,
        step: int = 10,
        budget: int = 1000,
        pool_subset: int | None = 2000,
        mc_samples: int = 20,
        draws: str = "auto",
        test_samples: int | None = None,
        eval_every: int = 1,
        train_steps: int = 500,
        train_epochs: float | None = None,
        schedule: str = "fixed",
        val_data: Any = None,
        amp: torch.dtype | None = None,
        fit_kwargs: dict[str, Any] | None = None,
        warm_start: bool = False,
        balanced: bool = True,
        oracle: Callable[[Tensor], Tensor] | None = None,
        checkpoint_dir: str | Path | None = None,
        resume: bool = False,
        overwrite: bool = False,
        seed: int = 0,
        progress: bool = True,
        callbacks: Sequence[Callable[[StepRecord], Any]] = (),
    ) -> None:
        if not callable(factory):
            raise TypeError(f"factory must be callable, got {type(factory).__name__}.")
        self.factory = factory
        self.train_x, self.train_y, classes = _split_data(train, "train")
        self.test_x, self.test_y, _ = _split_data(test, "test")
        self.num_classes = int(classes or int(self.train_y.max()) + 1)
        n = num_examples(self.train_x)
        self.acquisition = get_acquisition(acquisition)
        self.acquisition_kwargs = dict(acquisition_kwargs or {})
        if self.acquisition.kind == "score" and self.acquisition_kwargs:
            raise ValueError(
                f"acquisition {self.acquisition.name!r} takes no options, got "
                f"acquisition_kwargs={self.acquisition_kwargs}."
            )
        self.step_size = _check_int(step, "step", 1)
        self.initial = _check_int(initial, "initial", 1)
        self.budget = _check_int(budget, "budget", 1)
        if self.budget > n:
            raise ValueError(f"budget={budget} is larger than the pool ({n} training points).")
        if self.initial > self.budget:
            raise ValueError(f"initial={initial} is larger than budget={budget}.")
        if pool_subset is not None and _check_int(pool_subset, "pool_subset", 1) < step:
            raise ValueError(f"pool_subset={pool_subset} is smaller than step={step}.")
        self.pool_subset = pool_subset
        self.mc_samples = _check_int(mc_samples, "mc_samples", 1)
        if draws not in ("auto", "shared", "independent"):
            raise ValueError(f"draws must be 'auto', 'shared' or 'independent', got {draws!r}.")
        self.draws = preferred_draws(self.acquisition.name) if draws == "auto" else draws
        self.test_samples = (
            self.mc_samples if test_samples is None else _check_int(test_samples, "test_samples", 1)
        )
        self.eval_every = _check_int(eval_every, "eval_every", 1)
        self.train_steps = _check_int(train_steps, "train_steps", 1)
        if train_epochs is not None and not (
            isinstance(train_epochs, (int, float)) and train_epochs > 0
        ):
            raise ValueError(f"train_epochs must be positive or None, got {train_epochs!r}.")
        self.train_epochs = train_epochs
        if schedule not in ("fixed", "batchbald"):
            raise ValueError(f"schedule must be 'fixed' or 'batchbald', got {schedule!r}.")
        if (schedule == "batchbald") != (val_data is not None):
            raise ValueError(
                "schedule='batchbald' needs val_data=(X_val, y_val) (early stopping), and "
                "val_data is used only by that schedule; give both or neither."
            )
        self.schedule = schedule
        self.val_x, self.val_y = (None, None)
        if val_data is not None:
            self.val_x, self.val_y, _ = _split_data(val_data, "val_data")
        check_amp(amp)  # here too, so a bad setting fails before any training
        self.amp = amp
        self.seed = _check_int(seed, "seed", 0)
        self.fit_kwargs = {"lr": 1e-3, "batch_size": 64, **(fit_kwargs or {})}
        reserved = [k for k in _RESERVED_FIT if k in self.fit_kwargs]
        if reserved:
            raise ValueError(f"fit_kwargs may not set {reserved}; the loop sets them.")
        _check_int(self.fit_kwargs["batch_size"], "fit_kwargs['batch_size']", 1)
        self.method_name = method
        self.method_kwargs = dict(method_kwargs or {})
        if weight_decay is not None:
            if "prior" in self.method_kwargs:
                raise ValueError("give either weight_decay or method_kwargs['prior'], not both.")
            self.method_kwargs["prior"] = _decay_prior(weight_decay)
        self.weight_decay = (
            dict(weight_decay) if isinstance(weight_decay, Mapping) else weight_decay
        )
        if method is not None:
            get_method(method)  # unknown names fail here
        self.warm_start = bool(warm_start)
        self.balanced = bool(balanced)
        self.oracle = oracle
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.resume = bool(resume)
        self.progress = bool(progress)
        self.callbacks = list(callbacks)
        if any(not callable(cb) for cb in self.callbacks):
            raise TypeError("every callback must be callable.")
        if self.checkpoint_dir is not None and ckpt.has_checkpoint(self.checkpoint_dir):
            if overwrite and distributed.is_main():
                ckpt.clear(self.checkpoint_dir)
            elif not resume:
                raise FileExistsError(
                    f"{self.checkpoint_dir} already holds an active-learning checkpoint; pass "
                    "resume=True to continue it, overwrite=True to replace it, or use another "
                    "checkpoint_dir."
                )
        self.num_steps = math.ceil((self.budget - self.initial) / self.step_size)
        self.pool = Pool(n)
        self.labels: list[int] = []  # oracle answers, in labelling order
        self.history = ActiveHistory()
        self.method: Method | None = None
        self._rng = _generator(self.seed, _ACQUISITION)
        self._config: dict[str, Any] | None = None

    # -- configuration -------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The settings that determine the run (what a checkpoint must match), as JSON."""
        if self._config is None:
            probe = self._build(0)
            arch = {k: list(v.shape) for k, v in probe.state_dict().items()}
            fit = {k: ckpt.jsonable(v) for k, v in self.fit_kwargs.items()}
            train_digest = _digest(*_tensors(self.train_x), self.train_y)
            config = {
                "acquisition": self.acquisition.name,
                "acquisition_kwargs": ckpt.jsonable(self.acquisition_kwargs),
                "initial": self.initial,
                "step": self.step_size,
                "budget": self.budget,
                "pool_subset": self.pool_subset,
                "mc_samples": self.mc_samples,
                "draws": self.draws,
                "test_samples": self.test_samples,
                "eval_every": self.eval_every,
                "train_steps": self.train_steps,
                "train_epochs": self.train_epochs,
                "schedule": self.schedule,
                "val_data": None if self.val_x is None else _digest(*_tensors(self.val_x), self.val_y),
                "amp": None if self.amp is None else str(self.amp),
                "fit": fit,
                "warm_start": self.warm_start,
                "balanced": self.balanced,
                "seed": self.seed,
                "method": type(probe).__name__,
                "method_kwargs": ckpt.jsonable(self.method_kwargs),
                "weight_decay": self.weight_decay,
                "architecture": hashlib.sha256(json.dumps(arch).encode()).hexdigest()[:16],
                "train_data": {"shape": _shape(self.train_x), "sha256": train_digest},
                "test_data": {
                    "shape": _shape(self.test_x),
                    "sha256": _digest(*_tensors(self.test_x), self.test_y),
                },
            }
            self._config = json.loads(json.dumps(config))
        return self._config

    def _check_inputs(self) -> None:
        """Refuse, before any training, pool or test inputs that the model cannot take, and
        a pool scoring or test prediction whose outputs would not fit in memory."""
        model = self._build(0).model
        first = next(model.parameters(), torch.empty(0))
        per_example = output_size(model)
        pool = num_examples(self.train_x)
        scored = min(self.pool_subset or pool, pool)
        for x, name, n, samples in (
            (self.train_x, "train X", scored, self.mc_samples),
            (self.test_x, "test X", num_examples(self.test_x), self.test_samples),
        ):
            check_model_input(model, x, name)
            check_output_memory(samples, n, per_example, first.dtype, first.device)

    # -- pieces of a step ----------------------------------------------------------------
    def _build(self, step: int) -> Method:
        """A fresh method; its constructor's global-RNG draws are seeded by (seed, step)."""
        with seeded_global_rng(derive_seed(self.seed, step, _TRAIN)):
            obj = self.factory()
        if isinstance(obj, Method):
            if self.method_name is not None or self.method_kwargs:
                raise ValueError(
                    "the factory returned a method; method, method_kwargs and weight_decay "
                    "apply only to a factory that returns a bare nn.Module."
                )
            return obj
        if not isinstance(obj, nn.Module):
            raise TypeError(
                f"factory must return a bayesdl method or an nn.Module, got {type(obj).__name__}."
            )
        if isinstance(self.weight_decay, Mapping):
            names = [n for n, _ in obj.named_parameters()]
            for prefix in self.weight_decay:
                if prefix and not any(n == prefix or n.startswith(prefix + ".") for n in names):
                    raise ValueError(
                        f"weight_decay names layer {prefix!r}, which the model does not have; "
                        f"its parameters are {names}."
                    )
        return get_method(self.method_name or MCDropout.cli_name)(obj, **self.method_kwargs)

    def _ask_oracle(self, idx: Tensor) -> list[int]:
        labels = self.train_y[idx] if self.oracle is None else self.oracle(idx.clone())
        if not isinstance(labels, Tensor):
            labels = torch.as_tensor(labels)
        if labels.shape != idx.shape or labels.is_floating_point():
            raise ValueError(
                f"oracle must return integer labels of shape {tuple(idx.shape)}, got "
                f"{labels.dtype} {tuple(labels.shape)}."
            )
        bad = (labels < 0) | (labels >= self.num_classes)
        if bad.any():
            raise ValueError(
                f"oracle returned labels outside [0, {self.num_classes - 1}] for pool indices "
                f"{idx[bad].tolist()}."
            )
        return labels.cpu().tolist()

    def _train(self, step: int) -> None:
        """(Re)train on the labelled set (schedule: see the module docstring)."""
        idx = self.pool.labelled
        x, y = take(self.train_x, idx), torch.tensor(self.labels, dtype=torch.long)
        epochs = retrain_epochs(
            len(idx), self.fit_kwargs["batch_size"], self.train_steps, self.train_epochs
        )
        if self.method is None or not self.warm_start:
            self.method = self._build(step)
        if self.schedule == "batchbald":
            sched = BATCHBALD_SCHEDULE
            fit = {k: v for k, v in self.fit_kwargs.items() if k != "batch_size"}
            self.method.fit(
                FixedLengthBatches(x, y, sched.batch_size, sched.epoch_samples),
                epochs=sched.max_epochs, progress=False,
                generator=_generator(self.seed, step, _SHUFFLE), amp=self.amp,
                val_data=(self.val_x, self.val_y), patience=sched.patience,
                val_samples=self.mc_samples, **fit,
            )  # fmt: skip
            return
        # fit forks the global RNG (nn.Dropout's masks) from the shuffling generator
        self.method.fit(
            (x, y),
            epochs=epochs,
            progress=False,
            generator=_generator(self.seed, step, _SHUFFLE),
            amp=self.amp,
            **self.fit_kwargs,
        )

    def _device(self) -> torch.device:
        return getattr(self.method, "device", torch.device("cpu"))

    def _predict(
        self, x: Tensor, step: int, purpose: int, samples: int, draws: str = "shared"
    ) -> CategoricalPredictive:
        assert self.method is not None
        g = _generator(self.seed, step, purpose, device=self._device())
        options = {} if draws == "shared" else {"draws": draws}  # any Method takes shared
        pred = self.method.predict(x, samples=samples, generator=g, **options)
        if not isinstance(pred, CategoricalPredictive):
            raise TypeError("active learning needs a classification method (Categorical).")
        return pred.cpu()

    def _acquire(self, step: int, k: int) -> Tensor:
        candidates = self.pool.unlabelled_subset(self.pool_subset, self._rng)
        if self.acquisition.needs_model and distributed.is_active():
            return candidates[self._acquire_sharded(step, k, candidates)]
        if self.acquisition.needs_model:
            pool = take(self.train_x, candidates)
            pred = self._predict(pool, step, _POOL, self.mc_samples, self.draws)
        else:  # random acquisition reads only the pool size
            pred = CategoricalPredictive(torch.zeros(1, candidates.numel(), 1))
        local = select(
            self.acquisition.name, pred, k, generator=self._rng, **self.acquisition_kwargs
        )
        return candidates[local]

    def _acquire_sharded(self, step: int, k: int, candidates: Tensor) -> Tensor:
        """Under a process group: every rank scores its block of the candidates with the
        same posterior draws; a score function's global top-k comes from an all-gather of
        every rank's own top-k (score, position), a batch function that shards its work
        (BatchBALD) splits it over the ranks, any other batch function runs on the gathered
        predictive, the same on every rank. Returns positions in ``candidates``."""
        start, stop = distributed.shard_bounds(candidates.numel())
        pred = self._predict(
            take(self.train_x, candidates[start:stop]), step, _POOL, self.mc_samples
        )
        acq = self.acquisition
        if acq.kind == "batch" and acq.sharded:
            noise = {"generator": self._rng} if acq.stochastic else {}
            return acq.fn(pred, k, shard=(start, candidates.numel()), **noise,
                          **self.acquisition_kwargs)  # fmt: skip
        if acq.kind == "batch" or acq.stochastic:
            pred = distributed.gather_predictive(pred)
            return select(acq.name, pred, k, generator=self._rng, **self.acquisition_kwargs)
        local = select(acq.name, pred, min(k, len(pred)))  # checks the scores (NaN)
        scores = acq.fn(pred).detach().cpu()[local]
        return distributed.top_k(scores, local + start, k)

    def _evaluate(self, step: int) -> tuple[float, float]:
        amp = torch.autocast(self._device().type, dtype=self.amp, enabled=self.amp is not None)
        with amp:
            if distributed.is_active():  # each rank its block of the test set, then gathered
                rows = slice(*distributed.shard_bounds(num_examples(self.test_x)))
                part = self._predict(take(self.test_x, rows), step, _TEST, self.test_samples)
                pred = distributed.gather_predictive(part)
            else:
                pred = self._predict(self.test_x, step, _TEST, self.test_samples)
        probs = pred.probs.double()
        probs = probs / probs.sum(-1, keepdim=True)
        return metrics.accuracy(probs, self.test_y), metrics.nll(probs, self.test_y)

    # -- checkpoints ---------------------------------------------------------------------
    def _save(self, step: int) -> None:
        if self.checkpoint_dir is None or not distributed.is_main():  # rank 0 alone writes
            return
        assert self.method is not None
        state = {
            "format": ckpt.FORMAT,
            "config": self.config(),
            "step": step,
            "complete": step >= self.num_steps,
            "pool": self.pool.state_dict(),
            "labels": list(self.labels),
            "history": self.history.to_dict(),
            "rng": {"acquisition": ckpt.encode_generator(self._rng)},
        }
        ckpt.save(self.checkpoint_dir, step, state, self.method.state_dict())

    def _restore(self) -> int:
        """Load the checkpoint; return the next step to run."""
        assert self.checkpoint_dir is not None
        state, tensors = ckpt.load(self.checkpoint_dir)
        diffs = ckpt.config_differences(state["config"], self.config())
        if diffs:
            raise ValueError(
                f"cannot resume {self.checkpoint_dir}: it was made with different settings: "
                + "; ".join(diffs)
                + ". Use the same settings, another checkpoint_dir, or overwrite=True."
            )
        step = int(state["step"])
        self.pool = Pool.from_state(state["pool"])
        self.labels = [int(v) for v in state["labels"]]
        self.history = ActiveHistory.from_dict(state["history"])
        ckpt.decode_generator(state["rng"]["acquisition"], self._rng)
        self.method = self._build(step)
        self.method.load_state_dict(tensors)
        return step + 1

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> ActiveHistory:
        """Run (or resume) the loop until ``budget`` points are labelled.

        Returns:
            The ``ActiveHistory``; ``self.method`` is the last fitted method and
            ``self.pool`` the final pool.

        Raises:
            ValueError: If a checkpoint to resume was made with other settings (the message
                names them), or the oracle answers with invalid labels.
        """
        start = 0
        distributed.barrier()  # rank 0 has cleared an overwritten checkpoint (__init__)
        distributed.check_same(self.config(), "the active-learning config")
        # A second call starts the run again from scratch (or from the checkpoint).
        self.pool, self.labels, self.history, self.method = (
            Pool(self.pool.n),
            [],
            ActiveHistory(),
            None,
        )
        self._rng = _generator(self.seed, _ACQUISITION)
        resuming = self.resume and self.checkpoint_dir and ckpt.has_checkpoint(self.checkpoint_dir)
        if resuming:
            start = self._restore()
        elif self.checkpoint_dir is not None:
            # Only a checkpoint of this very config (an earlier run() of this learner) may
            # be replaced; anything else was refused or cleared in __init__, or appeared since.
            config = self.config()
            if ckpt.has_checkpoint(self.checkpoint_dir):
                if ckpt.read_state(self.checkpoint_dir).get("config") != config:
                    raise FileExistsError(
                        f"{self.checkpoint_dir} holds a checkpoint of another config; pass "
                        "overwrite=True to replace it or use another checkpoint_dir."
                    )
        self._check_inputs()
        bar = progress_bar(
            total=self.num_steps + 1,
            initial=start,
            desc=f"active {self.acquisition.name}",
            disable=not self.progress,
        )
        try:
            for step in range(start, self.num_steps + 1):
                record = self._run_step(step)
                self._save(step)
                distributed.barrier()  # every rank resumes from this step after a crash
                bar.update(1)
                if record.accuracy is not None:
                    bar.set_postfix(labels=record.num_labelled, acc=f"{record.accuracy:.4f}")
                for callback in self.callbacks:
                    callback(record)
        finally:
            bar.close()
        return self.history

    def _run_step(self, step: int) -> StepRecord:
        t0 = time.perf_counter()
        if step == 0:
            g = _generator(self.seed, 0, _INITIAL)
            if self.balanced:
                idx = self.pool.balanced_initial(self.train_y, total=self.initial, generator=g)
            else:
                idx = self.pool.unlabelled_subset(self.initial, g)
        else:
            k = min(self.step_size, self.budget - self.pool.num_labelled)
            idx = self._acquire(step, k)
        t1 = time.perf_counter()
        answers = self._ask_oracle(idx)
        self.pool.label(idx)
        self.labels.extend(answers)
        t2 = time.perf_counter()
        self._train(step)
        t3 = time.perf_counter()
        record = StepRecord(step, self.pool.num_labelled, idx.tolist())
        if step % self.eval_every == 0 or step == self.num_steps:
            record.accuracy, record.nll = self._evaluate(step)
        t4 = time.perf_counter()
        record.score_time_s, record.train_time_s, record.test_time_s = t1 - t0, t3 - t2, t4 - t3
        self.history.records.append(record)
        self.history.labelled_indices = self.pool.labelled.tolist()
        return record
