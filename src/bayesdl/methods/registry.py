"""The registry of posterior approximations, by their command-line names."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from bayesdl.methods.base import BaseMethod

__all__ = ["register_method", "get_method", "method_names"]

_REGISTRY: dict[str, type[BaseMethod]] = {}
M = TypeVar("M", bound="type[BaseMethod]")


def register_method(name: str) -> Callable[[M], M]:
    """Class decorator adding a method to the registry under its CLI name.

    Args:
        name: Short kebab-case name used by the CLI and by ``bayesdl.save`` files.
    """

    def wrap(cls: M) -> M:
        cls.cli_name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def get_method(name: str) -> type[BaseMethod]:
    """Look a method class up by its CLI name (``"vi"``, ``"mc-dropout"``, ...).

    Args:
        name: A registered name (see ``method_names``).

    Raises:
        ValueError: For an unknown name, listing the known ones.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; choose one of {method_names()}.")
    return _REGISTRY[name]


def method_names(*, dropout: bool | None = None) -> list[str]:
    """CLI names of every registered method.

    Args:
        dropout: ``True``: only methods that need ``nn.Dropout`` layers in the model
            (``BaseMethod.needs_dropout``); ``False``: only those that do not; ``None``: all.
    """
    return sorted(n for n, c in _REGISTRY.items() if dropout is None or c.needs_dropout == dropout)
