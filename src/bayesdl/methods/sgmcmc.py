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

The step sizes (defaults included) are those of a likelihood whose per-example curvature in
the network output is at most 1/2, as cross-entropy's is (``Likelihood.output_curvature``).
A likelihood with a larger bound, a Gaussian with noise ``sigma < sqrt(2)`` (curvature
``1 / sigma^2``), has every step multiplied by ``(1/2) / curvature``, read at every step so a
learned noise is followed: without it a default that is stable on classification diverges on
standardised regression targets within a few steps. The step stays a valid SG-MCMC step (the
drift and the noise share it), only smaller.

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

from bayesdl._checks import check_positive_int, draw
from bayesdl.engine import FitState, Phase, cycle_lengths
from bayesdl.engine import Schedule as EngineSchedule
from bayesdl.likelihoods import Likelihood
from bayesdl.methods._bank import SampleBank
from bayesdl.methods.base import register_method
from bayesdl.methods.layers import Subset, select_params, subset_hparam
from bayesdl.priors import Prior
from bayesdl.types import FitReport

__all__ = ["SGMCMCOptimizer", "SGLD", "SGHMC", "REFERENCE_CURVATURE", "step_scale"]

Schedule = Literal["cyclical", "constant"]

REFERENCE_CURVATURE = 0.5
"""Output curvature of the likelihood the step sizes are stated for (``Categorical``'s bound)."""


def step_scale(likelihood: Likelihood) -> float:
    """Factor on the SG-MCMC step for ``likelihood``: ``REFERENCE_CURVATURE / curvature``
    when its ``output_curvature()`` is larger than the reference, else 1.

    Examples:
        >>> from bayesdl import likelihoods
        >>> step_scale(likelihoods.Categorical()), step_scale(likelihoods.Gaussian(sigma=0.5))
        (1.0, 0.125)
    """
    curvature = likelihood.output_curvature()
    if curvature is None or curvature <= REFERENCE_CURVATURE:
        return 1.0
    return REFERENCE_CURVATURE / curvature


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
    """Per-step plan of one ``fit``: noise on/off and the steps whose result is stored."""

    noisy: list[bool]
    store: frozenset[int]


def _plan_schedule(
    total: int, schedule: Schedule, cycles: int, exploration: float, burn_in: float,
    num_samples: int,
) -> _Plan:  # fmt: skip
    """Noise and sample-storing steps for a run of ``total`` steps.

    Cyclical: ``min(cycles, total)`` cycles of (nearly) equal length
    (``engine.cycle_lengths``, the cycles of the engine's ``"cyclical"`` learning-rate
    schedule); the sampling stage of each is its last ``1 - exploration`` fraction,
    lengthened where needed so that the cycles together hold ``num_samples`` sampling steps
    when the run is long enough. Samples are the ``num_samples`` sampling steps after
    ``burn_in * total`` spread evenly (fewer, with a warning, when there are fewer such steps).

    Raises:
        ValueError: If no sampling step is left after the burn-in.
    """
    if schedule == "constant":
        noisy = [True] * total
    else:
        lengths = cycle_lengths(total, cycles)
        if len(lengths) < cycles:
            warnings.warn(
                f"{total} steps cannot hold {cycles} cycles; using {len(lengths)}.",
                UserWarning, stacklevel=6,
            )  # fmt: skip
        share = math.ceil(num_samples / len(lengths))
        noisy = []
        for length in lengths:
            start = max(0, min(math.ceil(exploration * length), length - share))
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
            stacklevel=6,
        )
    idx = torch.linspace(len(eligible) - 1, 0, n).round().long().tolist()  # n = 1: the last
    return _Plan(noisy, frozenset(eligible[i] for i in idx))


