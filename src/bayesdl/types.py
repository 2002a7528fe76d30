"""Shared type aliases and result containers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from torch import Tensor
from torch.utils.data import DataLoader, Dataset

DataLike = Union[DataLoader, Dataset, "tuple[Tensor, Tensor]"]
"""What ``fit`` accepts: a ``DataLoader``, a map-style ``Dataset`` or a tuple ``(X, y)``."""

ParamDict = dict[str, Tensor]
"""Parameter name -> tensor (with a leading sample dimension where it is a sample bank)."""


@dataclass
class FitReport:
    """What ``Method.fit`` returns.

    Attributes:
        losses: Mean training objective per epoch (per example, so comparable across N).
        wall_time_s: Wall-clock time of the whole fit in seconds.
        n_data: Number of training examples.
        extras: Method-specific numbers (e.g. the final KL term of VI).
        data_loss: The data term of ``losses`` per epoch: the mean negative log-likelihood
            per example (empty where the method does not separate it).
        prior_loss: The prior term of ``losses`` per epoch: ``KL / N`` for variational
            methods, ``-log p(theta) / N`` for MAP-type ones (empty where not separated).
    """

    losses: list[float] = field(default_factory=list)
    wall_time_s: float = 0.0
    n_data: int = 0
    extras: dict[str, float] = field(default_factory=dict)
    data_loss: list[float] = field(default_factory=list)
    prior_loss: list[float] = field(default_factory=list)
