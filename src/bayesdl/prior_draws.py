"""Prior predictive checks: what a network's prior says before it sees any data.

``prior_predictive(method, x, samples)`` draws ``samples`` weight sets from the method's
prior (``method.prior.sample``), runs the network with each (vectorised with
``torch.func.vmap`` over ``functional_call``) and returns the ``Predictive`` of those
outputs, chunked over draws and inputs exactly as ``predict`` chunks posterior draws (it is
``BaseMethod.predict`` with the prior in place of the posterior). Looking at it is the
cheapest way to choose a prior: a ``Normal(1.0)`` prior on a wide ReLU network puts
nearly all its mass on confident, extreme functions, a ``Normal(0.1)`` one on flat ones.

Every parameter of the network is drawn from the prior (a method's point-estimated
parameters, such as those outside ``MeanFieldVI``'s ``subset``, are drawn too); buffers
(BatchNorm statistics) and a learned Gaussian noise keep their current values. Methods whose
prior is implicit (MC dropout, concrete dropout: ``BaseMethod.explicit_prior`` is False)
raise an error.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.func import functional_call, vmap

from bayesdl.methods.base import BaseMethod, ChunkPlan
from bayesdl.predictive import Predictive

__all__ = ["prior_predictive"]


class PriorDraws(BaseMethod):
    """The shared prediction path with weights drawn from ``method``'s prior.

    Not registered: a view of another method (same model, likelihood and bound prior) for
    ``prior_predictive``.

    Args:
        method: A method with an explicit prior.
    """

    def __init__(self, method: BaseMethod) -> None:
        super().__init__(method.model, method.likelihood, method.prior)

    def _sample_outputs(
        self, x: Tensor, plan: ChunkPlan, generator: torch.Generator, context: Any
    ) -> Tensor:
        params = {k: v.detach() for k, v in self.model.named_parameters()}

        def one(p: dict[str, Tensor], xb: Tensor) -> Tensor:
            return functional_call(self.model, p, (xb,))

        run = vmap(one, in_dims=(0, None))
        return torch.cat([run(self.prior.sample(params, s, generator), x) for s in plan.chunks()])


def prior_predictive(
    method: BaseMethod,
    x: Tensor,
    samples: int = 100,
    *,
    chunk_size: int | None = None,
    generator: torch.Generator | None = None,
) -> Predictive:
    """Outputs of ``samples`` networks with weights drawn from the method's prior.

    Args:
        method: A bayesdl method with an explicit prior (MAP, MeanFieldVI, Laplace, SWAG,
            DeepEnsemble, SGLD, SGHMC, HMC, L0); it need not be fitted.
        x: Inputs, shape (N, ...).
        samples: Weight draws S from the prior.
        chunk_size: Most (draw, input) pairs per vectorised call, as in ``predict``.
        generator: Random generator (reproducible draws; every input sees the same S
            networks).

    Returns:
        A ``Predictive`` with S outputs, sample dimension first.

    Raises:
        ValueError: If the method's prior is implicit (dropout methods), a layer's prior is
            flat (infinite scale), or on the inputs ``predict`` rejects.
        TypeError: If ``method`` is not a bayesdl method.

    Examples:
        >>> import torch, bayesdl as bdl
        >>> net = torch.nn.Sequential(torch.nn.Linear(1, 50), torch.nn.ReLU(),
        ...                           torch.nn.Linear(50, 1))
        >>> vi = bdl.MeanFieldVI(net, bdl.likelihoods.Gaussian(0.1),
        ...                      prior=bdl.priors.Normal(1.0))
        >>> pred = bdl.prior_predictive(vi, torch.linspace(-3, 3, 7)[:, None], samples=20)
        >>> pred.samples.shape
        torch.Size([20, 7, 1])
    """
    if not isinstance(method, BaseMethod):
        raise TypeError(
            f"prior_predictive takes a bayesdl method (bdl.MAP(net), ...), got "
            f"{type(method).__name__}."
        )
    if not method.explicit_prior:
        raise ValueError(
            f"{type(method).__name__} has no explicit weight prior (its prior is implicit in "
            "the dropout noise), so it has no prior predictive; use a method with a prior, "
            "e.g. bdl.MeanFieldVI(net, prior=...)."
        )
    return PriorDraws(method).predict(x, samples, chunk_size=chunk_size, generator=generator)
