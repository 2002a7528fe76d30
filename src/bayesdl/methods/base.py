"""The method interface and the template every posterior approximation fills in.

A method is one file: a subclass of ``BaseMethod`` registered with ``@register_method``.
It never overrides ``fit`` or ``predict``; it supplies the pieces they call, each with
explicit arguments (nothing is stashed on the object between calls):

Training (run by ``bayesdl.engine``):
    ``objective(x, y, n_data, generator, state) -> Terms`` (the MAP objective by default),
    ``fit_phases`` (one phase by default), ``fit_members`` (1), ``make_optimizer`` and the
    hooks ``on_fit_start``, ``before_phase``, ``before_step``, ``after_step``,
    ``after_epoch``, ``after_phase``, ``after_member``, ``on_fit_end``.

Prediction:
    ``_sample_outputs(x, plan, generator, context)`` returns the network outputs of
    ``plan.samples`` posterior draws for one block of inputs; ``_predict_context`` turns a
    call's options (``deterministic=``, ``bn_data=``) into a per-call context, and
    ``_predictive`` builds the ``Predictive`` from the outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from bayesdl._checks import (
    check_amp,
    check_model_input,
    check_output_memory,
    check_positive_int,
    model_structure,
    output_size,
    placement,
)
from bayesdl.engine import (
    Batches,
    Callback,
    FitState,
    OptimizerFactory,
    Phase,
    Schedule,
    Terms,
    run_fit,
)  # fmt: skip
from bayesdl.inputs import Inputs, is_dict_input, num_examples, split_inputs, to_device
from bayesdl.likelihoods import Categorical, Likelihood
from bayesdl.memory import (
    MemoryEstimate,
    activation_bytes,
    batch_peak,
    check_budget,
    tensor_bytes,
)
from bayesdl.methods.registry import get_method, method_names, register_method
from bayesdl.predictive import Predictive
from bayesdl.priors import Normal, Prior
from bayesdl.runtime import default_chunk_rows, eval_mode, seeded_global_rng
from bayesdl.types import DataLike, FitReport

__all__ = [
    "Method", "BaseMethod", "ChunkPlan", "register_method", "get_method", "method_names",
    "default_prior", "Draws",
]  # fmt: skip

Draws = Literal["shared", "independent"]
"""How ``predict`` draws the posterior across the inputs of one call.

* ``"shared"``: every input sees the same S posterior draws (common random numbers).
  Right for evaluation and for anything that reads the joint predictive of several inputs
  (BatchBALD, EPIG, ``joint_entropy``); the fastest (MC dropout folds its masks into
  the weights).
* ``"independent"``: each input gets its own S draws, independent of every other input's.
  Each input's predictive is distributed exactly as with shared draws, but the Monte Carlo
  errors of different inputs are independent, so ranking inputs by a per-input score
  (top-k BALD) does not favour the inputs that agree with the same few draws.
