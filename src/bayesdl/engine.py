"""The training engine: the one loop every gradient-based method runs through.

A method does not write a training loop. It supplies pieces that the engine calls with
explicit arguments (``bayesdl.methods.base.BaseMethod`` documents each):

* ``objective(x, y, n_data, generator, state) -> Terms``: the data term (mean negative
  log-likelihood of the minibatch) and the prior / KL term per example, kept apart so both
  are reported;
* ``fit_phases(...)``: the stretches of training with their own optimiser, learning rate
  and schedule (SWAG: pre-training, then constant-rate SGD);
* hooks around every step, epoch, phase and ensemble member, each receiving the
  ``FitState`` of the current fit (SWAG's moments, SG-MCMC's sample bank and noise).

The engine owns the rest: the minibatch sampler (``Batches``: shuffled tensor slices, or a
``DataLoader``, replaceable), the optimiser and the learning-rate schedule (constant,
cosine, cyclical), gradient clipping, mixed precision, validation with early stopping (the
best state restored), callbacks, progress bars and the warnings that name a failed run.

Nothing travels between calls on the method object: what one fit needs lives in its
``FitState`` and is gone when ``fit`` returns.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from bayesdl._checks import check_input, check_model_input, check_positive_int, to_dataset
from bayesdl.inputs import cat_inputs, num_examples, split_labels
from bayesdl.progress import progress_bar
from bayesdl.runtime import flush_subnormal_, peek_seed, seeded_global_rng
from bayesdl.types import DataLike, FitReport

if TYPE_CHECKING:
    from bayesdl.methods.base import BaseMethod

__all__ = [
    "Schedule", "Terms", "Phase", "FitState", "Callback", "Batches", "TensorBatches",
    "LoaderBatches", "make_batches", "lr_factors", "cycle_lengths", "run_fit",
]  # fmt: skip

Schedule = Literal["constant", "cosine", "cyclical"]
"""Learning-rate schedules: ``"constant"``; ``"cosine"`` (one half cosine from ``lr`` to 0
over the phase, Loshchilov & Hutter 2017); ``"cyclical"`` (``cycles`` cosine cycles, each
restarting at ``lr``, as cyclical SG-MCMC uses, Zhang et al. 2020)."""

OptimizerFactory = Callable[..., torch.optim.Optimizer]
"""An optimiser class or factory, called as ``factory(params, lr=lr)``."""


@dataclass(frozen=True)
class Terms:
    """The two parts of a per-example training objective.

    Attributes:
        data: Mean negative log-likelihood of the minibatch (scalar tensor).
        prior: Prior / KL term divided by the training-set size N (scalar tensor).
    """

    data: Tensor
    prior: Tensor

    @property
    def total(self) -> Tensor:
        """``data + prior``: the objective minimised."""
        return self.data + self.prior


@dataclass
class Phase:
    """One stretch of training with its own optimiser and learning-rate schedule.

    Attributes:
        name: Shown in progress bars and reports (``"train"``, ``"pretrain"``, ``"swa"``).
        epochs: Passes over the data.
        lr: Peak learning rate.
        optimizer: Optimiser class or factory, called as ``optimizer(params, lr=lr)``.
        schedule: Learning-rate schedule over the phase.
        cycles: Number of cycles of the ``"cyclical"`` schedule.
        monitor: Whether validation early stopping may end this phase (not for phases that
            collect samples or moments).
    """

    name: str
    epochs: int
    lr: float
    optimizer: OptimizerFactory
    schedule: Schedule = "constant"
    cycles: int = 1
    monitor: bool = True


@dataclass
class FitState:
    """What the hooks of one ``fit`` see; created by the engine, gone when ``fit`` returns.

    Attributes:
        n_data: Size of the training set N.
        generator: The fit's random generator (``None``: torch's global RNG).
        batches: The minibatch sampler.
        phase: The phase being run.
        optimizer: The phase's optimiser.
        member: Index of the ensemble member being trained (0 for single networks).
        step: Optimiser steps completed in this phase (in ``before_step``: the index of the
            step about to be taken).
        total_steps: Steps in this phase.
        epoch: Epoch index within the phase.
        lr_factor: The schedule's factor for the current step (``lr = phase.lr * factor``).
        scratch: Per-fit working values of the method (e.g. SG-MCMC's sampling plan).
        val_data: The fit's validation data ``(X, y)``, if any.
        phases: Every phase of the fit, in order.
        progress: Whether the fit shows progress bars.
        rows: Under a process group, ``(start, stop, total)``: the rows of the global
            minibatch of ``total`` examples that this rank holds in the current step
            (``_checks.draw_rows`` draws per-example noise by it); ``None``: the minibatch
            is whole (one process).
    """

    n_data: int
    generator: torch.Generator | None
    batches: Batches
    phase: Phase | None
    optimizer: torch.optim.Optimizer | None = None
    member: int = 0
    step: int = 0
    total_steps: int = 0
    epoch: int = 0
    lr_factor: float = 1.0
    scratch: dict[str, Any] = field(default_factory=dict)
    val_data: tuple[Tensor, Tensor] | None = None
    phases: Sequence[Phase] = ()
    progress: bool = True
    rows: tuple[int, int, int] | None = None


class Callback:
    """Base class of user callbacks; override the events you need.

    Examples:
        >>> class StopBelow(Callback):
        ...     def on_epoch_end(self, state, report):
        ...         return report.losses[-1] < 0.1  # True stops the phase
    """

    def on_step_end(self, state: FitState, terms: Terms) -> None:
        """After every optimiser step, with the step's objective terms (not detached)."""

    def on_epoch_end(self, state: FitState, report: FitReport) -> bool | None:
        """After every epoch, with the report so far; return ``True`` to end the phase."""
        return None


class Batches(Protocol):
    """The replaceable minibatch sampler: yields ``(x, y)`` minibatches, one epoch a call.

    Attributes:
        n_data: Number of training examples.
    """

    n_data: int

    def __len__(self) -> int:
        """Minibatches per epoch."""

    def epoch(self, generator: torch.Generator | None) -> Iterator[tuple[Tensor, Tensor]]:
        """One pass over the data in a new order drawn from ``generator``."""

    def first_inputs(self, batches: int) -> Tensor:
        """The inputs of the first ``batches`` minibatches in the data's own order."""


class TensorBatches:
    """Shuffled minibatches sliced straight from two tensors (no per-item indexing).

    Draws exactly what ``DataLoader(TensorDataset(x, y), batch_size, shuffle=True,
    generator=generator)`` draws (its loader seed, its permutation and the second,
    discarded permutation its sampler makes at the end of an epoch), so shuffles match
    torch's loader bit for bit at a fraction of its per-item cost.

    Args:
        x: Inputs, shape (N, ...).
        y: Targets, shape (N, ...).
        batch_size: Minibatch size (the last one may be smaller).
        shuffle: Draw a new order every epoch; ``False``: the data's order.
    """

    def __init__(self, x: Tensor, y: Tensor, batch_size: int, *, shuffle: bool = True) -> None:
        self.x, self.y, self.batch_size, self.shuffle = x, y, batch_size, shuffle
        self.n_data = x.shape[0]

    def __len__(self) -> int:
        return math.ceil(self.n_data / self.batch_size)

    def epoch(self, generator: torch.Generator | None) -> Iterator[tuple[Tensor, Tensor]]:
        n, bs = self.n_data, self.batch_size
        order = self.epoch_order(generator)
        for i in range(0, n, bs):
            idx = slice(i, i + bs) if order is None else order[i : i + bs]
            yield self.x[idx], self.y[idx]

    def epoch_order(self, generator: torch.Generator | None) -> Tensor | None:
        """The permutation of one epoch, drawn as the ``DataLoader`` draws it (``None``: the
        data's order, without shuffling).

        Args:
            generator: The shuffling generator (``None``: a fresh one seeded from torch's
                global RNG, as ``RandomSampler`` does).
        """
        n = self.n_data
        if not self.shuffle:
            return None
        if generator is None:  # as RandomSampler: a fresh generator seeded from torch's
            torch.empty((), dtype=torch.int64).random_()
            seed = int(torch.empty((), dtype=torch.int64).random_().item())
            order_gen = torch.Generator().manual_seed(seed)
        else:
            torch.empty((), dtype=torch.int64).random_(generator=generator)
            order_gen = generator
        order = torch.randperm(n, generator=order_gen)
        torch.randperm(n, generator=order_gen)  # the DataLoader's end-of-epoch draw
        return order

    def first_inputs(self, batches: int) -> Tensor:
        return self.x[: batches * self.batch_size]


class LoaderBatches:
    """Minibatches of a user's ``DataLoader`` (its own sampler, workers and batch size).

    A batch is a pair ``(x, y)``, or a dict as Hugging Face users have them
    (``{"input_ids", "attention_mask", "labels"}``): its ``"labels"`` are the targets and
    the rest, a dict, is the input (``bayesdl.inputs.split_labels``).

    Args:
        loader: Any ``DataLoader`` over a sized dataset yielding ``(x, y)`` or dicts.
        model: The network whose input shape every minibatch is checked against
            (``_checks.check_model_input``); ``None``: general checks only.
    """

    def __init__(self, loader: DataLoader, model: torch.nn.Module | None = None) -> None:
        self.loader, self.model = loader, model
        self.n_data = len(loader.dataset)  # type: ignore[arg-type]
        if self.n_data == 0:
            raise ValueError("data is an empty DataLoader; pass at least one example.")

    def __len__(self) -> int:
        return len(self.loader)

    def epoch(self, generator: torch.Generator | None) -> Iterator[tuple[Tensor, Tensor]]:
        for batch in self.loader:
            x, y = split_labels(batch)
            if self.model is None:
                check_input(x)
            else:
                x = check_model_input(self.model, x)
            yield x, y

    def first_inputs(self, batches: int) -> Tensor:
        return cat_inputs(
            [split_labels(b)[0] for b in itertools.islice(self.loader, batches)]
        )  # fmt: skip


def make_batches(
    data: DataLike | Batches,
    batch_size: int,
    *,
    shuffle: bool = True,
    generator: torch.Generator | None = None,
    model: torch.nn.Module | None = None,
) -> Batches:
    """The engine's minibatch sampler for ``data``.

    Args:
        data: A tuple ``(X, y)`` (checked once, sliced per step), a ``Dataset``, a
            ``DataLoader`` (used as it is) or an object already following ``Batches``.
        batch_size: Minibatch size (ignored for a ``DataLoader``).
        shuffle: Shuffle every epoch.
        generator: Shuffling generator of a ``Dataset``'s loader (tensors and batch
            samplers take theirs per epoch).
        model: The network the inputs must fit (``_checks.check_model_input``): a tuple's
            ``X`` is checked (and integer inputs cast) once, a loader's minibatches each.

    Under a process group (``bayesdl.distributed``) a tuple gives ``ShardedBatches`` (the
    permutation one process would draw, the same on every rank, each global minibatch of
    ``batch_size`` split over the ranks) and a ``Dataset`` a loader with a seeded
    ``DistributedSampler`` of ``batch_size / world`` per rank; a ``DataLoader`` is used as it
    is (give it a ``DistributedSampler``).

    Raises:
        ValueError: On empty data, NaN inputs or mismatched lengths, or, under a process
            group, a ``batch_size`` the world size does not divide.
    """
    from bayesdl import distributed  # it builds on this module's TensorBatches

    if isinstance(data, DataLoader):
        return LoaderBatches(data, model)
    if hasattr(data, "epoch") and hasattr(data, "n_data"):
        return data  # type: ignore[return-value]
    check_positive_int(batch_size, "batch_size")
    if model is not None and isinstance(data, tuple) and len(data) == 2:
        data = (check_model_input(model, data[0], "X"), data[1])
    dataset = to_dataset(data)  # type: ignore[arg-type]
    tensors = getattr(dataset, "tensors", None)
    if distributed.is_active():
        distributed.check_divisible(batch_size, "batch_size")
        if tensors is None and hasattr(dataset, "as_tuple"):  # bayesdl.data.Data
            x, y = dataset.as_tuple()
            tensors = (x if model is None else check_model_input(model, x, "X"), y)
        if tensors is not None and len(tensors) == 2:  # the draws of one process's sampler
            return distributed.ShardedBatches(tensors[0], tensors[1], batch_size, shuffle=shuffle,
                                              loader_draws=not isinstance(data, tuple))  # fmt: skip
        seed = distributed.shared_seed(generator) if shuffle else 0
        return distributed.DatasetBatches(dataset, batch_size, seed=seed, shuffle=shuffle,
                                          model=model)  # fmt: skip
    if isinstance(data, tuple) and tensors is not None and len(tensors) == 2:
        return TensorBatches(tensors[0], tensors[1], batch_size, shuffle=shuffle)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator)
    return LoaderBatches(loader, model)


