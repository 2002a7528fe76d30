"""Memory you can see before it is allocated: ``method.memory_estimate(...)`` and budgets.

``BaseMethod.memory_estimate(batch_size=, samples=)`` adds up the bytes a method holds and
the peak bytes its ``fit`` and ``predict`` add on top:

* ``model``: the network's parameters and buffers (already allocated by the user);
* ``state``: the posterior's own tensors (VI's standard deviations, SWAG's moments, a
  sample bank, Laplace's factors), allocated when the method is built;
* ``fit``: the transient peak of ``fit``: gradients and Adam's two moments of the trainable
  parameters, the traced peak of one step (``BaseMethod.fit_trace``: activations, what
  autograd saves, the gradients of activations, Jacobians; when an example input is given),
  and a method's own work (Laplace's curvature accumulation and eigendecomposition:
  ``BaseMethod.fit_memory``);
* ``predict``: the S outputs, the parameter draws of one vectorised chunk and its
  activations (``activation_bytes``).

States and curvature come from shapes. What depends on the network's code is traced:
``traced_peak`` runs a step under a ``TorchDispatchMode`` that adds up the bytes every ATen
operator allocates (forward and backward) and subtracts them when they are freed, the
accounting of ``torch.cuda.max_memory_allocated`` on any device; ``batch_peak`` runs it on
one and two (or two and four) real examples and extrapolates linearly to the batch size.
(The ``meta`` device would allocate nothing, but Hugging Face models branch on the values
of their attention masks, which meta tensors do not have.)

``fit(..., max_memory=)`` and ``predict(..., max_memory=)`` compare the estimate with a
budget in bytes and raise a one-line ``ValueError`` naming the number and the knobs that
lower it, before anything is allocated. ``benchmarks/memory_subset.py`` measures the
estimate against the peak resident memory of a 10^8-parameter transformer."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

from bayesdl.inputs import Inputs, num_examples, take

__all__ = [
    "MemoryEstimate", "tensor_bytes", "activation_bytes", "format_bytes", "check_budget",
    "eigh_bytes", "traced_peak", "batch_peak",
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


def _storages(x: Any) -> list[Any]:
    """The untyped storages of the tensors in ``x`` (nested tuples, lists and dicts)."""
    if isinstance(x, Tensor):
        return [x.untyped_storage()]
    if isinstance(x, Mapping):
        x = list(x.values())
    if isinstance(x, (tuple, list)):
        return [s for v in x for s in _storages(v)]
    return []


class _Allocations(TorchDispatchMode):
    """Bytes of the tensors that ATen operators allocate while the mode is on: the live
    total (a storage is subtracted when it is freed) and its peak.

    Every operator, forward or backward (autograd runs its backward operators through the
    same dispatcher), goes through ``__torch_dispatch__``; an output whose storage is one of
    the operator's inputs' (a view, an in-place result) allocates nothing. This is the
    accounting of PyTorch's own caching allocator (``torch.cuda.max_memory_allocated``),
    done for any device.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, int] = {}
        self.current = 0
        self.peak = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: Any = None):
        out = func(*args, **(kwargs or {}))
        inputs = {id(s) for s in _storages((args, kwargs))}
        for st in _storages(out):
            key = id(st)
            if key in inputs or key in self.live:
                continue
            self.live[key] = st.nbytes()
            self.current += self.live[key]
            self.peak = max(self.peak, self.current)
            weakref.finalize(st, self._free, key)
        return out

    def _free(self, key: int) -> None:
        self.current -= self.live.pop(key, 0)


def traced_peak(step: Callable[[], Any]) -> int:
    """Peak bytes of the tensors ``step()`` allocates while it runs (dispatcher-level
    accounting, as ``torch.cuda.max_memory_allocated`` does on a GPU, for any device).

    What existed before (parameters, inputs) is not counted; what ``step`` returns is freed
    when it returns. Work outside ATen operators (LAPACK workspaces, Python objects) is not
    seen.

    Args:
        step: The computation, without arguments.
    """
    mode = _Allocations()
    with mode:
        step()
    return mode.peak


def _examples(example: Inputs, n: int) -> Inputs:
    """``n`` examples: the first ``n`` of ``example``, its examples repeated if it has fewer."""
    have = num_examples(example)
    return take(example, torch.arange(n) % have if n > have else slice(0, n))


def batch_peak(step: Callable[[Inputs], Any], example: Inputs, batch_size: int) -> int:
    """Peak bytes of ``step(x)`` on a batch of ``batch_size`` examples like ``example``,
    without running it on that many: ``traced_peak`` on the batch itself up to two
    examples, else on two and on four examples and extrapolated linearly to ``batch_size``.

    Activations, autograd's saved tensors, gradients of activations and Jacobians grow
    with the batch; parameter gradients and other per-call buffers do not, so two sizes
    give both parts. Tracing allocates at most four examples' worth, whatever
    ``batch_size`` is.

    Args:
        step: One step of the computation on a batch of inputs (e.g. a forward and a
            backward pass).
        example: Inputs holding at least one example (repeated to fill a batch).
        batch_size: Examples per batch to estimate.
    """
    if batch_size <= 2:
        return traced_peak(lambda: step(_examples(example, batch_size)))
    p2 = traced_peak(lambda: step(_examples(example, 2)))
    p4 = traced_peak(lambda: step(_examples(example, 4)))
    return max(p2 + (batch_size - 2) * (p4 - p2) // 2, 0)


def activation_bytes(model: nn.Module, example: Inputs) -> tuple[int, int]:
    """Bytes per example of the peak of live tensors in one forward pass without gradients
    (from ``batch_peak`` at two and four examples; what ``predict`` holds per input and
    draw), and the model's outputs per example (K).

    Args:
        model: The network.
        example: Inputs holding at least one example.

    Returns:
        ``(bytes per example, outputs per example)``.
    """
    was = model.training
    try:
        model.eval()
        with torch.no_grad():
            per = max(batch_peak(model, example, 4) - batch_peak(model, example, 2), 0) // 2
            out = model(take(example, slice(0, 1)))
    finally:
        model.train(was)
    return per, int(out[0].numel()) if isinstance(out, Tensor) else 1


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