"""


def default_prior() -> Prior:
    """The weight prior of every method unless one is given: ``priors.Normal(1.0)``."""
    return Normal(1.0)


@runtime_checkable
class Method(Protocol):
    """What every posterior approximation provides (see ``BaseMethod``)."""

    model: nn.Module
    likelihood: Likelihood

    def fit(self, data: DataLike, **kw: Any) -> FitReport:
        """Train on ``data`` (see ``BaseMethod.fit``)."""

    def loss(
        self, x: Tensor, y: Tensor, n_data: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """Objective for the batch ``x``, ``y`` of a training set of ``n_data`` examples.

        Args:
            generator: Random generator for the method's own noise.
        """

    def predict(
        self, x: Tensor, samples: int = 100, *, chunk_size: int | None = None,
        generator: torch.Generator | None = None, **options: Any,
    ) -> Predictive:  # fmt: skip
        """Model average for ``x`` over ``samples`` draws (see ``BaseMethod.predict``).

        Args:
            chunk_size: Most (sample, input) pairs per vectorised call.
            generator: Random generator for the method's own noise.
        """

    def state_dict(self) -> dict[str, Any]:
        """Every tensor needed to restore the fitted method."""

    def load_state_dict(self, state: dict[str, Any]) -> Any:
        """Restore from ``state`` as returned by ``state_dict``."""


@dataclass(frozen=True)
class ChunkPlan:
    """How one ``predict`` call splits its posterior draws into vectorised calls.

    Attributes:
        samples: Posterior draws S of the call.
        per_call: Draws per vectorised call (the same for every block of inputs).
        draws: ``"shared"`` (one set of S draws for every input) or ``"independent"``
            (S draws per input); see ``Draws``.
    """

    samples: int
    per_call: int
    draws: Draws = "shared"

    def chunks(self) -> Iterator[int]:
        """Sizes of the successive sample chunks, summing to ``samples``."""
        for first in range(0, self.samples, self.per_call):
            yield min(self.per_call, self.samples - first)


class BaseMethod(nn.Module, Method):
    """The template: one training engine and one prediction path for every method.

    Subclasses implement ``_sample_outputs`` (and ``objective`` when theirs is not the MAP
    objective), record their constructor arguments in ``self.hparams`` (JSON-serialisable;
    used by ``bayesdl.save``), and override the hooks they need.

    Args:
        model: The user's network; it is used as is, never rewritten.
        likelihood: Observation model; ``Categorical()`` by default.
        prior: Weight prior; ``default_prior()`` (``Normal(1.0)``) when ``None``.
    """

    cli_name: ClassVar[str]
    needs_dropout: ClassVar[bool] = False
    """Whether the method draws its posterior from the model's own ``nn.Dropout`` layers
    (so it refuses a model without them)."""
    per_example_noise: ClassVar[bool] = False
    """Whether ``objective`` draws noise per example from its generator (gates, local
    reparameterisation). Under a process group such noise is drawn for the whole global
    minibatch and cut to this rank's ``FitState.rows`` (``_checks.draw_rows``); only where
    the rows are unknown (a user's own ``DataLoader``) does each rank get a generator of its
    own for it (``distributed.rank_generator``)."""
    full_batch: ClassVar[bool] = False
    """Whether fitting the posterior uses all the data at every step (NUTS), so it is too
    slow to refit at every step of an active-learning loop on a large network."""
    default_epochs: ClassVar[int] = 10
    """Epochs of ``fit`` when none are given."""
    min_epochs: ClassVar[int] = 1
    """Fewest epochs ``fit`` accepts (0 for post-hoc methods)."""
    validate_on_network: ClassVar[bool] = False
    """Whether validation during ``fit`` scores the network's current weights (methods
    whose posterior exists only after ``fit``) rather than ``predict``."""
    native_independent_draws: ClassVar[bool] = False
    """Whether ``_sample_outputs`` draws per-input posterior samples itself when
    ``plan.draws == "independent"`` (MC dropout: a mask per input). Otherwise ``predict``
    draws them by calling ``_sample_outputs`` on one input at a time (exact for any
    method, one call per input)."""
    explicit_prior: ClassVar[bool] = True
    """Whether the method's posterior comes from the explicit weight prior ``self.prior``
    (so ``bayesdl.prior_predictive`` can draw from it); ``False`` for dropout methods,
    whose prior is implicit in the dropout noise."""
    memory_knobs: ClassVar[str] = (
        "subset= (fewer Bayesian parameters), a smaller batch_size= (fit), fewer samples= "
        "or a smaller chunk_size= (predict)"
    )
    """The arguments that lower the method's memory, named by ``max_memory=`` errors."""
    max_samples: int | None = None
    """Most distinct posterior draws the method holds (MAP: 1, a deep ensemble: its
    members, a sample bank: its size); ``predict`` returns ``min(samples, max_samples)``
    outputs. ``None``: unlimited (a continuous approximate posterior)."""

    def __init__(
        self, model: nn.Module, likelihood: Likelihood | None = None, prior: Prior | None = None
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
        self.model = model
        self.likelihood = Categorical() if likelihood is None else likelihood
        if not isinstance(self.likelihood, Likelihood):
            raise TypeError(
                f"likelihood must be a bayesdl Likelihood, got {type(self.likelihood).__name__}."
            )
        self.prior = (default_prior() if prior is None else prior).bind(
            dict(model.named_parameters())
        )
        if self.prior.latents is not None:  # the prior's latent variables (a horseshoe's
            self.prior_latents = self.prior.latents  # scales): trained and saved with us
        self.hparams: dict[str, Any] = {}
        self.eval()  # evaluation mode except inside fit (and the user's own loops)

    # -- device and dtype follow the model -------------------------------------------------
    @property
    def device(self) -> torch.device:
        """Device of the model's first parameter (CPU for a parameter-free model)."""
        return self._placement()[0]

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the model's first parameter (the default for none)."""
        return self._placement()[1]

    def _placement(self) -> tuple[torch.device, torch.dtype]:
        """``(device, dtype)`` of the model's first parameter (``bayesdl._checks.placement``)."""
        return placement(self.model)

    def to_model(self, t: Tensor, *, targets: bool = False) -> Tensor:
        """``t`` on the model's device; floating inputs (not targets) in its dtype.

        Args:
            t: Inputs (a tensor or a dict batch, ``bayesdl.inputs``) or targets.
            targets: Keep the dtype (labels, regression targets).
        """
        device, dtype = self._placement()
        if is_dict_input(t):
            return to_device(t, device, dtype)  # type: ignore[return-value]
        if targets or not t.is_floating_point():
            return t.to(device)
        return t.to(device, dtype)

    # -- the objective -----------------------------------------------------------------------
    def _forward_checked(self, x: Tensor, y: Tensor, forward: Any = None) -> Tensor:
        output = (forward or self.model)(x)
        self.likelihood.check_target(output, y)
        return output

    def objective(
        self,
        x: Tensor,
        y: Tensor,
        n_data: int,
        generator: torch.Generator | None = None,
        state: FitState | None = None,
    ) -> Terms:
        """The per-example training objective of a minibatch, as its two terms.

        The default is the MAP objective: mean NLL and ``-log p(theta) / N``.

        Args:
            x: Inputs, shape (B, ...), on the model's device.
            y: Targets, shape (B,) labels or (B, D) regression targets.
            n_data: Size of the whole training set N (scales the prior / KL term).
            generator: Random generator for the method's own noise (``None``: global RNG).
            state: The engine's state inside ``fit`` (``None`` in a user's own loop).

        Returns:
            ``Terms(data, prior)``; ``loss`` is their sum.
        """
        nll = self.likelihood.nll(self._forward_checked(x, y), y)
        return Terms(nll, -self.prior.log_prob(dict(self.model.named_parameters())) / n_data)

    def loss(
        self, x: Tensor, y: Tensor, n_data: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """Minibatch objective per example (e.g. NLL + KL / n_data) for custom loops.

        Args:
            x: Inputs, shape (B, ...).
            y: Targets, shape (B,) labels or (B, D) regression targets.
            n_data: Size of the whole training set (scales the prior / KL term).
            generator: Random generator for the method's own noise (weight samples, gate
                draws): with one, the loss is reproducible. ``None``: torch's global RNG.

        Returns:
            A scalar tensor to minimise.
        """
        return self.objective(self.to_model(x), self.to_model(y, targets=True), n_data,
                              generator).total  # fmt: skip

    # -- the training engine's extension points ---------------------------------------------
    def fit_phases(
        self, *, epochs: int, lr: float, optimizer: OptimizerFactory, schedule: Schedule,
        cycles: int,
    ) -> list[Phase]:  # fmt: skip
        """The phases of ``fit`` (default: one phase of ``epochs`` at ``lr``).

        Args:
            epochs: Epochs asked of ``fit``.
            lr: Learning rate asked of ``fit``.
            optimizer: Optimiser class or factory asked of ``fit``.
            schedule: Learning-rate schedule asked of ``fit``.
            cycles: Cycles of a cyclical schedule.
        """
        return [Phase("train", epochs, lr, optimizer, schedule, cycles)] if epochs else []

    def fit_members(self) -> int:
        """Independently initialised networks ``fit`` trains in turn (ensembles: M)."""
        return 1

    def member_tensors(self, member: int) -> list[Tensor] | None:
        """The tensors that training member ``member`` fills (views into the method's
        state), or ``None`` (the default): the members are not spread over ranks.

        Under a process group, a method that lists them has its members spread over the
        ranks (member ``m`` on rank ``m % world``, each trained by its rank alone on all
        the data), and these tensors are broadcast from each member's rank at the end.

        Args:
            member: Index of the member.
        """
        return None

    def make_optimizer(
        self, params: list[nn.Parameter], phase: Phase, state: FitState
    ) -> torch.optim.Optimizer:
        """The optimiser of ``phase`` over ``params`` (default ``phase.optimizer(params, lr)``).

        Args:
            state: The fit's ``engine.FitState``.
        """
        return phase.optimizer(params, lr=phase.lr)

    def reinitialise(self, seed: int) -> None:
        """Re-draw the model's initialisation under ``seed`` (ensemble members ``m >= 1``).

        Calls ``reset_parameters()`` of every submodule; ``nn.init`` takes no generator, so
        it runs on a fork of torch's global RNG seeded with ``seed``.

        Args:
            seed: Seed of this initialisation.
        """
        with seeded_global_rng(seed):
            for module in self.model.modules():
                reset = getattr(module, "reset_parameters", None)
                if callable(reset):
                    reset()

    def default_lr(self) -> float:
        """Learning rate of ``fit`` when none is given."""
        return 1e-3

    def on_fit_start(self, state: FitState) -> None:
        """Hook: once per ``fit``, before any training.

        Args:
            state: The fit's ``engine.FitState``.
        """

    def before_phase(self, state: FitState) -> None:
        """Hook: before each phase of each member.

        Args:
            state: The fit's ``engine.FitState``.
        """

    def before_step(self, state: FitState) -> None:
        """Hook: before every optimiser step (``state.step`` is the step about to run)."""

    def after_step(self, state: FitState) -> None:
        """Hook: after every optimiser step (``state.step`` steps are done)."""

    def after_epoch(self, state: FitState) -> None:
        """Hook: after every epoch.

        Args:
            state: The fit's ``engine.FitState``.
        """

    def after_phase(self, state: FitState) -> None:
        """Hook: after each phase of each member.

        Args:
            state: The fit's ``engine.FitState``.
        """

    def after_member(self, state: FitState) -> None:
        """Hook: after the last phase of each member (ensembles store it here).

        Args:
            state: The fit's ``engine.FitState``.
        """

    def on_fit_end(self, state: FitState | None, report: FitReport) -> None:
        """Hook: once per ``fit``, after training (post-hoc posteriors are computed here).

        Args:
            state: The fit's ``engine.FitState``.
            report: The fit's ``FitReport``, completed in place.
        """

    def current_predictive(
        self, x: Tensor, samples: int, generator: torch.Generator | None = None
    ) -> Predictive:
        """The predictive ``fit`` validates: ``predict``, or the network's current weights
        for methods whose posterior exists only after ``fit`` (``validate_on_network``).

        Args:
            x: Inputs on the model's device.
            samples: Posterior draws (ignored on the network).
            generator: Random generator for the draws.
        """
        if not self.validate_on_network:
            return self.predict(x, samples, generator=generator)
        with eval_mode(self), torch.no_grad():
            return self.likelihood.predictive(self.model(x).unsqueeze(0))

    # -- the weight posterior, where a method has a Gaussian one (explain / prune) ----------
    def weight_posterior(self) -> dict[str, tuple[Tensor, Tensor]] | None:
        """Gaussian marginal posterior of each weight: name -> ``(mean, sd)``, detached.

        Methods whose posterior is a Gaussian over weights (``MeanFieldVI``, ``Laplace``,
        ``SWAG``) return it for the parameters it covers; the others return ``None`` (the
        default). Used by ``bayesdl.explain.sparsity`` and ``bayesdl.prune``.
        """
        return None

    def fix_weights_at_zero(self, keep: dict[str, Tensor]) -> None:
        """Fix, in place, the weights where ``keep`` is ``False`` at exactly zero in every
        posterior draw (``bayesdl.prune`` calls it on a copy of the method).

        Args:
            keep: Parameter name (as in ``weight_posterior``) -> bool mask of its shape.

        Raises:
            TypeError: The default: the method has no weight posterior to prune.
        """
        raise TypeError(
            f"{type(self).__name__} cannot fix weights at zero: pruning needs a Gaussian "
            "weight posterior (MeanFieldVI, Laplace(hessian='diag'), SWAG)."
        )

    # -- memory ------------------------------------------------------------------------------
    def fit_memory(
        self, batch_size: int, outputs: int, traced: Callable[[int], int]
    ) -> dict[str, int]:
        """Hook: peak bytes of the method's own work in ``fit`` beyond gradients, optimiser
        state and activations (Laplace: the curvature), name -> bytes; default none.

        Args:
            batch_size: Examples per minibatch.
            outputs: Network outputs per example K.
            traced: ``traced(b)``: the traced peak bytes of ``fit_trace`` on ``b`` examples
                (``memory.batch_peak``; 0 without an example input).
        """
        return {}

    def fit_trace(self, x: Any) -> Any:
        """Hook: the part of one ``fit`` step on inputs ``x`` whose memory grows with the
        batch (``memory_estimate`` traces it on a few real examples with
        ``memory.batch_peak``). Default: a forward pass and a backward pass to the
        trainable parameters (``torch.autograd.grad``: nothing is accumulated in ``.grad``);
        Laplace: its curvature pass.

        Args:
            x: Inputs (a tensor or a dict batch) on the model's device.
        """
        params = [p for p in self.model.parameters() if p.requires_grad]
        with torch.enable_grad():
            out = self.model(x)
            if params and isinstance(out, Tensor) and out.requires_grad:
                return torch.autograd.grad(out.sum(), params, allow_unused=True)
        return out

    def sample_bytes(self) -> int:
        """Bytes of one posterior draw that ``predict`` materialises: the parameters named
        by the method's ``names`` (its subset), none for a method without them."""
        params = dict(self.model.named_parameters())
        return tensor_bytes(params[n] for n in getattr(self, "names", ()) if n in params)

    def memory_estimate(
        self,
        batch_size: int = 128,
        samples: int = 100,
        *,
        example: Any = None,
        chunk_size: int | None = None,
        train: bool | None = None,
    ) -> MemoryEstimate:
        """Bytes the method holds and the peaks ``fit`` and ``predict`` add, from shapes
        (``bayesdl.memory``), before ``fit`` or ``predict`` allocate anything.

        Args:
            batch_size: Examples per minibatch of ``fit``, and inputs of one ``predict``.
            samples: Posterior draws S of ``predict``.
            example: One input (a tensor or dict batch with at least one example) to size
                the activations with a single forward pass; ``None``: activations left out.
            chunk_size: ``predict``'s ``chunk_size`` (default ``default_chunk_rows``).
            train: Whether ``fit`` trains (gradients, Adam state, activations); ``None``:
                unless the method is post hoc (``default_epochs == 0``).

        Returns:
            A ``MemoryEstimate``.

        Raises:
            ValueError: For a non-positive ``batch_size``, ``samples`` or ``chunk_size``.
        """
        check_positive_int(batch_size, "batch_size")
        check_positive_int(samples, "samples")
        own = {id(t) for t in [*self.model.parameters(), *self.model.buffers()]}
        model = tensor_bytes([*self.model.parameters(), *self.model.buffers()])
        state = tensor_bytes(t for t in [*self.parameters(), *self.buffers()] if id(t) not in own)
        if example is not None:
            x = check_model_input(self.model, example)
            act, k = activation_bytes(self.model, x)  # predict: a forward pass per draw
            x = self.to_model(x)

            def traced(b: int) -> int:
                return batch_peak(self.fit_trace, x, b)
        else:
            act, k = 0, output_size(self.model) or 1

            def traced(b: int) -> int:
                return 0

        parts: dict[str, int] = {}
        if self.default_epochs > 0 if train is None else train:
            trainable = tensor_bytes(p for p in self.parameters() if p.requires_grad)
            # the traced step's parameter gradients are the "fit/grads" term
            parts.update({"fit/grads": trainable, "fit/optimizer": 2 * trainable,
                          "fit/activations": max(traced(batch_size) - trainable, 0)})  # fmt: skip
        parts.update({f"fit/{n}": b for n, b in self.fit_memory(batch_size, k, traced).items()})
        rows = default_chunk_rows(self.device) if chunk_size is None else chunk_size
        check_positive_int(rows, "chunk_size")
        block = min(rows, batch_size)
        draws = min(samples, max(1, rows // block), self.max_samples or samples)
        itemsize = self.dtype.itemsize
        parts.update({
            "predict/outputs": min(samples, self.max_samples or samples) * batch_size * k * itemsize,
            "predict/draws": draws * self.sample_bytes(),
            "predict/activations": draws * block * act,
        })  # fmt: skip
        fit = sum(v for n, v in parts.items() if n.startswith("fit/"))
        predict = sum(v for n, v in parts.items() if n.startswith("predict/"))
        return MemoryEstimate(model, state, fit, predict, parts, example is not None)

    # -- training ----------------------------------------------------------------------------
    def fit(
        self,
        data: DataLike | Batches,
        *,
        epochs: int | None = None,
        lr: float | None = None,
        batch_size: int = 128,
        progress: bool = True,
        generator: torch.Generator | None = None,
        optimizer: OptimizerFactory | None = None,
        schedule: Schedule = "constant",
        cycles: int = 1,
        clip_grad_norm: float | None = None,
        val_data: tuple[Tensor, Tensor] | None = None,
        patience: int | None = None,
        val_samples: int = 20,
        callbacks: Sequence[Callback] = (),
        amp: torch.dtype | None = None,
        max_memory: int | None = None,
    ) -> FitReport:
        """Fit the approximation through the training engine (``bayesdl.engine``).

        Args:
            data: A ``DataLoader``, a ``Dataset``, a tuple ``(X, y)``, or a ``Batches``
                sampler.
            epochs: Passes over the data; ``None``: the method's ``default_epochs``.
            lr: Peak learning rate; ``None``: the method's ``default_lr()``.
            batch_size: Minibatch size (ignored for a ``DataLoader``).
            progress: Show progress bars (the data and prior terms of the objective apart).
            generator: Random generator for shuffling and the method's own noise. With one,
                ``fit`` is reproducible: noise drawn from torch's global RNG inside the
                model (``nn.Dropout`` in training) comes from a fork of it seeded from
                ``generator``, and the caller's global RNG state is left as it was.
            optimizer: Optimiser class or factory, called as ``optimizer(params, lr=lr)``;
                ``None``: ``torch.optim.Adam`` (methods with their own sampler ignore it).
            schedule: Learning-rate schedule: ``"constant"``, ``"cosine"`` (decays to 0:
                the last iterate of a noisy objective settles) or ``"cyclical"``.
            cycles: Cycles of the ``"cyclical"`` schedule.
            clip_grad_norm: Clip the gradients' global norm to this value each step.
            val_data: ``(X_val, y_val)``: validation NLL is computed after every epoch.
            patience: Stop after this many epochs without a better validation NLL and
                restore the best state (needs ``val_data``).
            val_samples: Posterior draws of the validation predictive.
            callbacks: ``engine.Callback`` objects called after every step and epoch.
            amp: ``torch.bfloat16`` for mixed precision: each step's forward pass and loss
                run under ``torch.autocast`` (``benchmarks/results/amp_speed.md``) while the weights,
                gradients and optimiser stay in full precision. ``None``: full precision.
            max_memory: A budget in bytes: before anything is allocated, ``fit`` refuses
                with a ``ValueError`` naming the estimate (``memory_estimate``, activations
                left out) and the knobs that lower it when the estimate is over it.

        On a CPU, parameter entries that Adam has shrunk into float32's subnormal range are
        set to zero every ``engine.FLUSH_EVERY`` steps and after every epoch (``runtime.flush_subnormal_``): they change no output,
        and CPUs compute with them far more slowly (``benchmarks/results/subnormal_speed.md``).

        Returns:
            A ``FitReport``: the objective per epoch with its data and prior terms apart,
            validation NLL, warnings, wall time.

        Raises:
            ValueError: On empty data, NaN inputs, targets that do not fit the model or
                bad arguments.
            FloatingPointError: When the training loss becomes NaN or infinite.
        """
        epochs = self.default_epochs if epochs is None else epochs
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < self.min_epochs:
            kind = "a positive" if self.min_epochs else "a non-negative"
            raise ValueError(f"epochs must be {kind} integer, got {epochs!r}.")
        lr = self.default_lr() if lr is None else lr
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr}.")
        check_amp(amp)
        if max_memory is not None:
            train = epochs > 0
            need = self.memory_estimate(batch_size, val_samples, train=train).fit_total
            check_budget(need, max_memory, f"{type(self).__name__}.fit", self.memory_knobs)
        phases = self.fit_phases(
            epochs=epochs, lr=lr, optimizer=torch.optim.Adam if optimizer is None else optimizer,
            schedule=schedule, cycles=cycles,
        )  # fmt: skip
        return run_fit(
            self, data, phases, batch_size=batch_size, progress=progress, generator=generator,
            clip_grad_norm=clip_grad_norm, val_data=val_data, patience=patience,
            val_samples=val_samples, callbacks=callbacks, amp=amp,
        )  # fmt: skip

    # -- prediction --------------------------------------------------------------------------
    def _sample_outputs(
        self, x: Tensor, plan: ChunkPlan, generator: torch.Generator, context: Any
    ) -> Tensor:
        """Network outputs for ``plan.samples`` posterior draws, shape (S, N, ...).

        Args:
            x: One block of inputs on the model's device.
            plan: The call's chunking of the draws.
            generator: The call's generator, reset to the same state for every block.
            context: The call's context from ``_predict_context``.
        """
        raise NotImplementedError

    def _predict_context(self, samples: int, options: dict[str, Any]) -> tuple[int, Any]:
        """Validate a ``predict`` call's method options; return its draws and context.

        The default accepts no options. Methods with options (L0's ``deterministic``,
        SWAG's ``bn_data``) override this and document them in their class docstring.

        Args:
            samples: Draws asked for.
            options: The call's extra keyword arguments.

        Raises:
            TypeError: For an option the method does not take.
        """
        if options:
            raise TypeError(
                f"{type(self).__name__}.predict() got unexpected option(s) {sorted(options)}."
            )
        return samples, None

    def _independent_context(self, context: Any) -> Any:
        """The context for one more input of a per-input ``predict`` (``draws="independent"``
        by per-input calls): the default reuses the call's context; a method whose context
        caches values of its draws returns a fresh one.

        Args:
            context: The call's context from ``_predict_context``.
        """
        return context

    def _sample_outputs_per_input(
        self, x: Tensor, plan: ChunkPlan, generator: torch.Generator, context: Any
    ) -> Tensor:
        """Independent draws by one ``_sample_outputs`` call per input, shape (S, N, ...).

        The generator runs on from one input to the next, so every input gets its own S draws.
        Each call's plan keeps ``draws="independent"``, so a method whose S draws have a fixed
        structure (MultiSWAG's members) can shuffle it per input.

        Args:
            x: One block of inputs on the model's device.
            plan: The call's chunking of the draws (``draws="independent"``).
            generator: The call's generator.
            context: The call's context from ``_predict_context``.
        """
        return torch.cat(
            [
                self._sample_outputs(xi, plan, generator, self._independent_context(context))
                for xi in split_inputs(x, 1)
            ],
            dim=1,
        )

    def _predictive(self, outputs: Tensor, plan: ChunkPlan, context: Any) -> Predictive:
        """The ``Predictive`` of the stacked outputs (S, N, ...) of one call."""
        return self.likelihood.predictive(outputs)

    def predict(
        self,
        x: Inputs,
        samples: int = 100,
        *,
        chunk_size: int | None = None,
        generator: torch.Generator | None = None,
        draws: Draws = "shared",
        max_memory: int | None = None,
        **options: Any,
    ) -> Predictive:
        """Bayesian model average over ``samples`` posterior draws.

        Args:
            x: Inputs, shape (N, ...), on any device (moved to the model's); or a dict of
                such tensors, the keyword inputs of a Hugging Face model adapted with
                ``bayesdl.hf.adapt``.
            samples: Number of Monte Carlo samples S.
            chunk_size: Most (sample, input) pairs evaluated in one vectorised call; bounds
                peak memory independently of S. Default ``default_chunk_rows(device)``.
            generator: Random generator for the posterior draws (reproducible predictions).
                Every input sees the same S draws, whatever the chunking; without a
                generator a private one is seeded from torch's global RNG.
            draws: ``"shared"``: every input sees the same S posterior draws (common random
                numbers: right for evaluation and comparisons, and fastest);
                ``"independent"``: each input gets its own S draws (right for choosing a
                batch of inputs by their scores, e.g. active learning). Methods with
                finitely many draws (MAP, ensembles, sample banks) keep their draws.
            max_memory: A budget in bytes: ``predict`` refuses with a ``ValueError`` naming
                the estimate (``memory_estimate`` with an example of ``x``) and the knobs
                that lower it, before any draw, when the estimate is over it.
            **options: Method-specific options (see the method's docstring), e.g. L0's
                ``deterministic=True`` or SWAG's ``bn_data=``.

        Returns:
            A ``Predictive`` holding S outputs, sample dimension first; S is
            ``min(samples, max_samples)`` for methods with finitely many draws.

        Raises:
            ValueError: If ``x`` is empty, holds NaN/inf or does not have the shape the model
                takes, ``samples < 1``, ``draws`` is unknown, or the S outputs would not fit
                in memory.
            TypeError: For an option the method does not take.
        """
        with torch.no_grad():
            out, plan, context = self._draw_outputs(
                x, samples, chunk_size, generator, options, draws, max_memory
            )
            return self._predictive(out, plan, context)

    def predict_differentiable(
        self, x: Tensor, samples: int = 100, *, chunk_size: int | None = None,
        generator: torch.Generator | None = None, **options: Any,
    ) -> Predictive:  # fmt: skip
        """``predict`` with autograd on: the same draws, and gradients flow back to ``x``.

        For input attributions (``bayesdl.explain``): with a generator in the same state,
        two calls use the same S posterior draws (common random numbers), so the predictive
        is one deterministic, differentiable function of ``x``. Every input sees the same
        draws whatever the batch, so the rows of ``x`` may be any points (an integrated
        gradients path).

        Args:
            x: Inputs, shape (N, ...); make it ``requires_grad`` to get its gradients.
            samples: Number of Monte Carlo samples S.
            chunk_size: Most (sample, input) pairs per vectorised call (as ``predict``).
            generator: Random generator for the posterior draws; reset it to one state
                before every call for common random numbers.
            **options: Method-specific options, as ``predict``.

        Returns:
            A ``Predictive`` whose tensors carry the autograd graph.

        Raises:
            ValueError: As ``predict``.
            TypeError: For an option the method does not take.
        """
        with torch.enable_grad():
            out, plan, context = self._draw_outputs(x, samples, chunk_size, generator, options)
            return self._predictive(out, plan, context)

    def _draw_outputs(
        self, x: Tensor, samples: int, chunk_size: int | None,
        generator: torch.Generator | None, options: dict[str, Any], draws: Draws = "shared",
        max_memory: int | None = None,
    ) -> tuple[Tensor, ChunkPlan, Any]:  # fmt: skip
        """The one prediction path of ``predict`` and ``predict_differentiable``."""
        model = self.model  # (a submodule: each attribute read goes through nn.Module)
        structure = model_structure(model)  # read once: it walks the layers
        x = check_model_input(model, x, structure=structure)
        n = num_examples(x)
        check_positive_int(samples, "samples")
        if draws not in ("shared", "independent"):
            raise ValueError(f"draws must be 'shared' or 'independent', got {draws!r}.")
        samples, context = self._predict_context(samples, options)
        if self.max_samples is not None:
            samples = min(samples, self.max_samples)
        if max_memory is not None:
            est = self.memory_estimate(n, samples, example=x, chunk_size=chunk_size, train=False)
            one = self.memory_estimate(n, 1, example=x, chunk_size=chunk_size, train=False)
            if one.predict_total > max_memory:
                raise ValueError(
                    f"max_memory={max_memory:,} bytes is too small for even one posterior "
                    f"sample of {type(self).__name__}.predict ({one.predict_total:,} bytes); "
                    f"raise it, or lower it with {self.memory_knobs}."
                )
            check_budget(est.predict_total, max_memory, f"{type(self).__name__}.predict",
                         self.memory_knobs)  # fmt: skip
        device, dtype = placement(model, structure)
        check_output_memory(samples, n, structure.output_size, dtype, device)
        if chunk_size is None:
            rows = default_chunk_rows(device)
        else:
            check_positive_int(chunk_size, "chunk_size")
            rows = chunk_size
        x = to_device(x, device, dtype)
        if generator is None and self.max_samples is None:
            # a private generator, so every input block sees the same draws (methods with
            # finitely many draws keep theirs and take none)
            seed = int(torch.randint(2**62, (), dtype=torch.int64))
            generator = torch.Generator(device).manual_seed(seed)
        block = min(rows, n)
        independent = draws == "independent" and self.max_samples is None
        plan = ChunkPlan(samples, max(1, rows // block), "independent" if independent else "shared")
        blocks = (x,) if block == n else split_inputs(x, block)
        # shared: the same S posterior draws for every input block; independent: fresh ones
        start = (
            generator.get_state()
            if generator is not None and len(blocks) > 1 and not independent
            else None
        )
        sample = self._sample_outputs
        if independent and not self.native_independent_draws:
            sample = self._sample_outputs_per_input
        outs = []
        with eval_mode(self):
            for xb in blocks:
                if start is not None:
                    generator.set_state(start)
                outs.append(sample(xb, plan, generator, context))
        out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)
        return out, plan, context
