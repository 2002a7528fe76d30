"""The method interface every posterior approximation implements, and the registry."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from bayesdl._checks import (
    check_amp,
    check_model_input,
    check_output_memory,
    check_positive_int,
    output_size,
    to_loader,
)
from bayesdl.likelihoods import Categorical, Likelihood
from bayesdl.predictive import Predictive
from bayesdl.types import DataLike, FitReport

__all__ = ["Method", "BaseMethod", "register_method", "get_method", "method_names"]

_REGISTRY: dict[str, type[BaseMethod]] = {}


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Put ``module`` in eval mode, then restore every submodule's own mode exactly.

    Args:
        module: Any module; its submodules may be in mixed train/eval modes.
    """
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def default_chunk_rows(device: torch.device) -> int:
    """Default ``chunk_size``: (sample, input) rows per vectorised call on ``device``.

    Measured in ``benchmarks/predict_speed.py``: on a CPU cache-sized calls (about one
    sample of 1,000 inputs) are fastest and leanest; a GPU needs large calls to fill it.

    Args:
        device: The model's device.
    """
    return 65536 if device.type == "cuda" else 1024


@runtime_checkable
class Method(Protocol):
    """What every posterior approximation provides (see DESIGN.md and ``BaseMethod``).

    ``fit(data, *, epochs, lr, batch_size, progress)`` trains on ``data`` for ``epochs``
    passes with learning rate ``lr`` and minibatches of ``batch_size``, with a progress bar
    when ``progress``; ``loss``, ``predict``, ``state_dict`` and ``load_state_dict`` are
    documented on ``BaseMethod``.
    """

    model: nn.Module
    likelihood: Likelihood

    def fit(self, data: DataLike, *, epochs: int, lr: float, batch_size: int = 128,
            progress: bool = True, **kw: Any) -> FitReport:  # fmt: skip
        """Train on ``data`` (see ``BaseMethod.fit`` for epochs, lr, batch_size, progress)."""

    def loss(self, x: Tensor, y: Tensor, n_data: int) -> Tensor:
        """Objective for the batch ``x``, ``y`` of a training set of ``n_data`` examples."""

    def predict(self, x: Tensor, samples: int = 100, *, chunk_size: int | None = None,
                generator: torch.Generator | None = None) -> Predictive:  # fmt: skip
        """Model average for ``x`` over ``samples`` draws (``chunk_size``, ``generator``)."""

    def state_dict(self) -> dict[str, Any]:
        """Every tensor needed to restore the fitted method."""

    def load_state_dict(self, state: dict[str, Any]) -> Any:
        """Restore from ``state`` as returned by ``state_dict``."""


def register_method(name: str):
    """Class decorator adding a method to the registry under its CLI name."""

    def wrap(cls: type[BaseMethod]) -> type[BaseMethod]:
        cls.cli_name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def get_method(name: str) -> type[BaseMethod]:
    """Look a method class up by its CLI name (``"vi"``, ``"mc-dropout"``, ...)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; choose one of {method_names()}.")
    return _REGISTRY[name]


def method_names(*, dropout: bool | None = None) -> list[str]:
    """CLI names of every registered method.

    Args:
        dropout: ``True``: only methods that need ``nn.Dropout`` layers in the model
            (``BaseMethod.needs_dropout``); ``False``: only those that do not; ``None``: all.
    """
    return sorted(n for n, c in _REGISTRY.items() if dropout is None or c.needs_dropout == dropout)


@contextmanager
def seeded_global_rng(seed: int | None, device: torch.device | None = None) -> Iterator[None]:
    """Run the block on a fork of torch's global RNG seeded with ``seed``, for code that
    cannot take a generator (``nn.Dropout`` in training, ``nn.init``, Pyro); the global state
    is restored afterwards. Forks the CPU RNG and ``device``'s if it is CUDA (``None``: every
    initialised CUDA device). No-op for ``seed=None``."""
    if seed is None:
        yield
        return
    if device is None:
        live = torch.cuda.is_available() and torch.cuda.is_initialized()
        cuda = list(range(torch.cuda.device_count())) if live else []
    elif device.type == "cuda":
        cuda = [device.index if device.index is not None else torch.cuda.current_device()]
    else:
        cuda = []
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(seed)
        for index in cuda:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield


@torch.no_grad()
def flush_subnormal_(params: list[Tensor]) -> None:
    """Set the subnormal entries (``0 < |x| < finfo.tiny``) of floating ``params`` to zero.

    A weight that gets no gradient from the data (an input that is always zero, a dead
    unit) feels only the prior's pull, and Adam shrinks it geometrically until it is stuck
    around 1e-38, in float32's subnormal range. CPUs multiply subnormals up to ~100x more
    slowly, and ``torch.set_flush_denormal`` reaches only the calling thread, so such
    weights slowed MC dropout training on MNIST by 5x as they accumulated. Their values are
    below anything the network can resolve, so zero is the same weight, at full speed.
    """
    for p in params:
        if p.is_floating_point():
            p.masked_fill_(p.abs() < torch.finfo(p.dtype).tiny, 0.0)


def _peek_seed(generator: torch.Generator | None) -> int | None:
    """A seed drawn from ``generator``'s current state without advancing it."""
    if generator is None:
        return None
    peek = torch.Generator(generator.device).set_state(generator.get_state())
    return int(torch.randint(2**62, (), generator=peek, device=generator.device))


