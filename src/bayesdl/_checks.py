"""Input validation at the public boundary and conversion of user data.

One set of checks, shared by ``fit``, ``predict``, the metrics and the active-learning loop:

* ``check_model_input``: a batch of inputs against what the model's first layer takes
  (``input_spec``), naming the expected shape (a missing batch dimension, the wrong feature
  or channel count, an extra dimension) and casting integer / bool inputs to the model's
  floating dtype (or refusing floats where the model takes token indices);
* ``check_output_memory``: refuses a ``predict`` whose S outputs would not fit in memory;
* ``check_labels``: class labels against the number of examples and classes.
"""

from __future__ import annotations

import math
import os
import weakref
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from bayesdl.inputs import DictDataset, is_dict_input, num_examples
from bayesdl.types import DataLike

_ELEMENTWISE = (
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Tanh, nn.Sigmoid, nn.Softplus, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Tanhshrink,
    nn.Softsign, nn.LogSigmoid,
)  # fmt: skip
"""Modules that keep the shape of their input (skipped when reading a model's layers)."""
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_EMBEDDING = (nn.Embedding, nn.EmbeddingBag)
_CONV_AXES = {1: "(N, C, L)", 2: "(N, C, H, W)", 3: "(N, C, D, H, W)"}


def check_finite(x: Tensor, name: str, rows_dim: int = 0) -> None:
    """Raise ``ValueError`` naming how many rows of ``x`` hold NaN/inf and the first rows.

    Args:
        x: Any tensor; non-floating tensors pass.
        name: The argument's name in the message.
        rows_dim: The dimension whose entries the message counts as rows (the examples).
    """
    if not x.is_floating_point():
        return
    # Fast path, exact: a finite sum means no NaN or inf (they propagate through a sum);
    # only a non-finite sum (a bad value, or an overflow) pays for the element-wise check.
    if math.isfinite(x.sum().item()):  # .item(): no warning for a tensor with grad
        return
    bad = ~torch.isfinite(x)
    if not bad.any():
        return
    bad = bad.movedim(rows_dim, 0)
    rows = bad.reshape(bad.shape[0], -1).any(dim=1).nonzero().flatten()
    n_nan = int(torch.isnan(x).sum())
    n_inf = int(bad.sum()) - n_nan
    kinds = ", ".join(f"{c} {kind}" for c, kind in ((n_nan, "NaN"), (n_inf, "inf")) if c)
    raise ValueError(
        f"{name} contains {kinds} value(s) in {rows.numel()} row(s), first indices "
        f"{rows[:5].tolist()}; remove or fix those examples first."
    )


def check_dict_input(x: dict, name: str = "x") -> dict:
    """Check a dict batch (``bayesdl.inputs``): tensors sharing a non-zero leading
    dimension, the floating ones finite; returns it as a plain dict."""
    bad = [k for k, v in x.items() if not isinstance(v, Tensor)]
    if bad:
        raise TypeError(f"{name} entries {bad} are not tensors; a dict batch holds tensors.")
    if num_examples(x) == 0:
        raise ValueError(f"{name} is empty; pass at least one example.")
    for k, v in x.items():
        if v.is_floating_point():
            check_finite(v, f"{name}[{k!r}]")
    return dict(x)


def check_input(x: Tensor, name: str = "x") -> None:
    """Check that ``x`` is a non-empty, finite tensor with a batch dimension (or a dict
    batch of them, ``check_dict_input``)."""
    if is_dict_input(x):
        check_dict_input(x, name)
        return
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
        if is_dict_input(x):  # keyword inputs: a Dataset of dict examples with "labels"
            check_finite(y, "y")
            return DictDataset(x, y)
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


def _leaves(model: nn.Sequential) -> list[nn.Module]:
    """The modules ``_layers`` lists, without their names (a cheap walk)."""
    out: list[nn.Module] = []
    for child in model:
        if isinstance(child, nn.Sequential):
            out += _leaves(child)
        else:
            out.append(child)
    return out


class ModelStructure(NamedTuple):
    """What a model's layers say about its inputs and outputs (``model_structure``)."""

    input_spec: InputSpec | None
    """What the model takes per example (``input_spec``)."""
    output_size: int | None
    """Values per example in its output (``output_size``)."""
    parameter_owner: tuple[nn.Module, str] | None = None
    """The layer holding the model's first parameter and the parameter's name in it, so
    that ``placement`` reads the model's device and dtype without walking it (``None``:
    no parameter, or one held by an ``nn.Sequential`` itself)."""


