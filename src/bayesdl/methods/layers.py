"""The weight layers a weight-space posterior can cover, and how to choose among them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["WEIGHT_LAYERS", "Subset", "layer_op", "select_layers", "match_layers"]

WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
"""Layer types whose weight and bias a method may put a posterior on."""

Subset = Literal["all", "last_layer"] | Sequence[str]
"""Which layers: ``"all"``, the ``"last_layer"``, or a list of module names (prefixes)."""


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
    if isinstance(subset, str):
        raise ValueError(
            f"subset must be 'all', 'last_layer' or a list of module names, got {subset!r}."
        )
    return match_layers(layers, subset, "subset", "Linear/Conv")


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
