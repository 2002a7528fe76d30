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

The members are trained in turn by the training engine (``BaseMethod.fit_members``, the
same mechanism MultiSWAG uses); member ``m``'s seed is drawn from the fit's generator.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from bayesdl._checks import check_positive_int
from bayesdl.engine import FitState
from bayesdl.likelihoods import Likelihood
from bayesdl.methods._bank import SampleBank, bank_key
from bayesdl.methods._split import split_model
from bayesdl.methods.base import register_method
from bayesdl.methods.layers import Subset, select_params, subset_hparam
from bayesdl.priors import Prior
from bayesdl.runtime import seeded_global_rng
from bayesdl.types import FitReport, ParamDict


def _not_reinitialised(model: nn.Module) -> list[str]:
    """Parameters that no ``reset_parameters()`` re-draws (all members share their init)."""
    covered = {
        id(p)
        for m in model.modules()
        if callable(getattr(m, "reset_parameters", None))
        for p in m.parameters(recurse=False)
    }
    return [n for n, p in model.named_parameters() if id(p) not in covered]


def warn_shared_initialisation(model: nn.Module, names: list[str] | None = None) -> None:
    """Warn when some parameters are not re-drawn by ``reset_parameters()``, so every
    ensemble member would start them from the same values.

    Args:
        model: The network whose members are trained.
        names: Only these parameters (an ensemble over a subset); ``None``: all.
    """
    shared = [n for n in _not_reinitialised(model) if names is None or n in names]
    if shared:
        warnings.warn(
            f"parameters {shared[:5]} belong to modules without reset_parameters(); every "
            "ensemble member starts them from the same values.",
            stacklevel=5,
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
        subset: The parameters that differ between members (``layers.Subset``: ``"all"``,
            ``"last_layer"``, ``"lora"``, names or a predicate). Only they are banked and
            re-initialised per member (a LoRA layer's adapters as ``peft`` initialises
            them: ``A`` random, ``B`` zero), so an ensemble of adapters shares one frozen
            backbone in memory; other trainable parameters are trained with every member
            and keep member 0's values.

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
        subset: Subset = "all",
    ) -> None:
        check_positive_int(members, "members")
        names = list(select_params(model, subset, "DeepEnsemble"))
        super().__init__(model, likelihood, bank_size=members, names=names, prior=prior)
        # BatchNorm statistics differ between members: bank them with the parameters
        self.buffer_names = [n for n, b in model.named_buffers() if b.is_floating_point()]
        for n in self.buffer_names:
            b = model.get_buffer(n)
            self.register_buffer(bank_key(n), b.new_zeros((members, *b.shape)))
        if self.buffer_names:
            params = dict(model.named_parameters())
            banked = {id(params[n]) for n in names} | set(map(id, model.buffers()))
            self.split = split_model(
                model,
                lambda m: any(id(t) in banked for t in [*m.parameters(False), *m.buffers(False)]),
            )
        self._bank_noise("member_log_sigma")  # each member learns its own noise
        self.all_params = subset == "all"
        self.hparams = {"members": members, "subset": subset_hparam(subset, names)}

    # -- training: the engine trains the members in turn (``BaseMethod.fit``) -------------
    def fit_members(self) -> int:
        """One member per bank slot."""
        return self.bank_size

    def on_fit_start(self, state: FitState) -> None:
        """Empty the bank; warn if the members would share part of their initialisation.

        Args:
            state: The fit's ``engine.FitState``.
        """
        self.clear()
        if self.bank_size > 1:
            warn_shared_initialisation(self.model, None if self.all_params else self.names)

    def reinitialise(self, seed: int) -> None:
        """Re-draw member ``m >= 1``'s initialisation under ``seed``: every submodule's for
        ``subset="all"``, otherwise only the modules owning a banked parameter (LoRA
        layers through ``peft``'s ``reset_lora_parameters``).

        Args:
            seed: Seed of this initialisation.
        """
        if self.all_params:
            super().reinitialise(seed)
            return
        banked = {id(p) for n, p in self.model.named_parameters() if n in set(self.names)}
        done: set[int] = set()
        with seeded_global_rng(seed):
            for module in self.model.modules():
                if id(module) in done:
                    continue
                lora = getattr(module, "reset_lora_parameters", None)
                inner = list(module.parameters()) if callable(lora) else []
                if callable(lora) and any(id(p) in banked for p in inner):
                    for adapter in getattr(module, "lora_A", {}):
                        lora(adapter, True)
                    done.update(id(m) for m in module.modules())
                    continue
                reset = getattr(module, "reset_parameters", None)
                own = module.parameters(recurse=False)
                if callable(reset) and any(id(p) in banked for p in own):
                    reset()

    def after_member(self, state: FitState) -> None:
        """Store the trained member (parameters and floating buffers) in the bank.

        Args:
            state: The fit's ``engine.FitState``.
        """
        self._store_member(state.member)

    @torch.no_grad()
    def _store_member(self, member: int) -> None:
        self.stored.fill_(member)  # its own slot, whichever rank trains it (distributed)
        self.store()
        for n in self.buffer_names:
            getattr(self, bank_key(n))[member].copy_(self.model.get_buffer(n))

    def member_tensors(self, member: int) -> list[Tensor]:
        """Member ``member``'s slot of the bank (parameters, floating buffers, noise):
        under a process group the members are spread over the ranks and these gathered.

        Args:
            member: Index of the member.
        """
        buffers = [getattr(self, bank_key(n))[member] for n in self.buffer_names]
        return self.slots(member) + buffers

    def on_fit_end(self, state: FitState | None, report: FitReport) -> None:
        """Every member is in the bank (members spread over ranks were gathered).

        Args:
            state: The fit's ``engine.FitState``.
            report: The fit's ``FitReport``.
        """
        self.stored.fill_(self.bank_size)

    def bank(self) -> ParamDict:
        """The members: name -> (stored, ...) for every parameter and floating buffer."""
        k = int(self.stored)
        return {**super().bank(), **{n: getattr(self, bank_key(n))[:k] for n in self.buffer_names}}
