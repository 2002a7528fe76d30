"""The weight layers a weight-space posterior can cover, and how to choose among them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

from torch import Tensor, nn
from torch.nn import functional as F

__all__ = [
    "WEIGHT_LAYERS", "Subset", "layer_op", "select_layers", "match_layers", "select_params",
    "is_lora_name", "subset_hparam", "select_named",
]  # fmt: skip

WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
"""Layer types whose weight and bias a method may put a posterior on."""

Subset = (
    Literal["all", "last_layer", "lora"] | Sequence[str] | Callable[[str, nn.Parameter], bool]
)
"""Which parameters a method's posterior covers (the rest are point estimates, or fixed
where frozen): ``"all"``; the ``"last_layer"`` (the last ``nn.Linear``/``nn.Conv``);
``"lora"`` (every LoRA adapter parameter of a ``peft`` model); a list of module names
(prefixes) or parameter names; or a predicate ``(name, parameter) -> bool``."""


def layer_op(module: nn.Module, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """Apply ``module``'s operation (with its stride, padding, ...) with other weights.

    Args:
        module: A ``Linear`` or ``ConvNd`` layer.
        x: Its input.
        weight: Weight to use instead of the module's.
        bias: Bias to use instead of the module's (``None``: no bias).
    """
    if isinstance(module, nn.Linear):
        return F.linear(x, weight, bias)
    return module._conv_forward(x, weight, bias)  # type: ignore[operator]


def select_layers(model: nn.Module, subset: Subset, who: str) -> dict[str, nn.Module]:
    """The ``WEIGHT_LAYERS`` of ``model`` chosen by ``subset``, name -> module, model order.

    Args:
        model: The user's network.
        subset: ``"all"``, ``"last_layer"`` or a list of module names (or prefixes).
        who: The method asking, named in errors.

    Raises:
        ValueError: If the model has no such layer, or an entry of ``subset`` names none.
    """
    layers = {n: m for n, m in model.named_modules() if isinstance(m, WEIGHT_LAYERS)}
    if not layers:
        raise ValueError(f"{who} found no nn.Linear or nn.Conv layers in the model.")
    if subset == "all":
        return layers
    if subset == "last_layer":
        name = list(layers)[-1]
        return {name: layers[name]}
    if subset == "lora" or callable(subset):
        chosen = set(map(id, select_params(model, subset, who).values()))
        found = {
            n: m
            for n, m in layers.items()
            if any(id(p) in chosen for p in m.parameters(recurse=False))
        }
        if not found:
            raise ValueError(
                f"{who}: subset={_show(subset)} selects no parameter of an nn.Linear/Conv "
                f"layer; layers: {_head(layers)}."
            )
        return found
    if isinstance(subset, str):
        raise ValueError(
            f"subset must be 'all', 'last_layer', 'lora', a list of module names or a "
            f"predicate (name, parameter) -> bool, got {subset!r}."
        )
    return match_layers(layers, subset, "subset", "Linear/Conv")


def is_lora_name(name: str) -> bool:
    """Whether the parameter ``name`` belongs to a ``peft`` LoRA adapter (a dotted part
    starting with ``lora_``: ``lora_A``, ``lora_B``, ``lora_embedding_A``, ...).

    Args:
        name: A parameter name of the model.
    """
    return any(part.startswith("lora_") for part in name.split("."))


def _show(subset: object) -> str:
    return "<predicate>" if callable(subset) else repr(subset)


def _head(names: Sequence[str] | dict, k: int = 8) -> str:
    names = list(names)
    return str(names[:k])[:-1] + (f", ... ({len(names)} in all)]" if len(names) > k else "]")


def select_params(model: nn.Module, subset: Subset, who: str) -> dict[str, nn.Parameter]:
    """The parameters of ``model`` chosen by ``subset``, name -> parameter, in model order.

    The one resolution of ``subset=`` behind every method: ``"all"`` (every parameter,
    frozen ones included), ``"last_layer"`` (the weight and bias of the last
    ``nn.Linear``/``nn.Conv``), ``"lora"`` (the LoRA adapters of a ``peft`` model, see
    ``is_lora_name``), a list of module names or prefixes (or parameter names), or a
    predicate called as ``subset(name, parameter)``.

    Args:
        model: The user's network.
        subset: Which parameters (see ``Subset``).
        who: The method asking, named in errors.

    Raises:
        ValueError: If the model has no parameters, or ``subset`` selects none of them
            (an entry of a list that names nothing, ``"lora"`` on a model without LoRA
            adapters, a predicate that is false everywhere).
        TypeError: If ``subset`` is none of the accepted kinds.
    """
    params = dict(model.named_parameters())
    if not params:
        raise ValueError(f"{who} needs a model with parameters, got one with none.")
    if subset == "all":
        return params
    if subset == "last_layer":
        name, layer = list(select_layers(model, "last_layer", who).items())[-1]
        prefix = f"{name}." if name else ""
        return {prefix + n: p for n, p in layer.named_parameters(recurse=False)}
    if subset == "lora" or callable(subset):
        return select_named(params, subset, who, "parameter")
    if isinstance(subset, str) or not isinstance(subset, Sequence):
        raise TypeError(
            "subset must be 'all', 'last_layer', 'lora', a list of module or parameter "
            f"names, or a predicate (name, parameter) -> bool, got {subset!r}."
        )
    chosen = match_layers(params, subset, "subset", "parameter or module")  # type: ignore[arg-type]
    return {n: p for n, p in params.items() if n in chosen}  # model order


def select_named(found: dict, subset: Subset, who: str, kind: str) -> dict:
    """The entries of ``found`` (name -> parameter or module) chosen by ``subset="lora"``
    (names with a ``lora_`` part) or a predicate ``subset(name, entry)``, in their order.

    Args:
        found: Candidates, name -> parameter or module.
        subset: ``"lora"`` or a predicate.
        who: The method asking, named in errors.
        kind: What the candidates are, named in errors (``"parameter"``, ``"dropout layer"``).

    Raises:
        ValueError: If nothing is chosen.
    """
    if subset == "lora":
        chosen = {n: v for n, v in found.items() if is_lora_name(n)}
        if not chosen:
            raise ValueError(
                f"{who}: subset='lora' found no LoRA adapter {kind}s (names with a 'lora_' "
                "part); wrap the model with peft.get_peft_model(model, LoraConfig(...)) "
                "first, or choose another subset."
            )
        return chosen
    chosen = {n: v for n, v in found.items() if subset(n, v)}  # type: ignore[operator]
    if not chosen:
        raise ValueError(
            f"{who}: the subset predicate is false for every {kind} of the model; "
            f"{kind}s: {_head(found)}."
        )
    return chosen


def match_layers(
    layers: dict[str, nn.Module], prefixes: Sequence[str], argument: str, kinds: str
) -> dict[str, nn.Module]:
    """The ``layers`` named by ``prefixes`` (a module name or a prefix of one), in the order
    of ``prefixes``.

    Args:
        layers: Candidate layers, name -> module.
        prefixes: Module names or prefixes.
        argument: The user's argument, named in errors (``"subset"``).
        kinds: The layer types ``layers`` holds, named in errors (``"Linear/Conv"``).

    Raises:
        ValueError: If an entry names no layer.
    """
    chosen = {}
    for prefix in prefixes:
        found = {n: m for n, m in layers.items() if n == prefix or n.startswith(prefix + ".")}
        if not found:
            raise ValueError(
                f"{argument} entry {prefix!r} names no {kinds} layer; layers: {list(layers)}."
            )
        chosen.update(found)
    return chosen


def subset_hparam(subset: Subset, names: Sequence[str]) -> str | list[str]:
    """``subset`` as a JSON-serialisable hyperparameter (``bayesdl.save``): a string as it
    is, a list of names as a list, a predicate as the names it resolved to (``names``),
    so that a loaded method covers the same parameters.

    Args:
        subset: The method's ``subset`` argument.
        names: The module or parameter names it resolved to.
    """
    if isinstance(subset, str):
        return subset
    return list(names) if callable(subset) else list(subset)