_NO_STRUCTURE = ModelStructure(None, None)


def _read_parameter_owner(
    model: nn.Sequential, leaves: list[nn.Module]
) -> tuple[nn.Module, str] | None:
    """``ModelStructure.parameter_owner``, read from the layers (uncached)."""
    containers = [m for m in model.modules() if isinstance(m, nn.Sequential)]
    if any(True for c in containers for _ in c.parameters(recurse=False)):
        return None  # a container's own parameter would come first: let placement walk
    for leaf in leaves:
        for name, _ in leaf.named_parameters():
            return leaf, name
    return None


_STRUCTURE: weakref.WeakKeyDictionary[nn.Module, tuple[list[nn.Module], ModelStructure]]
_STRUCTURE = weakref.WeakKeyDictionary()
"""Per ``nn.Sequential``: its layers when last read, and what they said then."""


def model_structure(model: nn.Module) -> ModelStructure:
    """``input_spec`` and ``output_size`` of ``model``, read again only when its layers changed.

    ``predict`` checks every call's input against the model, and reading the layers with
    their names costs more than a small model's forward pass; so the result is kept per
    ``nn.Sequential`` with the layer objects it was read from (held, so that a new layer
    can never be mistaken for a freed one) and reused while the same layers are in place.

    Args:
        model: The user's network; other than an ``nn.Sequential``, nothing is read.
    """
    if not isinstance(model, nn.Sequential):
        return _NO_STRUCTURE
    leaves = _leaves(model)
    hit = _STRUCTURE.get(model)
    if (
        hit is not None
        and len(hit[0]) == len(leaves)
        and all(a is b for a, b in zip(hit[0], leaves, strict=True))
    ):
        return hit[1]
    found = ModelStructure(
        _read_input_spec(model), _read_output_size(model), _read_parameter_owner(model, leaves)
    )
    _STRUCTURE[model] = (leaves, found)
    return found


def placement(
    model: nn.Module, structure: ModelStructure | None = None
) -> tuple[torch.device, torch.dtype]:
    """``(device, dtype)`` of ``model``'s first parameter (CPU and the default dtype for a
    model without parameters).

    Args:
        model: The user's network.
        structure: ``model_structure(model)``, when the caller has read it already: the
            parameter is then read from its layer, without walking the model.
    """
    owner = None if structure is None else structure.parameter_owner
    if owner is not None:
        try:
            p = owner[0].get_parameter(owner[1])
        except AttributeError:  # the layer's parameter was removed since it was read
            pass
        else:
            return p.device, p.dtype
    for p in model.parameters():
        return p.device, p.dtype
    return torch.device("cpu"), torch.get_default_dtype()


Rows = tuple[int, int, int]
"""``(start, stop, total)``: the rows ``start:stop`` of a global minibatch of ``total``
examples that this process holds (``bayesdl.engine.FitState.rows`` under a process group)."""


def draw_rows(
    kind: str, shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None,
    rows: Rows | None,
) -> Tensor:  # fmt: skip
    """``draw`` of noise with one row per example (first dimension), for a part of a minibatch.

    With ``rows = (start, stop, total)`` the noise of the whole global minibatch of
    ``total`` examples is drawn and rows ``start:stop`` are returned, so every process of a
    process group advances ``generator`` alike and its examples get the noise one process
    would give them (``bayesdl.distributed.ShardedBatches``).

    Args:
        kind: ``"rand"`` or ``"randn"``.
        shape: Shape of this process's noise; ``shape[0]`` is its number of examples.
        like: Tensor whose device and dtype the result takes.
        generator: Random generator, or ``None`` for torch's global RNG.
        rows: This process's rows of the global minibatch; ``None``: the minibatch is whole.

    Raises:
        ValueError: If ``shape[0]`` is not ``stop - start``.
    """
    if rows is None:
        return draw(kind, shape, like, generator)
    start, stop, total = rows
    if not shape or shape[0] != stop - start:
        raise ValueError(
            f"noise of shape {tuple(shape)} has not the {stop - start} rows of this process's "
            f"part {start}:{stop} of the minibatch; the first dimension must be the examples."
        )
    return draw(kind, (total, *shape[1:]), like, generator)[start:stop]


