"""SWAG (Maddox et al., 2019) and MultiSWAG, an ensemble of SWAGs (Wilson & Izmailov, 2020).

SWA-Gaussian fits a Gaussian to the iterates of SGD with a constant learning rate.
``fit(epochs=E)`` first trains the network on the MAP objective ``NLL + (-log p) / N``
(``optimizer`` at ``lr``) for ``floor(swa_start * E)`` epochs, then runs plain SGD at the
constant ``swa_lr`` for the remaining epochs and collects, every ``collect_every`` epochs
(or steps, ``collect_unit="step"``), the iterate ``theta_n`` into running moments and the
last K = ``rank`` deviations (Maddox et al. 2019, Algorithm 1):

    theta_bar <- (n theta_bar + theta_n) / (n + 1)
    sq_mean   <- (n sq_mean + theta_n^2) / (n + 1)
    D[:, n mod K] <- theta_n - theta_bar                     (theta_bar after the update)

Sampling (Maddox et al. 2019, Sec. 3.2, "SWAG: low rank plus diagonal covariance"), with
``k = min(n, K)`` collected deviations, ``z1 ~ N(0, I_P)`` and ``z2 ~ N(0, I_k)``::

    Sigma_diag = max(sq_mean - theta_bar^2, 1e-30)           (clamped diagonal variance)
    theta = theta_bar + sqrt(scale) * ( sqrt(Sigma_diag) * z1 / sqrt(2)
                                        + D z2 / sqrt(2 (k - 1)) )

so ``theta ~ N(theta_bar, scale * (Sigma_diag + D D^T / (k - 1)) / 2)``: the paper's
covariance ``(Sigma_diag + Sigma_low-rank) / 2`` times ``scale``. ``scale=1`` (the default)
is the paper's SWAG; the authors' code omits the 1/2 and passes ``scale=0.5``, which is the
same distribution.

BatchNorm: running statistics depend on the weights, so for every sampled weight set they
are recomputed (Maddox et al., Sec. 4) by a pass in BatchNorm training mode over the first
``bn_batches`` training minibatches, kept by ``fit`` (in memory only; after
``bayesdl.load`` pass ``predict(..., bn_data=X)``). That refresh is a loop over samples
(cached for the whole ``predict`` call); the predictions themselves are one ``vmap`` over
stacked parameters and statistics, chunked over samples, as for models without BatchNorm.

MultiSWAG trains ``members`` SWAG posteriors from independent initialisations (as a deep
ensemble does) and keeps their moments stacked; ``predict(samples=S)`` spreads the S draws
evenly over the members. SWAG is MultiSWAG with one member.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call

from bayesdl._checks import check_input, check_positive_int, draw
from bayesdl.engine import FitState, Phase
from bayesdl.likelihoods import Likelihood
from bayesdl.methods._split import split_model, stacked_forward
from bayesdl.methods.base import BaseMethod, register_method
from bayesdl.methods.layers import Subset, select_params, subset_hparam
from bayesdl.priors import Prior
from bayesdl.runtime import default_chunk_rows
from bayesdl.types import FitReport, ParamDict

_VAR_CLAMP = 1e-30  # as in the authors' code (var_clamp); keeps sqrt(Sigma_diag) finite
CollectUnit = Literal["epoch", "step"]


@dataclass
class _BatchNormRefresh:
    """Per-``predict`` context: inputs for BatchNorm statistics and their cache per chunk."""

    data: Tensor
    cache: list[ParamDict]


def _is_batchnorm(m: nn.Module) -> bool:
    return isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats


@register_method("multiswag")
class MultiSWAG(BaseMethod):
    """An ensemble of SWAG posteriors (see the module docstring for the maths).

    State (buffers, saved by ``bayesdl.save``; M members, P parameters, K = ``rank``):
    ``theta_bar`` and ``sq_mean`` (M, P), ``deviations`` (M, K, P), ``n_models`` (M,).
    After ``fit`` the model holds member 0's SWA mean ``theta_bar[0]``.

    Args:
        model: The user's network (member 0 starts from its initialisation).
        likelihood: Observation model; ``Categorical()`` by default.
        prior: Weight prior of the MAP objective; ``Normal(1.0)`` by default.
        members: Number of SWAG posteriors M.
        rank: Number K of deviation columns kept (the rank of the low-rank part), >= 2.
        swa_start: Fraction of ``fit``'s epochs spent pre-training before the SWA phase,
            in [0, 1); 0 for a model that is already trained.
        swa_lr: Constant learning rate of the SGD of the SWA phase.
        collect_every: Collect a snapshot every this many epochs (or steps).
        collect_unit: ``"epoch"`` (as in the paper) or ``"step"``.
        scale: Multiplier of the sampling covariance; 1 is the paper's, 0 the SWA point.
        bn_batches: Training minibatches kept to recompute BatchNorm statistics per sample.
        subset: The parameters the Gaussian covers (``layers.Subset``: ``"all"``,
            ``"last_layer"``, ``"lora"``, names or a predicate); the others are trained as
            point estimates (or stay fixed where frozen) and are never copied per sample.

    ``predict`` option: ``bn_data=X``, training inputs for recomputing BatchNorm statistics
    for every sampled weight set (default: the minibatches kept by ``fit``, which
    ``bayesdl.save`` does not save; ignored without BatchNorm).

    Raises:
        ValueError: On a non-positive ``members``, ``rank < 2`` or other bad values.

    References:
        Maddox, Garipov, Izmailov, Vetrov & Wilson, "A Simple Baseline for Bayesian
        Uncertainty in Deep Learning", NeurIPS 2019. Wilson & Izmailov, "Bayesian Deep
        Learning and a Probabilistic Perspective of Generalization", NeurIPS 2020.
    """

    def __init__(
        self,
        model: nn.Module,
        likelihood: Likelihood | None = None,
        prior: Prior | None = None,
        members: int = 3,
        rank: int = 20,
        swa_start: float = 0.5,
        swa_lr: float = 0.01,
        collect_every: int = 1,
        collect_unit: CollectUnit = "epoch",
        scale: float = 1.0,
        bn_batches: int = 10,
        subset: Subset = "all",
    ) -> None:
        super().__init__(model, likelihood, prior)
        check_positive_int(members, "members")
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 2:
            raise ValueError(
                f"rank must be an integer >= 2 (the low-rank covariance D D^T / (K - 1) "
                f"needs two deviations), got {rank!r}."
            )
        if not 0 <= swa_start < 1:
            raise ValueError(
                f"swa_start must lie in [0, 1) (a fraction of epochs), got {swa_start}."
            )
        if not swa_lr > 0:
            raise ValueError(f"swa_lr must be positive, got {swa_lr}.")
        check_positive_int(collect_every, "collect_every")
        if collect_unit not in ("epoch", "step"):
            raise ValueError(f"collect_unit must be 'epoch' or 'step', got {collect_unit!r}.")
        if not scale >= 0:
            raise ValueError(f"scale must be >= 0, got {scale}.")
        check_positive_int(bn_batches, "bn_batches")
        chosen = select_params(model, subset, type(self).__name__)
        params = list(chosen.values())
        self.members, self.rank, self.swa_start, self.swa_lr = members, rank, swa_start, swa_lr
        self.collect_every, self.collect_unit, self.scale = collect_every, collect_unit, scale
        self.bn_batches = bn_batches
        self.shapes = {n: p.shape for n, p in chosen.items()}
        self.names = list(chosen)  # the parameters each draw holds
        size = sum(p.numel() for p in params)
        self.register_buffer("theta_bar", params[0].new_zeros(members, size))
        self.register_buffer("sq_mean", params[0].new_zeros(members, size))
        self.register_buffer("deviations", params[0].new_zeros(members, rank, size))
        self.register_buffer("n_models", torch.zeros(members, dtype=torch.long))
        self.bn_names = [
            n
            for name, m in model.named_modules()
            if _is_batchnorm(m)
            for n, _ in m.named_buffers(prefix=name, recurse=False)
        ]
        self.register_buffer("bn_inputs", None, persistent=False)
        ids = set(map(id, params))
        self.split = split_model(
            model,
            lambda m: _is_batchnorm(m) or any(id(p) in ids for p in m.parameters(recurse=False)),
        )
        self.hparams = {
            "members": members, "rank": rank, "swa_start": swa_start, "swa_lr": swa_lr,
            "collect_every": collect_every, "collect_unit": collect_unit, "scale": scale,
            "bn_batches": bn_batches, "subset": subset_hparam(subset, list(chosen)),
        }  # fmt: skip

    # -- training: the engine's phases and hooks ---------------------------------------------
    validate_on_network = True  # the moments exist only once the SWA phase has run

    def fit_members(self) -> int:
        """One SWAG posterior per member, each from its own initialisation."""
        return self.members

    def fit_phases(self, *, epochs, lr, optimizer, schedule, cycles) -> list[Phase]:
        """Pre-training, then collection of SWAG moments from constant-rate SGD.

        ``floor(swa_start * epochs)`` epochs of ``optimizer`` at ``lr`` on the MAP objective
        (``schedule`` applies to them), then the remaining epochs of ``torch.optim.SGD`` at
        the constant ``swa_lr``, collecting a snapshot every ``collect_every`` epochs (or
        steps). ``FitReport.extras`` holds the snapshots collected (``snapshots``, per
        member for MultiSWAG).

        Args:
            cycles: Cycles of the pre-training's cyclical schedule.
        """
        pre = int(self.swa_start * epochs)
        phases = [Phase("pretrain", pre, lr, optimizer, schedule, cycles)] if pre else []
        return phases + [Phase("swa", epochs - pre, self.swa_lr, torch.optim.SGD, monitor=False)]

    def on_fit_start(self, state: FitState) -> None:
        """Check that the SWA phase collects something; keep the BatchNorm batches.

        Args:
            state: The fit's ``engine.FitState``.
        """
        steps = state.phases[-1].epochs * len(state.batches)
        period = self.collect_every * (len(state.batches) if self.collect_unit == "epoch" else 1)
        if steps < period:
            raise ValueError(
                f"the SWA phase ({state.phases[-1].epochs} epoch(s) of {len(state.batches)} "
                f"step(s)) is shorter than collect_every={self.collect_every} "
                f"{self.collect_unit}(s), so nothing would be collected; raise epochs or lower "
                "swa_start or collect_every."
            )
        state.scratch["period"] = period
        if self.bn_names:
            self.bn_inputs = self.to_model(state.batches.first_inputs(self.bn_batches))

    def before_phase(self, state: FitState) -> None:
        """Reset the member's moments before its SWA phase.

        Args:
            state: The fit's ``engine.FitState``.
        """
        if state.phase is not None and state.phase.name == "swa":
            self._reset(state.member)

    def after_step(self, state: FitState) -> None:
        """Collect the iterate every ``period`` SGD steps of the SWA phase.

        Args:
            state: The fit's ``engine.FitState``.
        """
        if state.phase.name == "swa" and state.step % state.scratch["period"] == 0:
            self.collect(state.member)

    def after_member(self, state: FitState) -> None:
        """Load the member's SWA mean into the model; warn about a degenerate covariance.

        Args:
            state: The fit's ``engine.FitState``.
        """
        self._set_model(state.member)
        n = int(self.n_models[state.member])
        if n < 2:
            warnings.warn(
                f"{type(self).__name__} collected {n} snapshot, so its covariance is zero; "
                "use more epochs, a smaller swa_start or collect_unit='step'.",
                stacklevel=5,
            )

    def on_fit_end(self, state: FitState | None, report: FitReport) -> None:
        """Report the snapshots collected per member.

        Args:
            state: The fit's ``engine.FitState``.
            report: The fit's ``FitReport``, completed in place.
        """
        counts = [float(n) for n in self.n_models.tolist()]
        if self.members == 1:
            report.extras["snapshots"] = counts[0]
        else:
            report.extras.update({f"member{m}_snapshots": n for m, n in enumerate(counts)})

    @torch.no_grad()
    def collect(self, member: int = 0) -> None:
        """Add the model's current parameters to the moments (Maddox et al., Algorithm 1).

        ``fit`` calls this; call it yourself after the steps of your own SGD loop.

        Args:
            member: Which SWAG posterior receives the snapshot (0 for SWAG).
        """
        # reshape, not parameters_to_vector's view: a channels-last conv weight is not contiguous
        params = dict(self.model.named_parameters())
        theta = torch.cat([params[n].detach().reshape(-1) for n in self.shapes])
        n = int(self.n_models[member]) + 1
        self.theta_bar[member] += (theta - self.theta_bar[member]) / n
        self.sq_mean[member] += (theta * theta - self.sq_mean[member]) / n
        self.deviations[member, (n - 1) % self.rank] = theta - self.theta_bar[member]
        self.n_models[member] = n

    def member_tensors(self, member: int) -> list[Tensor]:
        """Member ``member``'s moments (mean, second moment, deviations, snapshot count):
        under a process group the members are spread over the ranks and these gathered.

        Args:
            member: Index of the member.
        """
        return [t[member] for t in (self.theta_bar, self.sq_mean, self.deviations, self.n_models)]

    def _reset(self, member: int) -> None:
        for t in (self.theta_bar, self.sq_mean, self.deviations, self.n_models):
            t[member] = 0

    @torch.no_grad()
    def _set_model(self, member: int) -> None:
        """Load the SWA mean of ``member`` into the model (BatchNorm statistics refreshed)."""
        mean = self._unflatten(self.theta_bar[member : member + 1])
        params = dict(self.model.named_parameters())
        for name in self.shapes:
            params[name].copy_(mean[name][0])
        if self.bn_names:
            stats = self._bn_stats(dict(self.model.named_parameters()), self.bn_inputs)
            for name, value in stats.items():
                self.model.get_buffer(name).copy_(value)

    # -- the posterior -----------------------------------------------------------------------
    def _unflatten(self, flat: Tensor) -> ParamDict:
        sizes = [math.prod(s) for s in self.shapes.values()]
        parts = flat.split(sizes, dim=-1)
        return {n: t.reshape(-1, *s) for (n, s), t in zip(self.shapes.items(), parts, strict=True)}

    def _assign(self, n: int) -> Tensor:
        """Member of each of ``n`` draws: contiguous, evenly sized groups."""
        return torch.arange(n, device=self.n_models.device) * self.members // n

    def _check_collected(self) -> None:
        """Raise unless every member has collected moments."""
        missing = (self.n_models == 0).nonzero().flatten().tolist()
        if missing:
            raise RuntimeError(
                f"{type(self).__name__} has collected no moments for member(s) {missing}; call "
                "fit (or collect() in your own training loop) before sampling or predicting."
            )

    def _diag_variance(self) -> Tensor:
        """``Sigma_diag`` per member (members, P); exactly zero where every snapshot was zero
        (a pruned weight)."""
        var = (self.sq_mean - self.theta_bar**2).clamp_min(_VAR_CLAMP)
        return var.masked_fill(self.sq_mean == 0, 0.0)

    def _draw(self, member: Tensor, generator: torch.Generator | None) -> Tensor:
        """Flat parameter draws (len(member), P), draw i from posterior ``member[i]``."""
        self._check_collected()
        n, (members, size), rank = len(member), self.theta_bar.shape, self.rank
        var = self._diag_variance()
        z1 = draw("randn", (n, size), self.theta_bar, generator)
        z2 = draw("randn", (n, rank), self.theta_bar, generator)
        k = self.n_models.clamp(max=rank)[member].to(z2.dtype)
        z2 = z2 / (2 * (k - 1).clamp_min(1)).sqrt().unsqueeze(1)  # a lone column is zero
        z = z2.new_zeros(n, members, rank)
        z[torch.arange(n, device=z.device), member] = z2  # D z2 of each draw's own member
        low_rank = z.flatten(1) @ self.deviations.flatten(0, 1)
        spread = (var[member] / 2).sqrt() * z1 + low_rank
        return self.theta_bar[member] + math.sqrt(self.scale) * spread

    def weight_posterior(self) -> dict[str, tuple[Tensor, Tensor]] | None:
        """``(theta_bar, marginal sd)`` of every parameter, name -> tensors.

        The marginal variance is ``scale * (Sigma_diag + diag(D D^T) / (K - 1)) / 2``. ``None``
        for MultiSWAG (several members: a mixture, not one Gaussian).

        Raises:
            RuntimeError: Before ``fit`` (no moments collected).
        """
        if self.members != 1:
            return None
        self._check_collected()
        var = self._diag_variance()
        k = int(self.n_models.clamp(max=self.rank)[0])
        low = self.deviations[0].square().sum(0) / max(k - 1, 1)
        sd = (self.scale * (var[0] + low) / 2).sqrt()
        mean, sd = self._unflatten(self.theta_bar[0]), self._unflatten(sd)
        return {n: (mean[n][0], sd[n][0]) for n in self.shapes}

    @torch.no_grad()
    def fix_weights_at_zero(self, keep: dict[str, Tensor]) -> None:
        """Set the first and second moments and the deviations of the weights where
        ``keep`` is ``False`` to zero (so every draw is zero there), and the model's too.

        Args:
            keep: Parameter name -> bool mask of its shape.
        """
        drop = torch.cat([
            (~keep[n]).flatten() if n in keep else torch.zeros(s.numel(), dtype=torch.bool)
            for n, s in self.shapes.items()
        ]).to(self.theta_bar.device)  # fmt: skip
        self.theta_bar[:, drop] = 0.0
        self.sq_mean[:, drop] = 0.0
        self.deviations[:, :, drop] = 0.0
        params = dict(self.model.named_parameters())
        for name, mask in keep.items():
            params[name][~mask.to(params[name].device)] = 0.0

    def sample_params(self, n: int, generator: torch.Generator | None = None) -> ParamDict:
        """Draw ``n`` weight samples: name -> tensor of shape (n, *param.shape).

        For MultiSWAG the draws come from the members in contiguous, evenly sized groups.

        Args:
            n: Number of samples.
            generator: Random generator (reproducible samples).

        Raises:
            RuntimeError: Before ``fit`` (no moments collected).
        """
        check_positive_int(n, "n")
        return self._unflatten(self._draw(self._assign(n), generator))

    # -- prediction --------------------------------------------------------------------------
    def _predict_context(self, samples: int, options: dict[str, Any]) -> tuple[int, Any]:
        """``predict(x, bn_data=X)``: training inputs for recomputing BatchNorm statistics
        per sample (default: the minibatches kept by ``fit``; ignored without BatchNorm)."""
        bn_data = options.pop("bn_data", None)
        super()._predict_context(samples, options)
        if not self.bn_names:
            return samples, None
        data = self.bn_inputs if bn_data is None else bn_data
        if data is None:
            raise ValueError(
                "the model has BatchNorm, whose statistics SWAG recomputes for every "
                "sampled weight set: pass bn_data= (training inputs) to predict; the "
                "batches kept by fit are not saved by bayesdl.save."
            )
        check_input(data, "bn_data")
        return samples, _BatchNormRefresh(self.to_model(data), [])

    def _independent_context(self, context: Any) -> Any:
        """Per-input draws (``draws="independent"``) recompute the BatchNorm statistics of
        each input's own draws: a fresh cache per input."""
        return None if context is None else _BatchNormRefresh(context.data, [])

    def _sample_outputs(self, x, plan, generator, context):
        args = self.split.prefix(x)
        member = self._assign(plan.samples)
        if plan.draws == "independent":  # per input: its own order of the members' draws
            member = member[torch.randperm(len(member), generator=generator, device=member.device)]
        outs, first = [], 0
        for c, s in enumerate(plan.chunks()):
            params = self._unflatten(self._draw(member[first : first + s], generator))
            first += s
            if context is not None:  # the same draws for every input block: cache per chunk
                if c == len(context.cache):
                    context.cache.append(self._stacked_bn_stats(params, context.data))
                params.update(context.cache[c])
            outs.append(stacked_forward(self.split, args, params))
        return torch.cat(outs)

    def _stacked_bn_stats(self, params: ParamDict, inputs: Tensor) -> ParamDict:
        """BatchNorm statistics of each stacked weight set on ``inputs``: name -> (S, ...)."""
        n = next(iter(params.values())).shape[0]
        stats = [self._bn_stats({k: v[i] for k, v in params.items()}, inputs) for i in range(n)]
        return {k: torch.stack([s[k] for s in stats]) for k in self.bn_names}

    def _bn_stats(self, params: ParamDict, inputs: Tensor) -> ParamDict:
        """Recompute BatchNorm running statistics for the weights ``params`` on ``inputs``.

        As ``torch.optim.swa_utils.update_bn`` (reset, cumulative average over batches), but
        only BatchNorm layers switch to training mode: dropout stays off, so the statistics
        are deterministic given the weights.
        """
        fresh = {}
        for name in self.bn_names:
            b = self.model.get_buffer(name)
            fresh[name] = (
                torch.ones_like(b) if name.endswith("running_var") else torch.zeros_like(b)
            )
        with self._bn_training():
            for xb in inputs.split(default_chunk_rows(self.device)):
                functional_call(self.model, {**params, **fresh}, (xb,))  # updates `fresh`
        return fresh

    @contextmanager
    def _bn_training(self) -> Iterator[None]:
        layers = [m for m in self.model.modules() if _is_batchnorm(m)]
        saved = [(m.training, m.momentum) for m in layers]
        try:
            for m in layers:
                m.train()
                m.momentum = None  # cumulative moving average
            yield
        finally:
            for m, (mode, momentum) in zip(layers, saved, strict=True):
                m.train(mode)
                m.momentum = momentum