def cycle_lengths(total: int, cycles: int) -> list[int]:
    """Steps in each of ``min(cycles, total)`` (nearly) equal cycles covering ``total``.

    Args:
        total: Steps in the run.
        cycles: Cycles wanted.
    """
    c = min(cycles, total)
    return [round((i + 1) * total / c) - round(i * total / c) for i in range(c)]


def lr_factors(schedule: Schedule, total: int, cycles: int = 1) -> list[float]:
    """The learning-rate factor of every step of a phase of ``total`` steps.

    Args:
        schedule: ``"constant"`` (1 throughout), ``"cosine"`` (``(1 + cos(pi t / T)) / 2``)
            or ``"cyclical"`` (the cosine restarted in each of ``cycles`` cycles).
        total: Steps in the phase.
        cycles: Cycles of the cyclical schedule.

    Raises:
        ValueError: For an unknown schedule.
    """
    if schedule == "constant" or total == 0:
        return [1.0] * total
    if schedule == "cosine":
        return [(math.cos(math.pi * j / total) + 1.0) / 2.0 for j in range(total)]
    if schedule == "cyclical":
        check_positive_int(cycles, "cycles")
        return [
            (math.cos(math.pi * j / length) + 1.0) / 2.0
            for length in cycle_lengths(total, cycles)
            for j in range(length)
        ]
    raise ValueError(f"schedule must be 'constant', 'cosine' or 'cyclical', got {schedule!r}.")