def _layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules an ``nn.Sequential`` applies, in order, nested Sequentials inlined (``[]``
    for any other model: its forward pass is code)."""
    if not isinstance(model, nn.Sequential):
        return []
    out: list[tuple[str, nn.Module]] = []
    for name, child in model.named_children():
        if isinstance(child, nn.Sequential):
            out += [(f"{name}.{n}", m) for n, m in _layers(child)]
        else:
            out.append((name, child))
    return out


@dataclass(frozen=True)
class InputSpec:
    """What a model takes per example, read from its first layer (see ``input_spec``).

    Attributes:
        layer: The first layer's name and type, as ``"'0' (Linear)"``.
        kind: ``"linear"``, ``"conv"`` or ``"embedding"``.
        size: Features per example (``"linear"``), or input channels (``"conv"``).
        flatten: Whether an ``nn.Flatten`` comes first, so each example is flattened to
            ``size`` values.
        conv_dims: Spatial dimensions of a convolution (1, 2 or 3).
        fixed_rank: Whether the model keeps extra dimensions through to its output (only
            element-wise layers and ``nn.Linear`` follow the first layer), so an input with
            more dimensions than the first layer needs gives an output of the wrong rank.
    """

    layer: str
    kind: str
    size: int = 0
    flatten: bool = False
    conv_dims: int = 0
    fixed_rank: bool = False

    @property
    def shape(self) -> str:
        """The expected input shape, e.g. ``"(N, 20)"`` or ``"(N, 3, H, W)"``."""
        if self.kind == "conv":
            return _CONV_AXES[self.conv_dims].replace("C", str(self.size))
        if self.kind == "embedding":
            return "(N, ...) integer token indices"
        if self.flatten:
            return f"(N, ...) with {self.size} values per example"
        return f"(N, {self.size})"


def input_spec(model: nn.Module) -> InputSpec | None:
    """What ``model`` takes per example, where its structure says so, else ``None``.

    Read from an ``nn.Sequential`` (nested ones included) whose first layer, after any
    element-wise layers and an ``nn.Flatten``, is an ``nn.Linear``, an ``nn.Conv1d/2d/3d``
    or an ``nn.Embedding``. Other models return ``None`` (their forward pass is code that
    only running it would reveal). Read once per set of layers (``model_structure``).

    Args:
        model: The user's network.
    """
    return model_structure(model).input_spec


def _read_input_spec(model: nn.Module) -> InputSpec | None:
    """``input_spec``, read from the model's layers (uncached)."""
    layers = _layers(model)
    flatten = False
    for i, (name, m) in enumerate(layers):
        if isinstance(m, nn.Flatten):
            if flatten or m.start_dim != 1 or m.end_dim != -1:
                return None
            flatten = True
            continue
        if isinstance(m, _ELEMENTWISE):
            continue
        layer = f"{name!r} ({type(m).__name__})"
        rest = [r for _, r in layers[i + 1 :]]
        fixed = all(isinstance(r, (nn.Linear, *_ELEMENTWISE)) for r in rest)
        if isinstance(m, nn.Linear) and m.in_features > 0:
            return InputSpec(layer, "linear", m.in_features, flatten, fixed_rank=fixed)
        if isinstance(m, _CONV) and not flatten and m.in_channels > 0:
            dims = len(m.kernel_size)
            return InputSpec(layer, "conv", m.in_channels, conv_dims=dims)
        if isinstance(m, _EMBEDDING) and not flatten:
            return InputSpec(layer, "embedding")
        return None
    return None


