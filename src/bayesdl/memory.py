"""Memory you can see before it is allocated: ``method.memory_estimate(...)`` and budgets.

``BaseMethod.memory_estimate(batch_size=, samples=)`` adds up, from shapes alone, the bytes
a method holds and the peak bytes its ``fit`` and ``predict`` add on top:

* ``model``: the network's parameters and buffers (already allocated by the user);
* ``state``: the posterior's own tensors (VI's standard deviations, SWAG's moments, a
  sample bank, Laplace's factors), allocated when the method is built;
* ``fit``: the transient peak of ``fit``: gradients and Adam's two moments of the trainable
  parameters, the activations kept for the backward pass (``activation_bytes``, when an
  example input is given), and a method's own work (Laplace's curvature accumulation and
  eigendecomposition: ``BaseMethod.fit_memory``);
* ``predict``: the S outputs, the parameter draws of one vectorised chunk and its
  activations.

``fit(..., max_memory=)`` and ``predict(..., max_memory=)`` compare the estimate with a
budget in bytes and raise a one-line ``ValueError`` naming the number and the knobs that
lower it, before anything is allocated. ``benchmarks/memory_subset.py`` measures the
estimate against the peak resident memory of a 10^8-parameter transformer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from bayesdl.inputs import Inputs, map_tensors, take

__all__ = [
    "MemoryEstimate", "tensor_bytes", "activation_bytes", "format_bytes", "check_budget",
    "eigh_bytes",
]  # fmt: skip


def tensor_bytes(tensors: Iterable[Tensor]) -> int:
    """Bytes of the given tensors' elements (shared storage counted once per tensor).

    Args:
        tensors: Tensors (parameters, buffers).
    """
    return sum(t.numel() * t.element_size() for t in tensors)


def eigh_bytes(n: int, itemsize: int) -> int:
    """Peak bytes ``torch.linalg.eigh`` allocates for an n x n matrix on a CPU: the
    eigenvector copy (n^2), LAPACK ``syevd``'s workspace (``1 + 6 n + 2 n^2``) and the
    eigenvalues (n).

    Args:
        n: Matrix size.
        itemsize: Bytes per element.
    """
    return (n * n + 1 + 6 * n + 2 * n * n + n) * itemsize


def format_bytes(n: float) -> str:
    """``n`` bytes in binary units, e.g. ``"1.5 GiB"``.

    Args:
        n: Bytes.
    """
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


@torch.no_grad()
def activation_bytes(
    model: nn.Module, example: Inputs, start: set[int] | None = None
) -> tuple[int, int]:
    """Bytes of the leaf modules' outputs for one example, and the model's outputs per
    example (K), from one forward pass of a single example.

    The outputs of the leaf modules are what autograd keeps for the backward pass (about
    one tensor per layer; an output that is its input's storage, as dropout in evaluation
    mode or an identity returns, is counted once), so ``batch_size`` times this is the
    activation memory of a training step.

    Args:
        model: The network.
        example: Inputs holding at least one example (the first is used).
        start: Ids of modules: count only from the first of them to run on (a graph that
            starts there); ``None``: every module.

    Returns:
        ``(bytes per example, outputs per example)``.
    """
    one = take(example, slice(0, 1))
    total = 0
    seen: set[int] = set()
    counting = start is None

    def count(m: nn.Module, _i: tuple, out: object) -> None:
        nonlocal counting
        counting = counting or id(m) in (start or ())
        if counting:
            map_tensors(out, _add)

    def _add(t: Tensor) -> Tensor:
        nonlocal total
        ptr = t.untyped_storage().data_ptr()
        if ptr not in seen:
            seen.add(ptr)
            total += t.numel() * t.element_size()
        return t

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(count) for m in leaves]
    was = model.training
    try:
        model.eval()
        out = model(one)
    finally:
        model.train(was)
        for h in handles:
            h.remove()
    return total, int(out[0].numel()) if isinstance(out, Tensor) else 1


@dataclass(frozen=True)
class MemoryEstimate:
    """What ``BaseMethod.memory_estimate`` reports, in bytes.

    Attributes:
        model: The network's parameters and buffers.
        state: The posterior's own tensors.
        fit: Transient peak of ``fit`` on top of ``model + state``.
        predict: Transient peak of ``predict`` on top of ``model + state``.
        parts: The terms behind ``fit`` and ``predict``, name -> bytes (``"fit/grads"``,
            ``"fit/curvature"``, ``"predict/outputs"``, ...).
        activations_known: Whether an example input gave the activation terms (without
            one they are left out).
    """

    model: int
    state: int
    fit: int
    predict: int
    parts: dict[str, int]
    activations_known: bool

    @property
    def fit_total(self) -> int:
        """``model + state + fit``: the peak of ``fit``."""
        return self.model + self.state + self.fit

    @property
    def predict_total(self) -> int:
        """``model + state + predict``: the peak of ``predict``."""
        return self.model + self.state + self.predict

    def __str__(self) -> str:
        rows = [f"model {format_bytes(self.model)}", f"state {format_bytes(self.state)}",
                f"fit +{format_bytes(self.fit)}", f"predict +{format_bytes(self.predict)}"]  # fmt: skip
        return "MemoryEstimate(" + ", ".join(rows) + ")"


def check_budget(needed: int, max_memory: int | float | None, what: str, knobs: str) -> None:
    """Raise ``MemoryError`` when ``needed`` bytes exceed ``max_memory``.

    Args:
        needed: Estimated peak bytes.
        max_memory: The budget in bytes (``None``: no budget).
        what: The call, named in the message (``"Laplace.fit"``).
        knobs: The arguments that lower the estimate, named in the message.

    Raises:
        ValueError: If ``max_memory`` is not a positive number, or the estimate exceeds it.
    """
    if max_memory is None:
        return
    if isinstance(max_memory, bool) or not isinstance(max_memory, (int, float)) or not max_memory > 0:
        raise ValueError(f"max_memory must be a positive number of bytes, got {max_memory!r}.")
    if needed > max_memory:
        raise ValueError(
            f"{what} needs about {format_bytes(needed)} ({needed:,} bytes), over "
            f"max_memory={format_bytes(max_memory)}; lower it with {knobs}."
        )
