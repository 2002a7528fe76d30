"""Stochastic-gradient MCMC: SGLD (Welling & Teh, 2011) and SGHMC (Chen et al., 2014).

Both sample ``p(theta | D) ∝ exp(-U(theta) / T)`` with the minibatch estimate of the energy
``U(theta) = N * mean NLL(batch) - log p(theta)`` and temperature ``T`` (1: the Bayes
posterior; < 1: a "cold" posterior). With ``lr`` the step on the per-example objective
``U / N`` (so it is comparable with an SGD learning rate) and posterior step ``eta = lr / N``,
one step of SGHMC with friction ``alpha`` (``momentum_decay``) is (Chen et al., eq. 15, with
the gradient-noise estimate set to 0)::

    v     <- (1 - alpha) v - lr * grad(U / N) + sqrt(2 alpha lr T / N) xi,  xi ~ N(0, I)
    theta <- theta + v

and SGLD is the same step with ``alpha = 1`` (no momentum):
``theta <- theta - lr * grad(U / N) + sqrt(2 lr T / N) xi``. The noise is drawn from the
generator given to ``fit``, so a run is reproducible.

Step sizes follow the cyclical schedule of cSG-MCMC (Zhang et al., 2020): ``cycles`` cosine
cycles ``lr_k = lr / 2 (cos(pi r_k) + 1)`` where ``r_k`` is the position in the cycle. The
first ``exploration`` fraction of each cycle explores without noise (SGD, with momentum for
SGHMC); the rest is the sampling stage, with noise, where samples are taken. With
``schedule="constant"`` the step size is ``lr`` throughout and every step is a sampling
step (the classical samplers; use ``burn_in``).

Hyperparameters: ``num_samples`` (size of the sample bank), ``lr``, ``schedule``, ``cycles``,
``exploration``, ``burn_in``, ``temperature``, and for SGHMC ``momentum_decay``.

State: the sample bank of ``SampleBank`` (buffers saved with the method); the optimiser's
momentum lives only during ``fit``.

Sampling: ``fit`` stores ``num_samples`` parameter sets spread evenly over the sampling
steps after burn-in (so the run is thinned automatically, by eligible steps / num_samples);
``predict`` is one ``vmap`` over the bank.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from bayesdl._checks import check_positive_int, draw, to_loader
from bayesdl.likelihoods import Likelihood
from bayesdl.methods._bank import SampleBank
from bayesdl.methods.base import register_method
from bayesdl.priors import Normal, Prior
from bayesdl.types import DataLike, FitReport

__all__ = ["SGMCMCOptimizer", "SGLD", "SGHMC"]

Schedule = Literal["cyclical", "constant"]


class SGMCMCOptimizer(torch.optim.Optimizer):
    """One SGHMC step per call; SGLD when ``momentum_decay=1`` (see the module docstring).

    Gradients must be those of the per-example objective ``U / N`` (``method.loss``).
    ``temperature=0`` turns the noise off (momentum SGD, the exploration stage).

    Args:
        params: Parameters or parameter groups (groups may override every default below).
        lr: Step size on the per-example objective; the posterior step is ``lr / n_data``.
        n_data: Size of the training set N (scales the injected noise).
        momentum_decay: Friction ``alpha`` in (0, 1]; 1 gives SGLD (no momentum buffer).
        temperature: Posterior temperature T >= 0 (scales the noise variance).
        generator: Random generator for the injected noise; ``None``: torch's global RNG.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        n_data: int,
        momentum_decay: float = 1.0,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> None:
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr}.")
        check_positive_int(n_data, "n_data")
        _check_sampler(momentum_decay, temperature)
        defaults = {"lr": lr, "n_data": n_data, "momentum_decay": momentum_decay,
                    "temperature": temperature}  # fmt: skip
        super().__init__(params, defaults)
        self.generator = generator

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """Update every parameter with a gradient.

        Args:
            closure: Optional callable re-evaluating the loss (torch.optim convention).

        Returns:
            The closure's loss, or ``None``.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, alpha = group["lr"], group["momentum_decay"]
            noise = math.sqrt(2.0 * alpha * lr * group["temperature"] / group["n_data"])
            for p in group["params"]:
                if p.grad is None:
                    continue
                if alpha == 1.0:  # SGLD: the velocity is the step itself
                    v = p.grad * -lr
                else:
                    v = self.state[p].setdefault("momentum", torch.zeros_like(p))
                    v.mul_(1.0 - alpha).add_(p.grad, alpha=-lr)
                if noise:
                    v.add_(draw("randn", tuple(p.shape), p, self.generator), alpha=noise)
                p.add_(v)
        return loss


def _check_sampler(momentum_decay: float, temperature: float) -> None:
    if not 0 < momentum_decay <= 1:
        raise ValueError(f"momentum_decay must lie in (0, 1], got {momentum_decay}.")
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}.")


@dataclass
class _Plan:
    """Per-step schedule of one ``fit``: step-size factor, noise on/off, steps to store."""

    factor: list[float]
    noisy: list[bool]
    store: frozenset[int]


def _plan_schedule(
    total: int, schedule: Schedule, cycles: int, exploration: float, burn_in: float,
    num_samples: int,
) -> _Plan:  # fmt: skip
    """Step sizes, noise and sample-storing steps for a run of ``total`` steps.

    Cyclical: ``min(cycles, total)`` cycles of (nearly) equal length; the sampling stage of
    each is its last ``1 - exploration`` fraction, lengthened where needed so that the
    cycles together hold ``num_samples`` sampling steps when the run is long enough.
    Samples are the ``num_samples`` sampling steps after ``burn_in * total`` spread evenly
    (fewer, with a warning, when there are fewer such steps).

    Raises:
        ValueError: If no sampling step is left after the burn-in.
    """
    if schedule == "constant":
        factor, noisy = [1.0] * total, [True] * total
    else:
        c = min(cycles, total)
        if c < cycles:
            warnings.warn(
                f"{total} steps cannot hold {cycles} cycles; using {c}.", UserWarning, stacklevel=5
            )
        share = math.ceil(num_samples / c)
        factor, noisy = [], []
        for i in range(c):
            length = round((i + 1) * total / c) - round(i * total / c)
            start = max(0, min(math.ceil(exploration * length), length - share))
            factor += [(math.cos(math.pi * j / length) + 1.0) / 2.0 for j in range(length)]
            noisy += [j >= start for j in range(length)]
    first = math.ceil(burn_in * total)
    eligible = [k for k in range(first, total) if noisy[k]]
    if not eligible:
        raise ValueError(
            f"no sampling step is left after burn_in={burn_in} of {total} steps; raise epochs "
            "or lower burn_in."
        )
    n = min(num_samples, len(eligible))
    if n < num_samples:
        warnings.warn(
            f"the run has only {len(eligible)} sampling steps after burn-in, so the bank holds "
            f"{n} of num_samples={num_samples} samples; raise epochs for the full bank.",
            UserWarning,
            stacklevel=5,
        )
    idx = torch.linspace(len(eligible) - 1, 0, n).round().long().tolist()  # n = 1: the last
    return _Plan(factor, noisy, frozenset(eligible[i] for i in idx))


class _SGMCMC(SampleBank):
    """Shared fit loop: the base class's training loop driven by the sampler's schedule."""

    def __init__(
        self, model: nn.Module, likelihood: Likelihood | None, prior: Prior | None,
        num_samples: int, lr: float, schedule: Schedule, cycles: int, exploration: float,
        burn_in: float, temperature: float, momentum_decay: float,
    ) -> None:  # fmt: skip
        check_positive_int(num_samples, "num_samples")
        check_positive_int(cycles, "cycles")
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr}.")
        if schedule not in ("cyclical", "constant"):
            raise ValueError(f"schedule must be 'cyclical' or 'constant', got {schedule!r}.")
        if not 0 <= exploration < 1:
            raise ValueError(f"exploration must lie in [0, 1), got {exploration}.")
        if not 0 <= burn_in < 1:
            raise ValueError(f"burn_in must lie in [0, 1), got {burn_in}.")
        _check_sampler(momentum_decay, temperature)
        super().__init__(model, likelihood, num_samples)
        self.momentum_decay = momentum_decay
        self.prior = Normal(1.0) if prior is None else prior
        self.lr, self.schedule, self.cycles = lr, schedule, cycles
        self.exploration, self.burn_in, self.temperature = exploration, burn_in, temperature
        self.hparams = {
            "num_samples": num_samples, "lr": lr, "schedule": schedule, "cycles": cycles,
            "exploration": exploration, "burn_in": burn_in, "temperature": temperature,
        }  # fmt: skip
        self._plan: _Plan | None = None
        self._optimizer: SGMCMCOptimizer | None = None
        self._fit_lr = lr

    def loss(self, x: Tensor, y: Tensor, n_data: int) -> Tensor:
        """Per-example energy ``U / N = mean NLL - log p(theta) / N`` of the batch.

        Args:
            x: Inputs, shape (B, ...).
            y: Targets, shape (B,) labels or (B, D) regression targets.
            n_data: Size of the whole training set N.
        """
        nll = self.likelihood.nll(self._forward_checked(x, y), y)
        return nll - self.prior.log_prob(dict(self.model.named_parameters())) / n_data

    def fit(
        self,
        data: DataLike,
        *,
        epochs: int = 10,
        lr: float | None = None,
        batch_size: int = 128,
        progress: bool = True,
        generator: torch.Generator | None = None,
        amp: torch.dtype | None = None,
    ) -> FitReport:
        """Run the sampler for ``epochs`` passes and fill the sample bank.

        The bank is emptied first. The likelihood's own parameters (a learned Gaussian
        noise) are optimised with the same schedule but without noise: they are point
        estimates, not sampled. Dropout layers stay active during the run, as in training.

        Args:
            data: A ``DataLoader``, a ``Dataset`` or a tuple ``(X, y)``.
            epochs: Passes over the data; the schedule is laid over all of them.
            lr: Peak step size; ``None``: the constructor's ``lr``.
            batch_size: Minibatch size (ignored for a ``DataLoader``).
            progress: Show a tqdm progress bar.
            generator: Random generator for shuffling and the injected noise.
            amp: ``torch.bfloat16``: mixed precision of the training steps, as in
                ``BaseMethod.fit`` (the injected noise and the updates stay in float32).

        Returns:
            A ``FitReport`` with the mean per-example energy ``U / N`` per epoch and, in
            ``extras``, the number of samples stored.

        Raises:
            ValueError: On bad arguments, or when no sampling step follows the burn-in.
        """
        lr = self.lr if lr is None else lr
        loader, n = to_loader(data, batch_size, shuffle=True, generator=generator)
        model_params = {id(p) for p in self.model.parameters()}

        def make_optimizer(params: list[nn.Parameter], lr: float) -> SGMCMCOptimizer:
            sampled = [p for p in params if id(p) in model_params]
            fixed = [p for p in params if id(p) not in model_params]
            groups = [{"params": sampled}]
            if fixed:  # the likelihood's parameters: optimised, never noised
                groups.append({"params": fixed, "temperature": 0.0})
            self._optimizer = SGMCMCOptimizer(
                groups, lr, n, momentum_decay=self.momentum_decay, temperature=self.temperature,
                generator=generator,
            )  # fmt: skip
            return self._optimizer

        self.clear()
        self._fit_lr = lr
        try:
            report = super().fit(
                loader, epochs=epochs, lr=lr, batch_size=batch_size, progress=progress,
                generator=generator, optimizer=make_optimizer, amp=amp,
            )  # fmt: skip
            if self._plan is not None and len(self._plan.factor) - 1 in self._plan.store:
                self.store()  # the sample made by the last step
        finally:
            self._plan, self._optimizer = None, None
        report.extras["samples"] = float(self.stored)
        return report

    def _before_step(self, step: int, total_steps: int) -> None:
        if step == 0:
            self._plan = _plan_schedule(
                total_steps, self.schedule, self.cycles, self.exploration, self.burn_in,
                self.bank_size,
            )  # fmt: skip
        elif step - 1 in self._plan.store:
            self.store()  # the parameters made by the previous step
        assert self._optimizer is not None
        for i, group in enumerate(self._optimizer.param_groups):
            group["lr"] = self._fit_lr * self._plan.factor[step]
            if i == 0:
                group["temperature"] = self.temperature if self._plan.noisy[step] else 0.0


@register_method("sgld")
class SGLD(_SGMCMC):
    """Stochastic-gradient Langevin dynamics with a cyclical step size (cSGLD).

    Args:
        model: The user's network; every parameter is sampled.
        likelihood: Observation model; ``Categorical()`` by default.
        prior: Weight prior; ``priors.Normal(1.0)`` by default.
        num_samples: Samples kept in the bank (fixed, so saved files have fixed shapes).
        lr: Peak step size on the per-example objective (the posterior step is ``lr / N``).
        schedule: ``"cyclical"`` (cSG-MCMC cosine cycles) or ``"constant"`` step size.
        cycles: Number of cosine cycles over the whole run (cyclical schedule).
        exploration: Fraction of each cycle run without noise before sampling (Zhang et
            al.'s beta); ignored by the constant schedule.
        burn_in: Fraction of the run, from the start, in which no sample is stored.
        temperature: Posterior temperature T (1: Bayes posterior; < 1: cold posterior).

    Examples:
        >>> import torch, bayesdl as bdl
        >>> g = torch.Generator().manual_seed(0)
        >>> x, y = torch.randn(64, 2, generator=g), torch.randint(0, 3, (64,), generator=g)
        >>> sgld = bdl.SGLD(torch.nn.Linear(2, 3), num_samples=8)
        >>> _ = sgld.fit((x, y), epochs=8, batch_size=16, progress=False, generator=g)
        >>> sgld.predict(x[:4], samples=8).samples.shape
        torch.Size([8, 4, 3])

    References:
        Welling & Teh, "Bayesian Learning via Stochastic Gradient Langevin Dynamics",
        ICML 2011. Zhang et al., "Cyclical Stochastic Gradient MCMC for Bayesian Deep
        Learning", ICLR 2020.
    """

    def __init__(
        self,
        model: nn.Module,
        likelihood: Likelihood | None = None,
        prior: Prior | None = None,
        num_samples: int = 20,
        lr: float = 1e-2,
        schedule: Schedule = "cyclical",
        cycles: int = 4,
        exploration: float = 0.8,
        burn_in: float = 0.0,
        temperature: float = 1.0,
    ) -> None:
        super().__init__(model, likelihood, prior, num_samples, lr, schedule, cycles,
                         exploration, burn_in, temperature, momentum_decay=1.0)  # fmt: skip


@register_method("sghmc")
class SGHMC(_SGMCMC):
    """Stochastic-gradient Hamiltonian Monte Carlo with a cyclical step size (cSGHMC).

    The velocity keeps ``1 - momentum_decay`` of itself per step, so the effective step
    size is about ``lr / momentum_decay`` (10 ``lr`` by default).

    Args:
        model: The user's network; every parameter is sampled.
        likelihood: Observation model; ``Categorical()`` by default.
        prior: Weight prior; ``priors.Normal(1.0)`` by default.
        num_samples: Samples kept in the bank (fixed, so saved files have fixed shapes).
        lr: Peak step size on the per-example objective (the posterior step is ``lr / N``).
        schedule: ``"cyclical"`` (cSG-MCMC cosine cycles) or ``"constant"`` step size.
        cycles: Number of cosine cycles over the whole run (cyclical schedule).
        exploration: Fraction of each cycle run without noise (momentum SGD) before
            sampling (Zhang et al.'s beta); ignored by the constant schedule.
        burn_in: Fraction of the run, from the start, in which no sample is stored.
        temperature: Posterior temperature T (1: Bayes posterior; < 1: cold posterior).
        momentum_decay: Friction ``alpha`` in (0, 1] (1 - momentum); 1 gives SGLD.

    References:
        Chen, Fox & Guestrin, "Stochastic Gradient Hamiltonian Monte Carlo", ICML 2014.
        Zhang et al., "Cyclical Stochastic Gradient MCMC for Bayesian Deep Learning",
        ICLR 2020.
    """

    def __init__(
        self,
        model: nn.Module,
        likelihood: Likelihood | None = None,
        prior: Prior | None = None,
        num_samples: int = 20,
        lr: float = 1e-3,
        schedule: Schedule = "cyclical",
        cycles: int = 4,
        exploration: float = 0.8,
        burn_in: float = 0.0,
        temperature: float = 1.0,
        momentum_decay: float = 0.1,
    ) -> None:
        super().__init__(model, likelihood, prior, num_samples, lr, schedule, cycles,
                         exploration, burn_in, temperature, momentum_decay)  # fmt: skip
        self.hparams["momentum_decay"] = momentum_decay