def _float_dtype(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.get_default_dtype()


def _check_shape(x: Tensor, spec: InputSpec, name: str) -> None:
    shape = tuple(x.shape)
    where = f"the model's first layer {spec.layer} takes {spec.shape}"
    if spec.kind == "linear":
        f = spec.size
        per_example = math.prod(shape[1:]) if spec.flatten else shape[-1]
        if x.dim() == 1 or (spec.flatten and per_example != f and x.numel() == f):
            if x.numel() == f:
                raise ValueError(
                    f"{name} has shape {shape}: one example without the batch dimension; "
                    f"{where}: use {name}.unsqueeze(0)."
                )
            raise ValueError(f"{name} has shape {shape}, without a batch dimension; {where}.")
        if per_example != f:
            what = "values per example" if spec.flatten else "features"
            raise ValueError(
                f"{name} has {per_example} {what} (shape {shape}) but {where}; pass "
                f"{f} {what} per example."
            )
        if x.dim() > 2 and not spec.flatten and spec.fixed_rank:
            fix = (
                f"{name}.reshape({shape[0]}, {f})"
                if math.prod(shape[1:-1]) == 1
                else f"{name}.reshape(-1, {f}) if the leading dimensions are all examples"
            )
            raise ValueError(
                f"{name} has shape {shape}: {x.dim() - 2} extra dimension(s); {where}: use {fix}."
            )
    elif spec.kind == "conv":
        c, k = spec.size, spec.conv_dims
        if x.dim() == k + 1:
            if shape[0] == c:
                raise ValueError(
                    f"{name} has shape {shape}: one example without the batch dimension; "
                    f"{where}: use {name}.unsqueeze(0)."
                )
            if c == 1:
                raise ValueError(
                    f"{name} has shape {shape}, without the channel dimension; {where}: use "
                    f"{name}.unsqueeze(1)."
                )
        if x.dim() != k + 2:
            raise ValueError(f"{name} has shape {shape} ({x.dim()} dimensions) but {where}.")
        if shape[1] != c:
            hint = f" (channels last? use {name}.movedim(-1, 1))" if shape[-1] == c else ""
            raise ValueError(f"{name} has {shape[1]} channels (shape {shape}) but {where}{hint}.")


def check_model_input(
    model: nn.Module, x: Tensor, name: str = "x", *, structure: ModelStructure | None = None
) -> Tensor:
    """Check a batch of inputs against ``model`` and return it in a dtype the model takes.

    Refuses, with a one-line message naming the expected shape: a non-tensor, an empty
    batch, NaN/inf values, and (where ``input_spec`` reads the model) a missing batch
    dimension, the wrong number of features or channels, and an extra dimension. Integer
    and bool inputs are cast to the model's floating dtype, unless the model takes token
    indices (an ``nn.Embedding``), which must be integers.

    Args:
        model: The user's network.
        x: Inputs, shape (N, ...).
        name: The argument's name in messages.
        structure: ``model_structure(model)``, when the caller has read it already.

    Returns:
        ``x``, cast to the model's floating dtype if it held integers or bools.

    Raises:
        TypeError: If ``x`` is not a real tensor, or holds floats where the model takes
            integer token indices.
        ValueError: If ``x`` is empty, holds NaN/inf, or does not have the model's shape.
    """
    if is_dict_input(x):  # keyword inputs of a Hugging Face model (``bayesdl.hf.adapt``)
        return check_dict_input(x, name)  # type: ignore[return-value]
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}.")
    if x.is_complex():
        raise TypeError(f"{name} must be real, got dtype {x.dtype}.")
    if x.dim() == 0 or x.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}); pass at least one example.")
    spec = (model_structure(model) if structure is None else structure).input_spec
    if spec is not None:
        _check_shape(x, spec, name)
    takes_indices = (
        spec.kind == "embedding"
        if spec is not None
        else any(isinstance(m, _EMBEDDING) for m in model.modules())
    )
    if takes_indices:
        if x.is_floating_point() and spec is not None:
            raise TypeError(
                f"{name} has dtype {x.dtype} but the model's first layer {spec.layer} takes "
                f"integer token indices; use {name}.long()."
            )
        return x
    if not x.is_floating_point():
        x = x.to(_float_dtype(model))
    check_finite(x, name)
    return x


def output_size(model: nn.Module) -> int | None:
    """Values per example in ``model``'s output, where its structure says so (an
    ``nn.Sequential`` ending in an ``nn.Linear``, element-wise layers aside), else ``None``.

    Args:
        model: The user's network.
    """
    return model_structure(model).output_size


def _read_output_size(model: nn.Module) -> int | None:
    """``output_size``, read from the model's layers (uncached)."""
    for _, m in reversed(_layers(model)):
        if isinstance(m, nn.Linear):
            return m.out_features
        if not isinstance(m, _ELEMENTWISE):
            return None
    return None


def available_memory(device: torch.device) -> int | None:
    """Bytes that can still be allocated on ``device`` (``None`` where unknown).

    CUDA: free memory plus what torch's caching allocator holds unused. CPU: the kernel's
    ``MemAvailable``, capped by a cgroup (container) limit when there is one.

    Args:
        device: A CPU or CUDA device.
    """
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    if device.type != "cpu":
        return None
    found: list[int] = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except OSError:
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            pass
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read().strip())
        if limit != "max":
            found.append(int(limit) - used)
    except (OSError, ValueError):
        pass
    return min(found) if found else None


