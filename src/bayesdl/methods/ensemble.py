"""Deep ensembles (Lakshminarayanan, Pritzel & Blundell, 2017).

The posterior is approximated by M networks trained independently: member ``m`` starts
from its own random initialisation (``reset_parameters()`` of every submodule under a
member seed drawn from the fit's generator; member 0 keeps the user's initialisation) and
is trained with the MAP objective ``NLL + (-log p(theta)) / N`` with its own shuffling.
Prediction is the uniform mixture of the members' predictives, ``1/M sum_m p(y|x, theta_m)``
(for a ``Gaussian`` likelihood a mixture of Gaussians, each member with its own learned
noise when ``sigma=None``).

Hyperparameters: ``members``, the prior (weight decay) and the usual ``fit`` arguments.
The members' parameters and floating-point buffers (BatchNorm statistics) are a stacked
sample bank (``SampleBank``), so ``predict`` is one ``vmap`` over members.

The helpers ``member_seeds``, ``reinitialise`` and ``fit_members`` are shared with
MultiSWAG (an ensemble of SWAG posteriors).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from bayesdl._checks import check_positive_int
from bayesdl.likelihoods import Likelihood
from bayesdl.methods._bank import SampleBank, _key
from bayesdl.methods._split import split_model
from bayesdl.methods.base import BaseMethod, register_method, seeded_global_rng
from bayesdl.methods.map import MAP
from bayesdl.priors import Normal, Prior
from bayesdl.types import DataLike, FitReport, ParamDict


def member_seeds(members: int, generator: torch.Generator | None) -> list[int]:
    """One initialisation seed per member, drawn from ``generator`` (torch's RNG if None)."""
    device = "cpu" if generator is None else generator.device
    seeds = torch.randint(2**62, (members,), generator=generator, device=device)
    return seeds.tolist()


def reinitialise(model: nn.Module, seed: int) -> None:
    """Call ``reset_parameters()`` of every submodule with the RNG seeded by ``seed``.

    ``nn.init`` takes no generator, so the global RNGs of the CPU and of every initialised
    CUDA device (the model's among them) are seeded inside ``torch.random.fork_rng`` and
    restored afterwards.

    Args:
        model: The network to re-initialise in place.
        seed: Seed of this initialisation.
    """
    with seeded_global_rng(seed):
        for module in model.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()


def _not_reinitialised(model: nn.Module) -> list[str]:
    """Parameters that no ``reset_parameters()`` re-draws (all members share their init)."""
    covered = {
        id(p)
        for m in model.modules()
        if callable(getattr(m, "reset_parameters", None))
        for p in m.parameters(recurse=False)
    }
    return [n for n, p in model.named_parameters() if id(p) not in covered]


def fit_members(
    method: BaseMethod,
    members: int,
    fit_one: Callable[[int, bool], FitReport],
    *,
    generator: torch.Generator | None,
    progress: bool,
) -> FitReport:
    """Train ``members`` independently initialised copies of ``method.model`` in turn.

    Before member ``m`` the model and the likelihood are restored to their state at the
    call (the user's initialisation); members ``m >= 1`` are then re-initialised with
    ``reinitialise`` under their own seed. Afterwards both hold member 0's final state
    (so a second ``fit`` continues member 0, like MAP, and draws fresh initialisations
    for the others).

    Args:
        method: The method whose model is trained.
        members: Number of members.
        fit_one: ``fit_one(m, progress)`` trains member ``m`` from the current weights,
            stores it, and returns its ``FitReport``.
        generator: Random generator for the member seeds (and, inside ``fit_one``, the
            shuffling); torch's global RNG when ``None``.
        progress: Show a progress bar over members (over epochs for a single member).

    Returns:
        A ``FitReport`` whose losses are the members' mean loss per epoch; ``extras``
        holds each member's extras and final loss, prefixed ``member<m>_``.
    """
    if members == 1:
        return fit_one(0, progress)
    shared = _not_reinitialised(method.model)
    if shared:
        warnings.warn(
            f"parameters {shared[:5]} belong to modules without reset_parameters(); every "
            "ensemble member starts them from the same values.",
            stacklevel=3,
        )
    start = time.perf_counter()
    seeds = member_seeds(members, generator)
    parts = (method.model, method.likelihood)
    init = [{k: v.clone() for k, v in part.state_dict().items()} for part in parts]
    reports = []
    name = type(method).__name__
    for m in tqdm(range(members), desc=f"fit {name}", disable=not progress, leave=False):
        for part, state in zip(parts, init, strict=True):
            part.load_state_dict(state)
        if m:
            reinitialise(method.model, seeds[m])
        reports.append(fit_one(m, False))
        if m == 0:
            first = [{k: v.clone() for k, v in part.state_dict().items()} for part in parts]
    for part, state in zip(parts, first, strict=True):  # the model holds member 0
        part.load_state_dict(state)
    losses = torch.tensor([r.losses for r in reports], dtype=torch.float64).mean(0)
    extras = {f"member{m}_loss": r.losses[-1] for m, r in enumerate(reports)}
    for m, r in enumerate(reports):
        extras.update({f"member{m}_{k}": v for k, v in r.extras.items()})
    return FitReport(
        losses=losses.tolist(),
        wall_time_s=time.perf_counter() - start,
        n_data=reports[0].n_data,
        extras=extras,
    )


@register_method("ensemble")
class DeepEnsemble(SampleBank):
    """M independently initialised networks trained on the MAP objective.

    After ``fit`` the model holds member 0; the members live in the bank
    (``sample_params(members)``: name -> (M, ...), BatchNorm statistics included).
    ``predict(x, samples=S)`` uses ``min(S, members)`` members, evenly spaced.

    Args:
        model: The user's network (member 0 starts from its initialisation).
        likelihood: Observation model; ``Categorical()`` by default. With
            ``Gaussian(sigma=None)`` every member learns its own noise level.
        prior: Weight prior (weight decay) of every member; ``Normal(1.0)`` by default.
        members: Number of ensemble members M.

    Raises:
        ValueError: If ``members < 1``.

    Examples:
        >>> import torch, bayesdl as bdl
        >>> ens = bdl.DeepEnsemble(torch.nn.Linear(2, 3), members=4)
        >>> x, y = torch.randn(16, 2), torch.randint(0, 3, (16,))
        >>> _ = ens.fit((x, y), epochs=2, progress=False)
        >>> ens.predict(x, samples=10).samples.shape  # one sample per member
        torch.Size([4, 16, 3])

    References:
        Lakshminarayanan, Pritzel & Blundell, "Simple and Scalable Predictive Uncertainty
        Estimation using Deep Ensembles", NeurIPS 2017.
    """

    def __init__(
        self,
        model: nn.Module,
        likelihood: Likelihood | None = None,
        prior: Prior | None = None,
        members: int = 5,
    ) -> None:
        check_positive_int(members, "members")
        super().__init__(model, likelihood, bank_size=members)
        self.prior = Normal(1.0) if prior is None else prior
        # BatchNorm statistics differ between members: bank them with the parameters
        self.buffer_names = [n for n, b in model.named_buffers() if b.is_floating_point()]
        for n in self.buffer_names:
            b = model.get_buffer(n)
            self.register_buffer(_key(n), b.new_zeros((members, *b.shape)))
        if self.buffer_names:
            banked = set(map(id, model.parameters())) | set(map(id, model.buffers()))
            self.split = split_model(
                model,
                lambda m: any(id(t) in banked for t in [*m.parameters(False), *m.buffers(False)]),
            )
        self._bank_noise("member_log_sigma")  # each member learns its own noise
        self.hparams = {"members": members}

    loss = MAP.loss  # NLL + (-log p(theta)) / N

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
        """Train the members in turn, each from its own initialisation and shuffling.

        Args:
            data: A ``DataLoader``, a ``Dataset`` or a tuple ``(X, y)``.
            epochs: Passes over the data per member.
            lr: Learning rate.
            batch_size: Minibatch size (ignored for a ``DataLoader``).
            progress: Show a progress bar over members.
            generator: Random generator for the member seeds and the shuffling
                (reproducible ensembles); torch's global RNG when ``None``.
            optimizer: Optimiser class, called as ``optimizer(params, lr=lr)``.
            amp: ``torch.bfloat16``: mixed precision of the training steps, as in
                ``BaseMethod.fit``.

        Returns:
            A ``FitReport``: the members' mean loss per epoch; ``extras`` holds each
            member's final loss (``member<m>_loss``).

        Raises:
            ValueError: On empty data, NaN inputs or targets that do not fit the model.
        """
        train = super().fit
        self.clear()

        def fit_one(member: int, bar: bool) -> FitReport:
            report = train(data, epochs=epochs, lr=lr, batch_size=batch_size, progress=bar,
                           generator=generator, optimizer=optimizer, amp=amp)  # fmt: skip
            self._store_member(member)
            return report

        return fit_members(self, self.bank_size, fit_one, generator=generator, progress=progress)

    @torch.no_grad()
    def _store_member(self, member: int) -> None:
        self.store()
        for n in self.buffer_names:
            getattr(self, _key(n))[member].copy_(self.model.get_buffer(n))

    def bank(self) -> ParamDict:
        """The members: name -> (stored, ...) for every parameter and floating buffer."""
        k = int(self.stored)
        return {**super().bank(), **{n: getattr(self, _key(n))[:k] for n in self.buffer_names}}
