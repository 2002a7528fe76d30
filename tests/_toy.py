"""The small dropout classifier and data that several method tests share."""

from __future__ import annotations

import torch
from torch import nn


def toy_net() -> nn.Sequential:
    """A 4-16-16-3 classifier with two dropout layers, seeded initialisation."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 16), nn.Tanh(),
        nn.Dropout(0.2), nn.Linear(16, 3),
    )  # fmt: skip


def toy_data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` Gaussian inputs and three classes set by the first two features."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 4, generator=g)
    return x, (x[:, 0] > 0).long() + (x[:, 1] > 1).long()