@dataclass
class _Validation:
    x: Tensor
    y: Tensor
    samples: int
    patience: int | None


FLUSH_EVERY = 16
"""On a CPU, parameters are cleared of subnormal values (``runtime.flush_subnormal_``) every
this many steps and after every epoch: weights sink into the subnormal range over hundreds of
steps, so a flush per step only costs time on small networks."""


def _validation_nll(method: BaseMethod, val: _Validation) -> float:
    gen = torch.Generator(method.device).manual_seed(0)  # the same draws every epoch
    pred = method.current_predictive(val.x, samples=val.samples, generator=gen)
    return float(-pred.log_likelihood(method.to_model(val.y, targets=True)).mean())


def _name(method: BaseMethod) -> str:
    return getattr(method, "cli_name", type(method).__name__)


def _run_phase(
    method: BaseMethod,
    state: FitState,
    params: list[torch.nn.Parameter],
    report: FitReport,
    *,
    clip_grad_norm: float | None,
    amp: torch.dtype | None,
    val: _Validation | None,
    callbacks: Sequence[Callback],
    progress: bool,
) -> None:
    from bayesdl import distributed

    phase = state.phase
    state.optimizer = method.make_optimizer(params, phase, state)
    factors = lr_factors(phase.schedule, state.total_steps, phase.cycles)
    base_lrs = [g["lr"] for g in state.optimizer.param_groups]
    cpu = method.device.type == "cpu"  # GPUs handle subnormals at full speed
    sync = distributed.is_active()
    world = distributed.world_size()
    share = getattr(state.batches, "shard_weight", lambda b: 1.0 / world)
    rows_of = getattr(state.batches, "rows", None)  # this rank's rows of the global minibatch
    best: tuple[float, dict[str, Tensor]] | None = None
    since_best = 0
    method.train()
    desc = f"fit {_name(method)}" + ("" if phase.name == "train" else f" ({phase.name})")
    bar = progress_bar(range(phase.epochs), desc=desc, disable=not progress, leave=False)
    for epoch in bar:
        state.epoch = epoch
        sums = torch.zeros(2, dtype=torch.float64)
        seen = 0
        for x, y in state.batches.epoch(state.generator):
            x, y = method.to_model(x), method.to_model(y, targets=True)
            state.lr_factor = factors[state.step]
            for group, lr in zip(state.optimizer.param_groups, base_lrs, strict=True):
                group["lr"] = lr * state.lr_factor
            method.before_step(state)
            b = num_examples(x)  # dict batches (Hugging Face) too
            state.rows = rows_of() if sync and rows_of is not None else None
            with torch.autocast(method.device.type, dtype=amp, enabled=amp is not None):
                if b or not sync:
                    gen = state.generator  # per-example noise: the global batch's, cut to rows
                    if sync and state.rows is None and method.per_example_noise:
                        gen = distributed.rank_generator(gen)  # rows unknown: a user's loader
                    with distributed.global_dropout(method.model, state.rows):
                        terms = method.objective(x, y, state.n_data, gen, state)
                else:  # this rank's slice of a short last global minibatch is empty
                    zero = torch.zeros((), device=method.device)
                    terms = Terms(zero, zero)
            loss = terms.total.float()
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"training loss became {loss.item()} at step {state.step} of phase "
                    f"{phase.name!r} (data term {terms.data.item()}, prior term "
                    f"{terms.prior.item()}); lower lr or clip gradients (clip_grad_norm=)."
                )
            state.optimizer.zero_grad(set_to_none=True)
            if b or not sync:
                loss.backward()
            if sync:  # every rank takes the step of the whole global minibatch
                distributed.all_reduce_gradients(params, share(b))
            if clip_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, clip_grad_norm)
            state.optimizer.step()
            if state.rows is not None and state.rows[2] < world:  # a rank drew nothing
                distributed.broadcast_rng(state.generator, method.device)
            if cpu and (state.step + 1) % FLUSH_EVERY == 0:
                flush_subnormal_(params)
            sums += torch.stack([terms.data.detach().double(), terms.prior.detach().double()]).cpu() * b
            seen += b
            state.step += 1
            method.after_step(state)
            for cb in callbacks:
                cb.on_step_end(state, terms)
        if sync:  # the epoch's losses over every rank's examples
            sums = distributed.all_reduce_sum(torch.cat([sums, sums.new_tensor([seen])]))
            sums, seen = sums[:2], float(sums[2])
        data_loss, prior_loss = (sums / seen).tolist()
        report.data_loss.append(data_loss)
        report.prior_loss.append(prior_loss)
        report.losses.append(data_loss + prior_loss)
        if cpu:
            flush_subnormal_(params)
        method.after_epoch(state)
        postfix = {"data": f"{data_loss:.4f}", "prior": f"{prior_loss:.4f}"}
        stop = False
        if val is not None:
            with torch.no_grad():
                nll = _validation_nll(method, val)
            method.train()
            report.val_nll.append(nll)
            postfix["val_nll"] = f"{nll:.4f}"
            if phase.monitor and val.patience is not None:
                if best is None or nll < best[0]:
                    best, since_best = (nll, copy.deepcopy(method.state_dict())), 0
                    report.best_epoch = len(report.losses) - 1
                else:
                    since_best += 1
                    stop = since_best >= val.patience
        bar.set_postfix(postfix, refresh=False)
        for cb in callbacks:
            stop = bool(cb.on_epoch_end(state, report)) or stop
        if stop:
            break
    if best is not None:
        method.load_state_dict(best[1])
        report.extras[f"{phase.name}_best_val_nll"] = best[0]


