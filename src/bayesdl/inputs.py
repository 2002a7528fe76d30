"""Model inputs as Hugging Face users have them: a tensor, or a dict of tensors.

A batch of inputs is either a tensor of shape (N, ...) or a mapping of names to tensors that
share the leading dimension N (``{"input_ids": ..., "attention_mask": ...}``), which the
model receives as keyword arguments (see ``bayesdl.hf.adapt``). The functions here are the
one place that knows both kinds: the training engine, ``predict`` and Laplace's curvature
use them to count, move, slice and split inputs. A dict batch from a ``DataLoader`` carries
its targets under ``"labels"`` (``split_labels``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = [
    "Inputs", "LABELS", "is_dict_input", "num_examples", "to_device", "split_inputs",
    "take", "cat_inputs", "split_labels", "map_tensors", "DictDataset",
]  # fmt: skip

Inputs = Tensor | Mapping[str, Tensor]
"""A batch of inputs: a tensor (N, ...) or a dict of tensors sharing the leading N."""

LABELS = "labels"
"""The key of the targets in a dict batch (as Hugging Face ``Trainer`` batches have it)."""


def is_dict_input(x: Any) -> bool:
    """Whether ``x`` is a dict batch (a mapping of names to tensors).

    Args:
        x: A batch of inputs.
    """
    return isinstance(x, Mapping)


def map_tensors(x: Any, fn: Any) -> Any:
    """``fn`` applied to every tensor of ``x`` (a tensor, a mapping or a tuple of them).

    Args:
        x: Inputs.
        fn: Function from a tensor to a tensor.
    """
    if isinstance(x, Tensor):
        return fn(x)
    if isinstance(x, Mapping):
        return {k: map_tensors(v, fn) for k, v in x.items()}
    if isinstance(x, tuple):
        return tuple(map_tensors(v, fn) for v in x)
    return x


def num_examples(x: Inputs) -> int:
    """The number of examples N in a batch of inputs (the tensors' leading dimension).

    Args:
        x: A tensor or a dict of tensors.

    Raises:
        ValueError: For an empty dict, or tensors with different leading dimensions.
    """
    if not is_dict_input(x):
        return x.shape[0]
    sizes = {k: v.shape[0] for k, v in x.items() if isinstance(v, Tensor) and v.dim() > 0}
    if not sizes:
        raise ValueError("a dict batch must hold at least one tensor with a batch dimension.")
    if len(set(sizes.values())) > 1:
        raise ValueError(f"the tensors of a dict batch differ in their first dimension: {sizes}.")
    return next(iter(sizes.values()))


def to_device(x: Inputs, device: torch.device, dtype: torch.dtype) -> Inputs:
    """``x`` on ``device``; floating tensors in ``dtype``, integer ones (token ids, masks)
    keep theirs.

    Args:
        x: A tensor or a dict of tensors.
        device: Target device.
        dtype: Floating dtype of the model.
    """
    if isinstance(x, Tensor):  # the common case, without building a closure
        return x.to(device, dtype if x.is_floating_point() else None)
    return map_tensors(x, lambda t: t.to(device, dtype if t.is_floating_point() else None))


def take(x: Inputs, index: Tensor | slice) -> Inputs:
    """The examples ``index`` of a batch (rows of each tensor).

    Args:
        x: A tensor or a dict of tensors.
        index: Indices or a slice along the first dimension.
    """
    return map_tensors(x, lambda t: t[index])


def split_inputs(x: Inputs, size: int) -> list[Inputs]:
    """Consecutive blocks of at most ``size`` examples.

    Args:
        x: A tensor or a dict of tensors.
        size: Examples per block.
    """
    n = num_examples(x)
    return [take(x, slice(i, i + size)) for i in range(0, n, size)]


def cat_inputs(parts: list[Inputs]) -> Inputs:
    """Blocks of inputs joined along the first dimension (the inverse of ``split_inputs``).

    Args:
        parts: Tensors, or dicts with the same keys.
    """
    if not is_dict_input(parts[0]):
        return torch.cat(parts)  # type: ignore[arg-type]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}  # type: ignore[index]


def split_labels(batch: Any) -> tuple[Inputs, Tensor]:
    """``(inputs, targets)`` of one ``DataLoader`` batch: a pair ``(x, y)``, or a dict
    whose ``"labels"`` are the targets and whose other entries are the inputs.

    Args:
        batch: What the loader yields.

    Raises:
        ValueError: For a dict batch without ``"labels"``, or any other structure.
    """
    if is_dict_input(batch):
        if LABELS not in batch:
            raise ValueError(
                f"a dict batch needs its targets under {LABELS!r}; it has {sorted(batch)}."
            )
        return {k: v for k, v in batch.items() if k != LABELS}, batch[LABELS]
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    raise ValueError(
        "a DataLoader batch must be a pair (x, y) or a dict with 'labels', got "
        f"{type(batch).__name__}."
    )


class DictDataset(Dataset):
    """A dict batch of inputs and its targets as a ``Dataset`` of examples: item ``i`` is
    ``{name: x[name][i], ..., "labels": y[i]}``, what a Hugging Face ``DataLoader`` yields
    (``fit((x, y))`` with a dict ``x`` goes through it).

    Args:
        x: A dict of tensors sharing the leading dimension N.
        y: Targets, shape (N, ...).

    Raises:
        ValueError: If ``x`` already holds ``"labels"`` or ``y`` has another length.
    """

    def __init__(self, x: Mapping[str, Tensor], y: Tensor) -> None:
        if LABELS in x:
            raise ValueError(f"x must not hold {LABELS!r} beside y; pass the targets once.")
        n = num_examples(x)
        if y.shape[0] != n:
            raise ValueError(
                f"X and y have different lengths: X has {n} rows, y has {y.shape[0]}."
            )
        self.x, self.y = dict(x), y

    def __len__(self) -> int:
        return self.y.shape[0]

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {**{k: v[i] for k, v in self.x.items()}, LABELS: self.y[i]}
