"""BatchBALD's published retraining schedule (Kirsch, van Amersfoort & Gal, 2019).

Their MNIST experiments (``laaos_results/paper`` of their code) retrain the model from
scratch after every acquisition with: minibatches of 64; "epochs" of a fixed 5,056 samples
drawn from the labelled set (``RandomFixedLengthSampler``: a random permutation of 5,056
positions taken modulo the labelled-set size, so small sets are repeated); at most 30 such
epochs, with early stopping after 3 epochs without improvement on a validation set of
1,024 labelled points; 100 MC dropout samples for scoring; acquisitions of 10.

``ActiveLearner(..., schedule="batchbald", val_data=(X_val, y_val))`` trains this way
(``bayesdl.engine``'s early stopping monitors the validation NLL and restores the best
epoch); give it ``mc_samples=100`` for their sample count.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from bayesdl.inputs import num_examples, take

__all__ = ["BatchBALDSchedule", "BATCHBALD_SCHEDULE", "FixedLengthBatches"]


@dataclass(frozen=True)
class BatchBALDSchedule:
    """The retraining settings of Kirsch et al. (2019).

    Attributes:
        epoch_samples: Samples drawn from the labelled set per epoch.
        max_epochs: Most epochs per retraining.
        patience: Epochs without a better validation NLL before stopping.
        batch_size: Minibatch size.
        val_size: Size of their validation set (the caller supplies it as ``val_data``).
        mc_samples: MC dropout samples for scoring the pool.
    """

    epoch_samples: int = 5056
    max_epochs: int = 30
    patience: int = 3
    batch_size: int = 64
    val_size: int = 1024
    mc_samples: int = 100


BATCHBALD_SCHEDULE = BatchBALDSchedule()
"""The published values."""


class FixedLengthBatches:
    """Minibatches of an epoch of ``length`` samples from a (small) labelled set.

    As Kirsch et al.'s ``RandomFixedLengthSampler``: each epoch draws a random permutation
    of ``length`` positions and takes it modulo the set's size, so every example appears
    ``floor`` or ``ceil(length / N)`` times per epoch (sets larger than ``length`` are
    shuffled whole). ``n_data`` stays the set's size, so the prior term of the objective is
    scaled by the number of labelled points, not by ``length``. Implements
    ``engine.Batches``.

    Args:
        x: Inputs, shape (N, ...), or a dict of them (``bayesdl.inputs``).
        y: Targets, shape (N, ...).
        batch_size: Minibatch size.
        length: Samples per epoch (at least N is used).

    Raises:
        ValueError: If the set is empty or ``batch_size`` / ``length`` is not positive.
    """

    def __init__(self, x: Tensor, y: Tensor, batch_size: int, length: int) -> None:
        n = num_examples(x)
        if n == 0 or n != y.shape[0]:
            raise ValueError(
                f"x and y must hold the same positive number of examples, got {n} "
                f"and {y.shape[0]}."
            )
        for value, name in ((batch_size, "batch_size"), (length, "length")):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        self.x, self.y, self.batch_size = x, y, batch_size
        self.n_data = n
        self.length = max(length, self.n_data)

    def __len__(self) -> int:
        return math.ceil(self.length / self.batch_size)

    def epoch(self, generator: torch.Generator | None) -> Iterator[tuple[Tensor, Tensor]]:
        """One epoch of ``length`` samples in a new order drawn from ``generator``.

        Args:
            generator: CPU generator of the order (``None``: torch's global RNG).
        """
        order = torch.randperm(self.length, generator=generator) % self.n_data
        for i in range(0, self.length, self.batch_size):
            idx = order[i : i + self.batch_size]
            yield take(self.x, idx), self.y[idx]

    def first_inputs(self, batches: int) -> Tensor:
        """The inputs of the first ``batches`` minibatches in the data's own order.

        Args:
            batches: Number of minibatches.
        """
        return take(self.x, torch.arange(batches * self.batch_size) % self.n_data)
