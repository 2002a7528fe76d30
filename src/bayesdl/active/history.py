"""What an active-learning run records: one ``StepRecord`` per step, and the labelled set."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["ActiveHistory", "StepRecord"]


@dataclass
class StepRecord:
    """What happened at one step of the loop.

    Attributes:
        step: Step number; 0 is the initial labelled set.
        num_labelled: Size of the labelled set after the step.
        acquired: Pool indices labelled at this step.
        accuracy: Test accuracy (fraction) after retraining, ``None`` if not evaluated.
        nll: Test negative log-likelihood (nats), ``None`` if not evaluated.
        train_time_s: Seconds spent (re)training.
        score_time_s: Seconds spent predicting on the pool and selecting.
        test_time_s: Seconds spent evaluating on the test set.
    """

    step: int
    num_labelled: int
    acquired: list[int]
    accuracy: float | None = None
    nll: float | None = None
    train_time_s: float = 0.0
    score_time_s: float = 0.0
    test_time_s: float = 0.0


@dataclass
class ActiveHistory:
    """Every step's record and the labelled set, in labelling order.

    Attributes:
        records: One ``StepRecord`` per completed step.
        labelled_indices: Labelled pool indices, in the order they were labelled.
    """

    records: list[StepRecord] = field(default_factory=list)
    labelled_indices: list[int] = field(default_factory=list)

    def _evaluated(self) -> list[StepRecord]:
        return [r for r in self.records if r.accuracy is not None]

    @property
    def labels(self) -> list[int]:
        """Labelled-set size at each evaluation."""
        return [r.num_labelled for r in self._evaluated()]

    @property
    def accuracy(self) -> list[float]:
        """Test accuracy (fraction) at each evaluation."""
        return [float(r.accuracy) for r in self._evaluated()]  # type: ignore[arg-type]

    @property
    def nll(self) -> list[float]:
        """Test NLL at each evaluation."""
        return [float(r.nll) for r in self._evaluated()]  # type: ignore[arg-type]

    @property
    def train_time_s(self) -> float:
        """Total seconds spent training."""
        return sum(r.train_time_s for r in self.records)

    @property
    def score_time_s(self) -> float:
        """Total seconds spent scoring the pool."""
        return sum(r.score_time_s for r in self.records)

    @property
    def test_time_s(self) -> float:
        """Total seconds spent on test evaluation."""
        return sum(r.test_time_s for r in self.records)

    @property
    def wall_time_s(self) -> float:
        """Train + score + test seconds (excludes checkpoint writing)."""
        return self.train_time_s + self.score_time_s + self.test_time_s

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary plus every record."""
        return {
            "labels": self.labels,
            "accuracy": self.accuracy,
            "nll": self.nll,
            "labelled_indices": list(self.labelled_indices),
            "train_time_s": self.train_time_s,
            "score_time_s": self.score_time_s,
            "test_time_s": self.test_time_s,
            "wall_time_s": self.wall_time_s,
            "records": [asdict(r) for r in self.records],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ActiveHistory:
        """Rebuild from ``to_dict()`` output.

        Args:
            data: A dict with ``"records"`` and ``"labelled_indices"``.
        """
        return cls([StepRecord(**r) for r in data["records"]], list(data["labelled_indices"]))
