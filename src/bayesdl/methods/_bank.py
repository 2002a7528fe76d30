"""A posterior held as a finite bank of weight samples (ensembles, SG-MCMC, HMC).

The bank is a set of buffers ``bank__<param>`` of shape (B, *param.shape), so it is saved
and loaded with the method like any other state, and predictions are one ``vmap`` over
the stored samples (the deterministic prefix before the first banked layer runs once).
A learned Gaussian noise that differs between draws (ensemble members, HMC draws) is
banked too, one ``log sigma`` per draw, and each draw then predicts with its own noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from bayesdl._checks import check_positive_int
from bayesdl.likelihoods import Gaussian, Likelihood
from bayesdl.methods._split import split_model, stacked_forward
from bayesdl.methods.base import BaseMethod, ChunkPlan
from bayesdl.predictive import GaussianPredictive, Predictive
from bayesdl.priors import Prior
from bayesdl.types import ParamDict


def bank_key(name: str) -> str:
    """Name of the buffer banking parameter (or buffer) ``name``."""
    return "bank__" + name.replace(".", "__")


class SampleBank(BaseMethod):
    """Base class: ``bank_size`` stored samples of the parameters ``names``.

    Subclasses fill the bank during ``fit`` with ``store()`` (the model's current values)
    or ``store(params)``; ``predict(x, samples=S)`` uses ``min(S, stored)`` of them,
    evenly spaced over the bank (its generator is unused: the bank is fixed).

    Args:
        model: The user's network.
        likelihood: Observation model; ``Categorical()`` by default.
        bank_size: Number of samples the bank holds.
        names: Parameter names to bank; ``None``: every parameter of the model.
        head: Stochastic head of a non-Sequential model (see ``MeanFieldVI``).
        prior: Weight prior; ``default_prior()`` when ``None``.
    """

    #: Name of the buffer with one log noise sd per draw (see ``_bank_noise``), or ``None``.
    noise_buffer: str | None = None
    validate_on_network = True  # the bank fills only as fit ends

    def __init__(
        self,
        model: nn.Module,
        likelihood: Likelihood | None,
        bank_size: int,
        names: Sequence[str] | None = None,
        head: str | None = None,
        prior: Prior | None = None,
    ) -> None:
        super().__init__(model, likelihood, prior)
        check_positive_int(bank_size, "bank_size")
        params = dict(model.named_parameters())
        self.names = list(params) if names is None else list(names)
        unknown = [n for n in self.names if n not in params]
        if unknown:
            raise ValueError(f"{unknown} are not parameters of the model; it has {list(params)}.")
        for n in self.names:
            p = params[n]
            self.register_buffer(bank_key(n), p.new_zeros((bank_size, *p.shape)))
        self.register_buffer("stored", torch.zeros((), dtype=torch.long))
        self.max_samples = bank_size
        banked = {id(params[n]) for n in self.names}
        self.split = split_model(
            model, lambda m: any(id(p) in banked for p in m.parameters(recurse=False)), head
        )

    def _bank_noise(self, buffer: str) -> bool:
        """Bank one log noise sd per draw in ``buffer`` if the likelihood is a learned
        ``Gaussian``; returns whether it is."""
        if not (isinstance(self.likelihood, Gaussian) and self.likelihood.learned):
            return False
        log_sigma = self.likelihood.log_sigma.detach()
        self.register_buffer(buffer, log_sigma.new_zeros(self.bank_size))
        self.noise_buffer = buffer
        return True

    @property
    def bank_size(self) -> int:
        """Capacity of the bank."""
        return int(self.max_samples or 0)

    def store(self, params: ParamDict | None = None, log_sigma: Tensor | None = None) -> None:
        """Add one sample (``params``, or the model's current parameters) to the bank.

        Args:
            params: Parameter name -> tensor for every banked name; ``None``: the model's.
            log_sigma: The draw's log noise sd when the noise is banked; ``None``: the
                likelihood's current value.

        Raises:
            RuntimeError: If the bank is full.
        """
        i = int(self.stored)
        if i >= self.bank_size:
            raise RuntimeError(f"the sample bank is full ({self.bank_size} samples).")
        current = dict(self.model.named_parameters()) if params is None else params
        with torch.no_grad():
            for n in self.names:
                getattr(self, bank_key(n))[i].copy_(current[n])
            if self.noise_buffer is not None:
                noise = self.likelihood.log_sigma if log_sigma is None else log_sigma
                getattr(self, self.noise_buffer)[i] = noise
        self.stored.fill_(i + 1)

    def slots(self, rows: slice | int) -> list[Tensor]:
        """Views of the bank's ``rows`` (one sample: an index), parameters then the
        banked noise: what a process group broadcasts from the rank that drew them.

        Args:
            rows: The samples' positions in the bank.
        """
        names = [bank_key(n) for n in self.names]
        names += [self.noise_buffer] if self.noise_buffer is not None else []
        return [getattr(self, n)[rows] for n in names]

    def clear(self) -> None:
        """Forget every stored sample (a new ``fit`` starts an empty bank)."""
        self.stored.fill_(0)

    def bank(self) -> ParamDict:
        """The stored samples: name -> tensor of shape (stored, *param.shape)."""
        k = int(self.stored)
        return {n: getattr(self, bank_key(n))[:k] for n in self.names}

    def _indices(self, n: int) -> Tensor:
        k = int(self.stored)
        if k == 0:
            raise RuntimeError(f"{type(self).__name__} has no posterior samples yet; call fit.")
        n = min(n, k)
        return torch.linspace(0, k - 1, n, device=self.stored.device).round().long()

    def _predictive(self, outputs: Tensor, plan: ChunkPlan, context: Any) -> Predictive:
        """With a banked noise, draw s predicts ``N(f_s(x), sigma_s^2)`` with its own sigma."""
        if self.noise_buffer is None:
            return self.likelihood.predictive(outputs)
        log_sigma = getattr(self, self.noise_buffer)[self._indices(plan.samples)]
        noise = (2 * log_sigma).exp().to(outputs).view(-1, 1, 1)
        return GaussianPredictive(outputs, noise)

    def sample_params(self, n: int, generator: torch.Generator | None = None) -> ParamDict:
        """``min(n, stored)`` stored samples, evenly spaced over the bank.

        Args:
            n: Number of samples wanted.
            generator: Unused (the bank is fixed); accepted for the common interface.
        """
        idx = self._indices(n)
        return {name: t[idx] for name, t in self.bank().items()}

    def _sample_outputs(self, x, plan, generator, context):
        args = self.split.prefix(x)
        idx = self._indices(plan.samples)
        bank = self.bank()
        outs, first = [], 0
        for s in plan.chunks():
            part = idx[first : first + s]
            outs.append(stacked_forward(self.split, args, {n: t[part] for n, t in bank.items()}))
            first += s
        return torch.cat(outs)
