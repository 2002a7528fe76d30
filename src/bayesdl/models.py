"""Reference architectures used by the CLI, the benchmarks and the docs."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable

from torch import nn

__all__ = ["INITS", "gal_cnn", "mlp", "model_factory"]


INITS = ("torch", "glorot")
"""Weight initialisations ``gal_cnn`` offers (see its ``init`` argument)."""


def check_dropout_pair(dropout: Iterable[float]) -> tuple[float, float]:
    """``gal_cnn``'s ``dropout`` checked: two rates in [0, 1), as a tuple.

    Raises:
        ValueError: Naming the value, if it is not two rates in [0, 1).
    """
    pair = tuple(dropout)
    if len(pair) != 2 or not all(0 <= p < 1 for p in pair):
        raise ValueError(f"dropout must be two rates in [0, 1), got {dropout!r}.")
    return pair[0], pair[1]


def gal_cnn(
    num_classes: int = 10,
    in_channels: int = 1,
    image_size: int = 28,
    init: str = "torch",
    dropout: tuple[float, float] = (0.25, 0.5),
) -> nn.Sequential:
    """The MNIST CNN of Gal, Islam & Ghahramani (2017), "Deep Bayesian Active Learning".

    conv 32 4x4 - relu - conv 32 4x4 - relu - maxpool 2 - dropout 0.25 - dense 128 - relu -
    dropout 0.5 - dense ``num_classes``.

    Args:
        num_classes: Output classes.
        in_channels: Input channels.
        image_size: Side of the square input images (28 for MNIST, 8 for digits).
        init: ``"torch"`` (PyTorch's default initialisation) or ``"glorot"``: Glorot-uniform
            weights and zero biases, the Keras defaults that Gal et al. trained with.
        dropout: Rates of the two dropout layers, (after the convolutions, before the
            output layer); Gal et al.'s (0.25, 0.5) by default.

    Raises:
        ValueError: On an unknown ``init`` or a dropout rate outside [0, 1).
    """
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {list(INITS)}.")
    p_conv, p_dense = check_dropout_pair(dropout)
    side = (image_size - 6) // 2
    net = nn.Sequential(
        nn.Conv2d(in_channels, 32, 4), nn.ReLU(), nn.Conv2d(32, 32, 4), nn.ReLU(),
        nn.MaxPool2d(2), nn.Dropout(p_conv), nn.Flatten(),
        nn.Linear(32 * side * side, 128), nn.ReLU(), nn.Dropout(p_dense),
        nn.Linear(128, num_classes),
    )  # fmt: skip
    if init == "glorot":
        for layer in net:
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)
    return net


def mlp(
    in_features: int,
    out_features: int,
    hidden: tuple[int, ...] = (1200, 1200),
    dropout: float = 0.5,
) -> nn.Sequential:
    """Flatten, then Linear-ReLU-Dropout blocks of widths ``hidden``, then a Linear output.

    Args:
        in_features: Input size after flattening.
        out_features: Output size.
        hidden: Hidden layer widths.
        dropout: Dropout rate after each hidden layer (0 for none).
    """
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


def model_factory(spec: str) -> Callable[..., nn.Module]:
    """The function a ``"package.module:function"`` string names (``bayesdl evaluate
    --model``), e.g. one building a Hugging Face model from a config and wrapping it with
    ``bayesdl.hf.adapt``. It is called as ``function(num_classes, in_channels, image_size)``
    and must return an ``nn.Module``.

    Args:
        spec: ``"module:function"``; the module must be importable (installed, or on
            ``PYTHONPATH``).

    Raises:
        ValueError: If ``spec`` is not ``"module:function"``, the module cannot be imported
            or has no such callable.
    """
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise ValueError(f"model must be 'module:function', got {spec!r}.")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(
            f"model {spec!r}: cannot import {module_name!r} ({err}); put it on PYTHONPATH."
        ) from err
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ValueError(f"model {spec!r}: {module_name!r} has no function {name!r}.")
    return fn