class BaseMethod(nn.Module, Method):
    """Shared machinery: the training loop, chunked prediction, device handling.

    Subclasses implement ``loss`` and ``_sample_outputs`` and record their constructor
    arguments in ``self.hparams`` (JSON-serialisable; used by ``bayesdl.save``).

    Args:
        model: The user's network; it is used as is, never rewritten.
        likelihood: Observation model; ``Categorical()`` by default.
    """

    cli_name: ClassVar[str]
    needs_dropout: ClassVar[bool] = False
    """Whether the method draws its posterior from the model's own ``nn.Dropout`` layers
    (so it refuses a model without them)."""
    max_samples: int | None = None
    """Most distinct posterior draws the method holds (MAP: 1, a deep ensemble: its
    members, a sample bank: its size); ``predict`` returns ``min(samples, max_samples)``
    outputs. ``None``: unlimited (a continuous approximate posterior)."""

    def __init__(self, model: nn.Module, likelihood: Likelihood | None = None) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
        self.model = model
        self.likelihood = Categorical() if likelihood is None else likelihood
        if not isinstance(self.likelihood, Likelihood):
            raise TypeError(
                f"likelihood must be a bayesdl Likelihood, got {type(self.likelihood).__name__}."
            )
        self.hparams: dict[str, Any] = {}
        self._generator: torch.Generator | None = None
        self._chunk = 1
        self.eval()  # evaluation mode except inside fit (and the user's own loops)

    # -- device and dtype follow the model -------------------------------------------------
    @property
    def device(self) -> torch.device:
        """Device of the model's first parameter (CPU for a parameter-free model)."""
        return next(self.model.parameters(), torch.empty(0)).device

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the model's first parameter."""
        return next(self.model.parameters(), torch.empty(0)).dtype

    def _to_model(self, x: Tensor) -> Tensor:
        return x.to(self.device, self.dtype if x.is_floating_point() else None)

    # -- training ----------------------------------------------------------------------------
    def loss(self, x: Tensor, y: Tensor, n_data: int) -> Tensor:
        """Minibatch objective per example (e.g. NLL + KL / n_data) for custom loops.

        Args:
            x: Inputs, shape (B, ...).
            y: Targets, shape (B,) labels or (B, D) regression targets.
            n_data: Size of the whole training set (scales the prior / KL term).

        Returns:
            A scalar tensor to minimise.
        """
        raise NotImplementedError

    def _forward_checked(self, x: Tensor, y: Tensor, forward: Any = None) -> Tensor:
        output = (forward or self.model)(x)
        self.likelihood.check_target(output, y)
        return output

    def _before_step(self, step: int, total_steps: int) -> None:
        """Hook called before every optimiser step (schedules such as KL annealing)."""

    def fit(
        self,
        data: DataLike,
        *,
        epochs: int = 10,
        lr: float = 1e-3,
        batch_size: int = 128,
        progress: bool = True,
        generator: torch.Generator | None = None,
        optimizer: type[torch.optim.Optimizer] = torch.optim.Adam,
        amp: torch.dtype | None = None,
    ) -> FitReport:
        """Train the approximation with minibatch gradient descent (Adam by default).

        Args:
            data: A ``DataLoader``, a ``Dataset`` or a tuple ``(X, y)``.
            epochs: Passes over the data.
            lr: Learning rate.
            batch_size: Minibatch size (ignored for a ``DataLoader``).
            progress: Show a tqdm progress bar.
            generator: Random generator for shuffling and the method's own noise. With one,
                ``fit`` is reproducible: noise drawn from torch's global RNG inside the
                model (``nn.Dropout`` in training) comes from a fork of it seeded from
                ``generator``, and the caller's global RNG state is left as it was.
            optimizer: Optimiser class, called as ``optimizer(params, lr=lr)``.
            amp: ``torch.bfloat16`` for mixed precision: each step's forward pass and loss
                run under ``torch.autocast`` (1.8x faster training of the Gal CNN on a CPU
                with AVX-512 BF16, ``benchmarks/amp_speed.py``) while the weights, gradients and
                optimiser stay in full precision. ``None`` (default): full precision.

        On a CPU, parameter entries that Adam has shrunk into float32's subnormal range are
        set to zero after every step (``flush_subnormal_``): they change no output, and CPUs
        compute with them up to ~100x more slowly.

        Returns:
            A ``FitReport`` with the mean loss per epoch and the wall time.

        Raises:
            ValueError: On empty data, NaN inputs or targets that do not fit the model.
        """
        check_positive_int(epochs, "epochs")
        check_amp(amp)
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr}.")
        if isinstance(data, tuple) and len(data) == 2:
            check_model_input(self.model, data[0], "X")  # the whole data's shape, once
        loader, n = to_loader(data, batch_size, shuffle=True, generator=generator)
        params = [p for p in self.parameters() if p.requires_grad]
        opt = optimizer(params, lr=lr)
        report = FitReport(n_data=n)
        start = time.perf_counter()
        total = epochs * len(loader)
        self._generator = generator
        self.train()
        step = 0
        # ``generator`` is peeked, not advanced: methods that never touch the global RNG
        # shuffle and draw exactly as they would without the fork.
        with seeded_global_rng(_peek_seed(generator), self.device):
            try:
                bar = tqdm(
                    range(epochs), desc=f"fit {self.cli_name}", disable=not progress, leave=False
                )
                for _ in bar:
                    total_loss, seen = 0.0, 0
                    for x, y in loader:
                        x, y = self._to_model(x), y.to(self.device)
                        x = check_model_input(self.model, x)
                        self._before_step(step, total)
                        with torch.autocast(self.device.type, dtype=amp, enabled=amp is not None):
                            loss = self.loss(x, y, n).float()
                        if not torch.isfinite(loss):
                            raise FloatingPointError(
                                f"training loss became {loss.item()} at step {step}; lower lr."
                            )
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        opt.step()
                        if self.device.type == "cpu":  # GPUs handle subnormals at full speed
                            flush_subnormal_(params)
                        total_loss += loss.item() * x.shape[0]
                        seen += x.shape[0]
                        step += 1
                    report.losses.append(total_loss / seen)
                    bar.set_postfix(loss=f"{report.losses[-1]:.4f}", refresh=False)
            finally:
                self.eval()
                self._generator = None
        report.wall_time_s = time.perf_counter() - start
        return report

    # -- prediction --------------------------------------------------------------------------
    def _sample_outputs(self, x: Tensor, samples: int, generator: torch.Generator) -> Tensor:
        """Network outputs for ``samples`` posterior draws, shape (S, N, ...)."""
        raise NotImplementedError

    @torch.no_grad()
    def predict(
        self,
        x: Tensor,
        samples: int = 100,
        *,
        chunk_size: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Predictive:
        """Bayesian model average over ``samples`` posterior draws.

        Args:
            x: Inputs, shape (N, ...), on any device (moved to the model's).
            samples: Number of Monte Carlo samples S.
            chunk_size: Most (sample, input) pairs evaluated in one vectorised call; bounds
                peak memory independently of S. Default ``default_chunk_rows(device)``.
            generator: Random generator for the posterior draws (reproducible predictions).
                Every input sees the same S draws, whatever the chunking; without a
                generator a private one is seeded from torch's global RNG.

        Returns:
            A ``Predictive`` holding S outputs, sample dimension first; S is
            ``min(samples, max_samples)`` for methods with finitely many draws.

        Raises:
            ValueError: If ``x`` is empty, holds NaN/inf or does not have the shape the model
                takes, ``samples < 1``, or the S outputs would not fit in memory.
        """
        x = check_model_input(self.model, x)
        check_positive_int(samples, "samples")
        if self.max_samples is not None:
            samples = min(samples, self.max_samples)
        check_output_memory(samples, x.shape[0], output_size(self.model), self.dtype, self.device)
        rows = default_chunk_rows(self.device) if chunk_size is None else chunk_size
        check_positive_int(rows, "chunk_size")
        x = self._to_model(x)
        if generator is None:  # a private generator, so every input block sees the same draws
            seed = int(torch.randint(2**62, (), dtype=torch.int64))
            generator = torch.Generator(self.device).manual_seed(seed)
        start = generator.get_state()
        block = min(rows, x.shape[0])
        self._chunk = max(1, rows // block)  # samples per vectorised call, same for all blocks
        outs = []
        with eval_mode(self):
            for xb in x.split(block):
                generator.set_state(start)  # the same S posterior draws for every input
                outs.append(self._sample_outputs(xb, samples, generator))
        return self.likelihood.predictive(torch.cat(outs, dim=1))

    def _chunks(self, samples: int) -> Iterator[int]:
        """Sizes of the sample chunks of the current ``predict`` call."""
        for first in range(0, samples, self._chunk):
            yield min(self._chunk, samples - first)
