"""Shared type aliases and result containers."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor
from torch.utils.data import DataLoader, Dataset

DataLike = DataLoader | Dataset | tuple[Tensor, Tensor]
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
    """

    losses: list[float] = field(default_factory=list)
    wall_time_s: float = 0.0
    n_data: int = 0
    extras: dict[str, float] = field(default_factory=dict)
