"""The pool: which of N items are labelled, in which order, and which are not."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["Pool"]

IndexLike = Sequence[int] | np.ndarray | Tensor


def _as_index_array(indices: Any, name: str = "indices") -> np.ndarray:
    if isinstance(indices, Tensor):
        if indices.is_floating_point() or indices.is_complex() or indices.dtype == torch.bool:
            raise TypeError(f"{name} must be integers, got dtype {indices.dtype}.")
        array = indices.detach().cpu().numpy()
    else:
        array = np.asarray(indices)
        if array.size == 0:
            array = array.astype(np.int64)
        if not np.issubdtype(array.dtype, np.integer):
            raise TypeError(f"{name} must be integers, got dtype {array.dtype}.")
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-d, got shape {tuple(array.shape)}.")
    return array.astype(np.int64)


class Pool:
    """Labelled and unlabelled index sets over N items (any dataset of length N).

    The labelled set keeps the order in which items were labelled; the unlabelled set is in
    increasing index order. Both are returned as int64 tensors on the CPU.

    Args:
        n: Number of items in the pool.
        labelled: Items already labelled, in labelling order.

    Raises:
        ValueError: If ``n`` < 1 or ``labelled`` is invalid (see ``label``).

    Examples:
        >>> pool = Pool(5)
        >>> pool.label([3, 1])
        >>> pool.labelled.tolist(), pool.unlabelled.tolist()
        ([3, 1], [0, 2, 4])
    """

    def __init__(self, n: int, labelled: IndexLike = ()) -> None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}.")
        self.n = int(n)
        self._mask = np.zeros(self.n, dtype=bool)
        self._order: list[int] = []
        self.label(labelled)

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"Pool(n={self.n}, labelled={self.num_labelled})"

    @property
    def num_labelled(self) -> int:
        """Number of labelled items."""
        return len(self._order)

    @property
    def num_unlabelled(self) -> int:
        """Number of unlabelled items."""
        return self.n - len(self._order)

    @property
    def labelled(self) -> Tensor:
        """Labelled indices in labelling order, int64, shape (num_labelled,)."""
        return torch.tensor(self._order, dtype=torch.long)

    @property
    def unlabelled(self) -> Tensor:
        """Unlabelled indices in increasing order, int64, shape (num_unlabelled,)."""
        return torch.from_numpy(np.flatnonzero(~self._mask).astype(np.int64))

    @property
    def labelled_mask(self) -> Tensor:
        """Boolean mask of the labelled items, shape (n,)."""
        return torch.from_numpy(self._mask.copy())

    def label(self, indices: IndexLike) -> None:
        """Mark ``indices`` as labelled (appended in the given order).

        Args:
            indices: Item positions in [0, n), shape (k,); a list, numpy array or tensor.

        Raises:
            TypeError: If ``indices`` are not integers.
            ValueError: If an index is out of range, repeated, or already labelled; the
                pool is left unchanged.
        """
        idx = _as_index_array(indices)
        if idx.size == 0:
            return
        out = idx[(idx < 0) | (idx >= self.n)]
        if out.size:
            raise ValueError(
                f"indices out of range for a pool of {self.n}: {out[:10].tolist()}; "
                f"valid positions are 0..{self.n - 1}."
            )
        uniq, counts = np.unique(idx, return_counts=True)
        if (counts > 1).any():
            raise ValueError(f"indices repeat within the call: {uniq[counts > 1][:10].tolist()}.")
        already = idx[self._mask[idx]]
        if already.size:
            raise ValueError(f"indices already labelled: {already[:10].tolist()}.")
        self._mask[idx] = True
        self._order.extend(idx.tolist())

    def unlabelled_subset(
        self, size: int | None, generator: torch.Generator | None = None
    ) -> Tensor:
        """A uniformly random subset of the unlabelled items, in increasing index order.

        Gal et al. (2017) score a random 2,000-point subset of the pool at each step
        instead of the whole pool.

        Args:
            size: Subset size; ``None`` or a size >= the number of unlabelled items returns
                all of them.
            generator: CPU random generator (``None``: torch's global RNG).

        Returns:
            int64 indices, shape (min(size, num_unlabelled),).

        Raises:
            ValueError: If ``size`` < 1 or the pool is fully labelled.
        """
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ValueError(f"size must be a positive integer or None, got {size!r}.")
        unl = self.unlabelled
        if unl.numel() == 0:
            raise ValueError("every item of the pool is labelled; nothing left to score.")
        if size is None or size >= unl.numel():
            return unl
        pick = torch.randperm(unl.numel(), generator=generator)[:size]
        return unl[pick.sort().values]

    def balanced_initial(
        self,
        labels: Tensor | np.ndarray | Sequence[int],
        *,
        per_class: int | None = None,
        total: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Draw a class-balanced set of unlabelled items (it is not labelled here).

        With ``total`` = q * C + r (C classes present among the unlabelled items), every
        class gets q items and r randomly chosen classes one more.

        Args:
            labels: Class of every item, shape (n,), integers.
            per_class: Items per class; give this or ``total``.
            total: Total number of items; give this or ``per_class``.
            generator: CPU random generator (``None``: torch's global RNG).

        Returns:
            int64 indices, shape (total,), grouped by class in increasing class order.

        Raises:
            ValueError: If both or neither of ``per_class`` / ``total`` are given, a count is
                not positive, ``labels`` has the wrong length, or a class has too few items.
        """
        y = _as_index_array(labels, "labels")
        if y.shape[0] != self.n:
            raise ValueError(f"labels must have shape ({self.n},), got {tuple(y.shape)}.")
        if (per_class is None) == (total is None):
            raise ValueError("give exactly one of per_class and total.")
        count = per_class if per_class is not None else total
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            which = "per_class" if per_class is not None else "total"
            raise ValueError(f"{which} must be a positive integer, got {count!r}.")
        free = ~self._mask
        classes = np.unique(y[free])
        if classes.size == 0:
            raise ValueError("every item of the pool is labelled; nothing left to draw.")
        if per_class is not None:
            want = np.full(classes.size, per_class)
        else:
            q, r = divmod(int(total), classes.size)
            want = np.full(classes.size, q)
            extra = torch.randperm(classes.size, generator=generator)[:r].numpy()
            want[extra] += 1
        chosen = []
        for cls, k in zip(classes.tolist(), want.tolist(), strict=True):
            members = np.flatnonzero(free & (y == cls))
            if members.size < k:
                raise ValueError(
                    f"class {cls} has {members.size} unlabelled item(s), fewer than the {k} "
                    "requested; lower per_class/total."
                )
            pick = torch.randperm(members.size, generator=generator)[:k].numpy()
            chosen.append(np.sort(members[pick]))
        return torch.from_numpy(np.concatenate(chosen).astype(np.int64))

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state: ``{"n": n, "labelled": [...]}`` (labelling order)."""
        return {"n": self.n, "labelled": list(self._order)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Pool:
        """Rebuild a pool from ``state_dict()`` output.

        Args:
            state: A dict with keys ``"n"`` and ``"labelled"``.
        """
        return cls(int(state["n"]), state["labelled"])