def _member_seeds(members: int, generator: torch.Generator | None) -> list[list[int]]:
    """Per member: the seed of its initialisation and the seed of its own generator (its
    shuffles and noise), so that a member depends on its index alone, wherever it trains."""
    device = "cpu" if generator is None else generator.device
    return torch.randint(2**62, (members, 2), generator=generator, device=device).tolist()


def run_fit(
    method: BaseMethod,
    data: DataLike | Batches,
    phases: Sequence[Phase],
    *,
    batch_size: int = 128,
    progress: bool = True,
    generator: torch.Generator | None = None,
    clip_grad_norm: float | None = None,
    val_data: tuple[Tensor, Tensor] | None = None,
    patience: int | None = None,
    val_samples: int = 20,
    callbacks: Sequence[Callback] = (),
    amp: torch.dtype | None = None,
) -> FitReport:
    """Train ``method`` through ``phases`` for each of its ensemble members.

    ``BaseMethod.fit`` documents the arguments. Members (``method.fit_members() > 1``):
    before member ``m`` the model and the likelihood are restored to their state at the
    call, and members ``m >= 1`` are re-initialised under their own seed drawn from
    ``generator`` (``method.reinitialise``); afterwards both hold member 0's final state.
    Every member trains with a generator of its own, seeded from ``generator``, so a member
    depends on its index alone; under a process group a method that lists its
    ``member_tensors`` has member ``m`` trained by rank ``m % world`` alone, on all the data,
    and its tensors broadcast from there at the end (the members one process trains); given
    a ``DataLoader`` (perhaps one rank's shard), the members are trained in turn, each
    data-parallel over the ranks.
    Each phase runs on a fork of torch's global RNG seeded from ``generator`` (peeked, not
    advanced), so noise drawn inside the model (``nn.Dropout``) is reproducible too.

    Returns:
        The ``FitReport``: losses per epoch over all phases (members averaged), the data
        and prior terms apart, validation NLL when ``val_data`` is given, wall time.
    """
    from bayesdl import distributed

    start = time.perf_counter()
    if distributed.is_active():  # the same noise and shuffles on every rank
        distributed.check_same(
            [_name(method), getattr(method, "hparams", None), batch_size, repr(phases)],
            "the fit's settings (method, hyperparameters, batch size, phases)",
        )  # fmt: skip
        if generator is None:
            seed = distributed.shared_seed(None)
            generator = torch.Generator(method.device).manual_seed(seed)
    members = method.fit_members()
    spread = (  # a DataLoader of the user's may hold one rank's shard: members data-parallel
        members > 1 and distributed.is_active() and method.member_tensors(0) is not None
        and not isinstance(data, DataLoader) and not hasattr(data, "epoch")
    )  # fmt: skip
    here, world = distributed.rank(), distributed.world_size()
    solo = distributed.alone if spread else contextlib.nullcontext  # members: each rank its own
    with solo():
        batches = make_batches(data, batch_size, generator=generator, model=method.model)
    distributed.check_same(batches.n_data, "the number of training examples")
    val = None
    if val_data is not None:
        if not (isinstance(val_data, tuple) and len(val_data) == 2):
            raise ValueError("val_data must be a tuple (X_val, y_val) of tensors.")
        check_input(val_data[0], "val_data X")
        check_positive_int(val_samples, "val_samples")
        val = _Validation(method.to_model(val_data[0]), val_data[1], val_samples, patience)
    elif patience is not None:
        raise ValueError("patience (early stopping) needs val_data=(X_val, y_val).")
    if patience is not None:
        check_positive_int(patience, "patience")
    if clip_grad_norm is not None and not clip_grad_norm > 0:
        raise ValueError(f"clip_grad_norm must be positive, got {clip_grad_norm}.")
    seeds = _member_seeds(members, generator) if members > 1 else [[0, 0]]
    parts = (method.model, method.likelihood)
    init = [copy.deepcopy(p.state_dict()) for p in parts] if members > 1 else []
    params = [p for p in method.parameters() if p.requires_grad]
    reports: list[FitReport] = []
    first_state: list[dict[str, Tensor]] = []
    scratch: dict[str, Any] = {}
    state = FitState(batches.n_data, generator, batches, phases[0] if phases else None,
                     scratch=scratch, val_data=val_data, phases=phases, progress=progress)  # fmt: skip
    method.on_fit_start(state)
    alone = contextlib.ExitStack()
    alone.enter_context(solo())
    try:
        bar = progress_bar(range(members), desc=f"fit {_name(method)}",
                           disable=not (progress and members > 1), leave=False)  # fmt: skip
        for m in bar:
            gen = generator
            if spread and m % world != here:  # another rank's member
                continue
            if members > 1:
                for part, saved in zip(parts, init, strict=True):
                    part.load_state_dict(saved)
                if m:
                    method.reinitialise(seeds[m][0])
                device = "cpu" if generator is None else generator.device
                gen = torch.Generator(device).manual_seed(seeds[m][1])
                if not isinstance(data, (tuple, DataLoader)) and not hasattr(data, "epoch"):
                    batches = make_batches(data, batch_size, generator=gen, model=method.model)
            report = FitReport(n_data=batches.n_data)
            for phase in phases:
                state = FitState(
                    batches.n_data, gen, batches, phase, member=m,
                    total_steps=phase.epochs * len(batches), scratch=scratch, val_data=val_data,
                    phases=phases, progress=progress,
                )  # fmt: skip
                method.before_phase(state)
                fork = peek_seed(gen)  # nn.Dropout: the global minibatch's masks, or
                if fork is not None and not hasattr(batches, "rows"):  # each rank its own
                    fork += distributed.rank()
                with seeded_global_rng(fork, method.device):
                    _run_phase(
                        method, state, params, report, clip_grad_norm=clip_grad_norm, amp=amp,
                        val=val, callbacks=callbacks, progress=progress and members == 1,
                    )  # fmt: skip
                method.after_phase(state)
            method.after_member(state)
            reports.append(report)
            if members > 1 and m == 0:
                first_state = [copy.deepcopy(p.state_dict()) for p in parts]
    finally:
        alone.close()
        method.eval()
    for part, state_dict in zip(parts, first_state, strict=False):  # the model holds member 0
        part.load_state_dict(state_dict)
    if spread:  # every rank gets every member, and member 0 in the model
        for m in range(members):
            distributed.broadcast_(method.member_tensors(m), m % world)
        distributed.broadcast_([t for p in parts for t in p.state_dict().values()], 0)
        gathered = [r for part in distributed.gather_objects(reports) for r in part]
        order = sorted(range(members), key=lambda i: (i % world, i))  # members as gathered
        reports = [gathered[order.index(m)] for m in range(members)]
    report = _combine(reports, batches.n_data)
    method.on_fit_end(state, report)
    _warn_if_failed(method, report)
    report.wall_time_s = time.perf_counter() - start
    return report


