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
        losses: Mean training objective per epoch (per example, so comparable across N):
            ``data_loss + prior_loss``.
        wall_time_s: Wall-clock time of the whole fit in seconds.
        n_data: Number of training examples.
        extras: Method-specific numbers (e.g. the final KL term of VI).
        data_loss: Mean data term (negative log-likelihood per example) per epoch.
        prior_loss: Prior / KL term per example (divided by N) per epoch.
        val_nll: Validation negative log-likelihood per epoch (with ``val_data``).
        best_epoch: Epoch whose state early stopping restored (``None``: the last).
        warnings: Messages naming a run that went wrong (divergence, poor samples).
    """

    losses: list[float] = field(default_factory=list)
    wall_time_s: float = 0.0
    n_data: int = 0
    extras: dict[str, float] = field(default_factory=dict)
    data_loss: list[float] = field(default_factory=list)
    prior_loss: list[float] = field(default_factory=list)
    val_nll: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    warnings: list[str] = field(default_factory=list)
