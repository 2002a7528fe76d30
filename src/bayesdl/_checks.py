"""Input validation at the public boundary and conversion of user data."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, TensorDataset

from bayesdl.types import DataLike


def check_finite(x: Tensor, name: str) -> None:
    """Raise ``ValueError`` naming how many rows of ``x`` hold NaN/inf and the first rows."""
    if not x.is_floating_point():
        return
    bad = ~torch.isfinite(x)
    if not bad.any():
        return
    rows = bad.reshape(x.shape[0], -1).any(dim=1).nonzero().flatten()
    n_nan = int(torch.isnan(x).sum())
    n_inf = int(bad.sum()) - n_nan
    kinds = ", ".join(f"{c} {kind}" for c, kind in ((n_nan, "NaN"), (n_inf, "inf")) if c)
    raise ValueError(
        f"{name} contains {kinds} value(s) in {rows.numel()} row(s), first indices "
        f"{rows[:5].tolist()}; remove or fix those examples first."
    )


def check_input(x: Tensor, name: str = "x") -> None:
    """Check that ``x`` is a non-empty, finite tensor with a batch dimension."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}.")
    if x.dim() == 0 or x.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}); pass at least one example.")
    check_finite(x, name)


def check_positive_int(value: int, name: str) -> None:
    """Raise ``ValueError`` unless ``value`` is an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")


def check_amp(amp: torch.dtype | None) -> None:
    """Raise ``ValueError`` unless ``amp`` (a mixed-precision dtype) is None or bfloat16."""
    if amp not in (None, torch.bfloat16):
        raise ValueError(f"amp must be None or torch.bfloat16, got {amp!r}.")


def to_dataset(data: DataLike) -> Dataset:
    """Turn ``(X, y)`` into a ``TensorDataset`` after validation; pass Datasets through."""
    if isinstance(data, tuple):
        if len(data) != 2:
            raise ValueError(f"data tuple must be (X, y), got {len(data)} elements.")
        x, y = data
        check_input(x, "X")
        if not isinstance(y, Tensor):
            raise TypeError(f"y must be a torch.Tensor, got {type(y).__name__}.")
        if y.shape[0] != x.shape[0]:
            raise ValueError(
                f"X and y have different lengths: X has {x.shape[0]} rows, y has {y.shape[0]}."
            )
        check_finite(y, "y")
        return TensorDataset(x, y)
    if isinstance(data, Dataset):
        if len(data) == 0:  # type: ignore[arg-type]
            raise ValueError("data is an empty Dataset; pass at least one example.")
        return data
    raise TypeError(
        f"data must be a DataLoader, a Dataset or a tuple (X, y), got {type(data).__name__}."
    )


def to_loader(
    data: DataLike, batch_size: int, *, shuffle: bool, generator: torch.Generator | None = None
) -> tuple[DataLoader, int]:
    """Return a ``DataLoader`` over ``data`` and the number of examples it holds."""
    if isinstance(data, DataLoader):
        n = len(data.dataset)  # type: ignore[arg-type]
        if n == 0:
            raise ValueError("data is an empty DataLoader; pass at least one example.")
        return data, n
    check_positive_int(batch_size, "batch_size")
    dataset = to_dataset(data)
    n = len(dataset)  # type: ignore[arg-type]
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator), n


def draw(
    kind: str, shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None
) -> Tensor:
    """``torch.rand``/``torch.randn`` on ``generator``'s device, moved to ``like``'s.

    A CPU generator then also drives a model on CUDA (the draws are made on the CPU).

    Args:
        kind: ``"rand"`` (uniform on [0, 1)) or ``"randn"`` (standard normal).
        shape: Shape of the draw.
        like: Tensor whose device and dtype the result takes.
        generator: Random generator, or ``None`` for torch's global RNG.
    """
    fn = torch.rand if kind == "rand" else torch.randn
    if generator is None:
        return fn(shape, device=like.device, dtype=like.dtype)
    out = fn(shape, generator=generator, device=generator.device, dtype=like.dtype)
    return out.to(like.device)


def check_device(device: str | torch.device) -> torch.device:
    """The torch device named by ``device``, refused if this machine cannot use it.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``, ... or a ``torch.device``.

    Returns:
        The ``torch.device``.

    Raises:
        ValueError: If the name is not a device, or CUDA / MPS (or that CUDA index) is not
            available here; the message says which devices are.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {device!r} is not a torch device; use cpu or cuda.") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(
                f"device {str(dev)!r}: CUDA is not available on this machine (torch "
                f"{torch.__version__}, no usable GPU); use cpu instead."
            )
        if dev.index is not None and dev.index >= count:
            raise ValueError(
                f"device {str(dev)!r}: this machine has {count} CUDA device(s), "
                f"cuda:0 to cuda:{count - 1}."
            )
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {str(dev)!r}: MPS is not available on this machine; use cpu instead.")
    return dev