def _combine(reports: list[FitReport], n_data: int) -> FitReport:
    if len(reports) == 1:
        return reports[0]

    def mean(lists: list[list[float]]) -> list[float]:
        if not all(len(v) == len(lists[0]) for v in lists):  # early stopping differed
            return lists[0]
        return torch.tensor(lists, dtype=torch.float64).mean(0).tolist() if lists[0] else []

    out = FitReport(
        losses=mean([r.losses for r in reports]),
        data_loss=mean([r.data_loss for r in reports]),
        prior_loss=mean([r.prior_loss for r in reports]),
        val_nll=mean([r.val_nll for r in reports]),
        n_data=n_data,
    )
    for m, r in enumerate(reports):
        if r.losses:
            out.extras[f"member{m}_loss"] = r.losses[-1]
        out.extras.update({f"member{m}_{k}": v for k, v in r.extras.items()})
    return out


def _warn_if_failed(method: BaseMethod, report: FitReport) -> None:
    """Name a run whose data term rose over training (diverged) in a warning and the report."""
    d = report.data_loss
    if len(d) >= 3 and math.isfinite(d[0]) and d[-1] > d[0] + 0.05 * abs(d[0]):
        message = (
            f"{type(method).__name__}: the training data term rose from {d[0]:.4g} in the first "
            f"epoch to {d[-1]:.4g} in the last: the fit diverged; lower lr, or decay it "
            "(fit(..., schedule='cosine'); SG-MCMC samplers decay theirs by their own schedule)."
        )
        report.warnings.append(message)
        warnings.warn(message, RuntimeWarning, stacklevel=4)