OUTPUT_COPIES = 3
"""Peak copies of the S outputs that ``predict`` holds at once (the chunks, their
concatenation, the Predictive's normalised copy)."""


_ALWAYS_FITS = 2**26  # bytes (64 MiB)


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def check_output_memory(
    samples: int,
    n: int,
    per_example: int | None,
    dtype: torch.dtype,
    device: torch.device,
    available: int | None = None,
) -> None:
    """Refuse a ``predict`` whose S outputs would not fit in memory, before any allocation.

    ``predict`` returns all S outputs, shape (S, N, ...), so ``chunk_size`` bounds only its
    working memory, not the result: the outputs need ``S x N x per_example`` values, and at
    the peak ``OUTPUT_COPIES`` copies of them.

    Args:
        samples: Posterior samples S (after any cap, e.g. a method's ``max_samples``).
        n: Inputs N.
        per_example: Output values per example (``output_size``); ``None``: at least 1.
        dtype: The outputs' dtype.
        device: Where the outputs are made.
        available: Bytes available (``None``: ``available_memory(device)``).

    Raises:
        ValueError: Saying how much the outputs would need and how much is available.
    """
    per = per_example or 1
    need = samples * n * per * dtype.itemsize
    if available is None and need * OUTPUT_COPIES <= _ALWAYS_FITS:
        return  # not worth reading the system's memory for
    have = available_memory(device) if available is None else available
    if have is None or need * OUTPUT_COPIES <= have:
        return
    at_least = "" if per_example else "at least "
    raise ValueError(
        f"predict with samples={samples} on {n} input(s) would need {at_least}{_gb(need)} for "
        f"its (S, N, {per if per_example else '...'}) {str(dtype).replace('torch.', '')} "
        f"outputs ({OUTPUT_COPIES}x that at the peak), but {_gb(have)} is available on "
        f"{device.type}; use fewer samples or predict fewer inputs per call (chunk_size bounds "
        "only the working memory, not the returned outputs)."
    )


def check_labels(
    y: object,
    n: int,
    num_classes: int,
    *,
    name: str = "y",
    regression_hint: bool = False,
    minibatch: bool = False,
) -> Tensor:
    """Check class labels: an integer tensor of shape (N,) with values in [0, C).

    Args:
        y: The labels.
        n: Number of examples N.
        num_classes: Number of classes C.
        name: The argument's name in messages.
        regression_hint: Mention ``bdl.likelihoods.Gaussian()`` when ``y`` holds floats
            (for callers where real-valued targets suggest regression).
        minibatch: ``y`` is a minibatch of the user's data: messages quote shapes per
            example and label values, not the minibatch's size or positions.

    Returns:
        ``y`` as int64 on its device.

    Raises:
        TypeError: If ``y`` is not an integer tensor.
        ValueError: If its shape is not (N,) or a label lies outside [0, C).
    """
    if not isinstance(y, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(y).__name__}.")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        hint = f"; use {name}.long() if it holds whole-number class labels"
        if regression_hint and y.is_floating_point():
            hint += (
                ", or likelihood=bdl.likelihoods.Gaussian() for regression on real-valued targets"
            )
        raise TypeError(
            f"{name} must be an integer tensor of class indices, got dtype {y.dtype}{hint}."
        )
    if y.shape != (n,):
        hint = f"; use {name}.squeeze(-1)" if y.shape == (n, 1) else ""
        if minibatch and y.shape[:1] == (n,):
            raise ValueError(
                f"{name} must hold one class index per example, shape (N,), got shape "
                f"{tuple(y.shape[1:])} per example{hint}."
            )
        raise ValueError(
            f"{name} must have shape (N,) = ({n},), one class index per example, got shape "
            f"{tuple(y.shape)}{hint}."
        )
    y = y.long()
    bad = (y < 0) | (y >= num_classes)
    if bad.any():
        idx = bad.nonzero().flatten()
        where = (
            f"e.g. {sorted(set(y[idx].tolist()))[:5]}"
            if minibatch
            else f"first indices {idx[:5].tolist()} with values {y[idx[:5]].tolist()}"
        )
        raise ValueError(
            f"{name} must hold class indices in [0, {num_classes}) for C={num_classes} "
            f"classes; {'some' if minibatch else idx.numel()} label(s) are out of range, "
            f"{where}."
        )
    return y


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
        raise ValueError(
            f"device {str(dev)!r}: MPS is not available on this machine; use cpu instead."
        )
    return dev
