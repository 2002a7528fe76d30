"""Maximum a posteriori: the deterministic baseline on the shared interface.

Minimises ``NLL + (-log p(theta)) / N``; with ``priors.Normal(scale)`` that is weight decay
``1 / (2 N scale^2)``. ``predict`` returns a Predictive with a single sample (S = 1).
"""

from __future__ import annotations

from torch import nn

from bayesdl.likelihoods import Likelihood
from bayesdl.methods.base import BaseMethod, register_method
from bayesdl.priors import Prior


@register_method("map")
class MAP(BaseMethod):
    """Point estimate ``argmax_theta log p(D | theta) + log p(theta)``.

    Args:
        model: The user's network.
        likelihood: Observation model; ``Categorical()`` by default.
        prior: Weight prior acting as the regulariser; ``Normal(1.0)`` by default.

    Examples:
        >>> import torch, bayesdl as bdl
        >>> net = torch.nn.Linear(2, 3)
        >>> m = bdl.MAP(net)
        >>> _ = m.fit((torch.randn(8, 2), torch.randint(0, 3, (8,))), epochs=1, progress=False)
        >>> m.predict(torch.randn(4, 2)).probs.shape
        torch.Size([4, 3])
    """

    def __init__(
        self, model: nn.Module, likelihood: Likelihood | None = None, prior: Prior | None = None
    ) -> None:
        super().__init__(model, likelihood, prior)

    max_samples = 1

    def _sample_outputs(self, x, plan, generator, context):
        return self.model(x).unsqueeze(0)