class _SGMCMC(SampleBank):
    """SGLD and SGHMC: the training engine driven by the sampler's optimiser and schedule."""

    def __init__(
        self, model: nn.Module, likelihood: Likelihood | None, prior: Prior | None,
        num_samples: int, lr: float, schedule: Schedule, cycles: int, exploration: float,
        burn_in: float, temperature: float, momentum_decay: float, subset: Subset = "all",
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
        names = list(select_params(model, subset, type(self).__name__))
        super().__init__(model, likelihood, num_samples, names=names, prior=prior)
        self.momentum_decay = momentum_decay
        self.lr, self.schedule, self.cycles = lr, schedule, cycles
        self.exploration, self.burn_in, self.temperature = exploration, burn_in, temperature
        self.hparams = {
            "num_samples": num_samples, "lr": lr, "schedule": schedule, "cycles": cycles,
            "exploration": exploration, "burn_in": burn_in, "temperature": temperature,
            "subset": subset_hparam(subset, names),
        }  # fmt: skip

    # -- the engine's hooks: the sampler's optimiser, schedule, noise and bank ---------------
    def default_lr(self) -> float:
        """The constructor's ``lr``."""
        return self.lr

    def fit_phases(self, *, epochs, lr, optimizer, schedule, cycles) -> list[Phase]:
        """One sampling phase with the sampler's own step-size schedule.

        ``fit``'s ``optimizer``, ``schedule`` and ``cycles`` are ignored: the sampler and
        its cyclical or constant schedule are the constructor's. The likelihood's own
        parameters (a learned Gaussian noise) are optimised with the same schedule but
        without noise: they are point estimates, not sampled. Dropout layers stay active
        during the run, as in training. The bank is emptied first and holds
        ``num_samples`` draws afterwards (``FitReport.extras["samples"]``).
        """
        engine_schedule: EngineSchedule = "cyclical" if self.schedule == "cyclical" else "constant"
        return [Phase("sample", epochs, lr, SGMCMCOptimizer, engine_schedule, self.cycles,
                      monitor=False)]  # fmt: skip

    def make_optimizer(self, params, phase, state) -> SGMCMCOptimizer:
        """``SGMCMCOptimizer`` over the model's parameters in ``subset`` and the prior's latent
        variables (a horseshoe's log scales, sampled with the weights); the likelihood's get
        no noise, nor do trainable model parameters outside ``subset`` (point estimates)."""
        named = dict(self.model.named_parameters())
        model_params = {id(named[n]) for n in self.names}
        model_params |= {id(p) for p in self.prior.latent_values().values()}
        sampled = [p for p in params if id(p) in model_params]
        fixed = [p for p in params if id(p) not in model_params]
        groups: list[dict[str, Any]] = [{"params": sampled}]
        if fixed:  # the likelihood's parameters: optimised, never noised
            groups.append({"params": fixed, "temperature": 0.0})
        return SGMCMCOptimizer(
            groups, phase.lr, state.n_data, momentum_decay=self.momentum_decay,
            temperature=self.temperature, generator=state.generator,
        )  # fmt: skip

    def before_phase(self, state: FitState) -> None:
        """Empty the bank and lay out the run's noisy and sample-storing steps."""
        self.clear()
        state.scratch["plan"] = _plan_schedule(
            state.total_steps, self.schedule, self.cycles, self.exploration, self.burn_in,
            self.bank_size,
        )  # fmt: skip

    def before_step(self, state: FitState) -> None:
        """Switch the injected noise on in the sampling stages only, and scale the step to
        the likelihood's curvature (``step_scale``; the engine has just set the scheduled
        step)."""
        noisy = state.scratch["plan"].noisy[state.step]
        state.optimizer.param_groups[0]["temperature"] = self.temperature if noisy else 0.0
        scale = step_scale(self.likelihood)
        if scale != 1.0:
            for group in state.optimizer.param_groups:
                group["lr"] *= scale
            state.scratch["min_step_scale"] = min(scale, state.scratch.get("min_step_scale", 1.0))

    def after_step(self, state: FitState) -> None:
        """Store the parameters made by this step when the plan keeps it."""
        if state.step - 1 in state.scratch["plan"].store:
            self.store()

    def on_fit_end(self, state: FitState | None, report: FitReport) -> None:
        """Report how many samples the bank holds and the smallest ``step_scale`` applied."""
        report.extras["samples"] = float(self.stored)
        if state is not None:
            report.extras["min_step_scale"] = float(state.scratch.get("min_step_scale", 1.0))


@register_method("sgld")
class SGLD(_SGMCMC):
    """Stochastic-gradient Langevin dynamics with a cyclical step size (cSGLD).

    Args:
        model: The user's network; the parameters of ``subset`` are sampled.
        likelihood: Observation model; ``Categorical()`` by default.
        prior: Weight prior; ``priors.Normal(1.0)`` by default.
        num_samples: Samples kept in the bank (fixed, so saved files have fixed shapes).
        lr: Peak step size on the per-example objective (the posterior step is ``lr / N``);
            the default was chosen on validation data (``benchmarks/sgmcmc_defaults.py``).
            Scaled down for likelihoods more curved than cross-entropy (``step_scale``).
        schedule: ``"cyclical"`` (cSG-MCMC cosine cycles) or ``"constant"`` step size.
        cycles: Number of cosine cycles over the whole run (cyclical schedule).
        exploration: Fraction of each cycle run without noise before sampling (Zhang et
            al.'s beta); ignored by the constant schedule.
        burn_in: Fraction of the run, from the start, in which no sample is stored.
        temperature: Posterior temperature T (1: Bayes posterior; < 1: cold posterior).
        subset: The sampled parameters (``layers.Subset``: ``"all"``, ``"last_layer"``,
            ``"lora"``, names or a predicate); other trainable parameters are optimised
            without noise (point estimates), frozen ones stay fixed.

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
        lr: float = 0.3,
        schedule: Schedule = "cyclical",
        cycles: int = 4,
        exploration: float = 0.8,
        burn_in: float = 0.0,
        temperature: float = 1.0,
        subset: Subset = "all",
    ) -> None:
        super().__init__(model, likelihood, prior, num_samples, lr, schedule, cycles,
                         exploration, burn_in, temperature, momentum_decay=1.0,
                         subset=subset)  # fmt: skip


@register_method("sghmc")
class SGHMC(_SGMCMC):
    """Stochastic-gradient Hamiltonian Monte Carlo with a cyclical step size (cSGHMC).

    The velocity keeps ``1 - momentum_decay`` of itself per step, so the effective step
    size is about ``lr / momentum_decay`` (10 ``lr`` by default).

    Args:
        model: The user's network; the parameters of ``subset`` are sampled.
        likelihood: Observation model; ``Categorical()`` by default.
        prior: Weight prior; ``priors.Normal(1.0)`` by default.
        num_samples: Samples kept in the bank (fixed, so saved files have fixed shapes).
        lr: Peak step size on the per-example objective (the posterior step is ``lr / N``);
            the default was chosen on validation data of digits and MNIST together
            (``benchmarks/sgmcmc_defaults.py``; digits alone chose 0.3, which left SGHMC
            4.5 points below MAP on MNIST). Scaled down for likelihoods more curved than
            cross-entropy (``step_scale``).
        schedule: ``"cyclical"`` (cSG-MCMC cosine cycles) or ``"constant"`` step size.
        cycles: Number of cosine cycles over the whole run (cyclical schedule).
        exploration: Fraction of each cycle run without noise (momentum SGD) before
            sampling (Zhang et al.'s beta); ignored by the constant schedule.
        burn_in: Fraction of the run, from the start, in which no sample is stored.
        temperature: Posterior temperature T (1: Bayes posterior; < 1: cold posterior).
        momentum_decay: Friction ``alpha`` in (0, 1] (1 - momentum); 1 gives SGLD.
        subset: The sampled parameters (see ``SGLD``).

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
        lr: float = 0.1,
        schedule: Schedule = "cyclical",
        cycles: int = 4,
        exploration: float = 0.8,
        burn_in: float = 0.0,
        temperature: float = 1.0,
        momentum_decay: float = 0.1,
        subset: Subset = "all",
    ) -> None:
        super().__init__(model, likelihood, prior, num_samples, lr, schedule, cycles,
                         exploration, burn_in, temperature, momentum_decay, subset)  # fmt: skip
        self.hparams["momentum_decay"] = momentum_decay