@register_method("swag")
class SWAG(MultiSWAG):
    """SWA-Gaussian: a Gaussian over the weights fitted to constant-lr SGD iterates.

    MultiSWAG with a single member; the module docstring gives the sampling formula.
    State: ``theta_bar``, ``sq_mean`` (1, P), ``deviations`` (1, K, P), ``n_models`` (1,).
    After ``fit`` the model holds the SWA mean.

    Args:
        model: The user's network.
        likelihood: Observation model; ``Categorical()`` by default.
        prior: Weight prior of the MAP objective; ``Normal(1.0)`` by default.
        rank: Number K of deviation columns kept (the rank of the low-rank part), >= 2.
        swa_start: Fraction of ``fit``'s epochs spent pre-training before the SWA phase,
            in [0, 1); 0 for a model that is already trained.
        swa_lr: Constant learning rate of the SGD of the SWA phase.
        collect_every: Collect a snapshot every this many epochs (or steps).
        collect_unit: ``"epoch"`` (as in the paper) or ``"step"``.
        scale: Multiplier of the sampling covariance; 1 is the paper's, 0 the SWA point.
        bn_batches: Training minibatches kept to recompute BatchNorm statistics per sample.
        subset: The parameters the Gaussian covers (see ``MultiSWAG``).

    Raises:
        ValueError: If ``rank < 2`` or another hyperparameter is out of range.

    Examples:
        >>> import torch, bayesdl as bdl
        >>> swag = bdl.SWAG(torch.nn.Linear(2, 3), rank=5, collect_unit="step")
        >>> x, y = torch.randn(32, 2), torch.randint(0, 3, (32,))
        >>> _ = swag.fit((x, y), epochs=4, batch_size=8, progress=False)
        >>> swag.predict(x, samples=10).samples.shape
        torch.Size([10, 32, 3])

    References:
        Maddox, Garipov, Izmailov, Vetrov & Wilson, "A Simple Baseline for Bayesian
        Uncertainty in Deep Learning", NeurIPS 2019.
    """

    def __init__(
        self,
        model: nn.Module,
        likelihood: Likelihood | None = None,
        prior: Prior | None = None,
        rank: int = 20,
        swa_start: float = 0.5,
        swa_lr: float = 0.01,
        collect_every: int = 1,
        collect_unit: CollectUnit = "epoch",
        scale: float = 1.0,
        bn_batches: int = 10,
        subset: Subset = "all",
    ) -> None:
        super().__init__(
            model, likelihood, prior, members=1, rank=rank, swa_start=swa_start, swa_lr=swa_lr,
            collect_every=collect_every, collect_unit=collect_unit, scale=scale,
            bn_batches=bn_batches, subset=subset,
        )  # fmt: skip
        del self.hparams["members"]
