"""Split a network into a deterministic prefix (computed once) and a stochastic tail."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn
from torch.func import functional_call, vmap


class _Captured(Exception):
    def __init__(self, args: tuple[Any, ...]) -> None:
        self.args_ = args


class Through:
    """Prefix of a split ``nn.Sequential``: ``x -> (front(x),)``, or ``(x,)`` without a front.

    A class rather than a closure, so that a method holding it can be pickled
    (``torch.save``) and deep-copied.

    Args:
        front: The deterministic leading layers, or ``None`` for none.
    """

    def __init__(self, front: nn.Module | None) -> None:
        self.front = front

    def __call__(self, x: Tensor) -> tuple[Any, ...]:
        return (x,) if self.front is None else (self.front(x),)


class HeadInput:
    """Prefix of a model split at a named head: runs the model until ``tail`` is called and
    returns the positional arguments ``tail`` receives (captured by a forward pre-hook).

    Args:
        model: The whole network.
        tail: The head submodule.
        head: Its dotted name (for error messages).
    """

    def __init__(self, model: nn.Module, tail: nn.Module, head: str) -> None:
        self.model, self.tail, self.head = model, tail, head

    def __call__(self, x: Tensor) -> tuple[Any, ...]:
        def grab(_module: nn.Module, args: tuple[Any, ...]) -> None:
            raise _Captured(args)

        handle = self.tail.register_forward_pre_hook(grab)
        try:
            self.model(x)
        except _Captured as c:
            return c.args_
        finally:
            handle.remove()
        raise ValueError(f"head={self.head!r} was never called in the model's forward pass.")


@dataclass
class Split:
    """``model(x) == tail(*prefix(x))`` with every stochastic module inside ``tail``.

    Attributes:
        prefix: Deterministic part; maps the input to the positional arguments of ``tail``.
        tail: The module holding all randomness.
        tail_prefix: Name of ``tail`` inside the model ("" when names are unchanged).
    """

    prefix: Callable[[Tensor], tuple[Any, ...]]
    tail: nn.Module
    tail_prefix: str

    def tail_name(self, name: str) -> str:
        """Translate a parameter name of the model into one of ``tail``."""
        return name[len(self.tail_prefix) + 1 :] if self.tail_prefix else name


def split_model(
    model: nn.Module, is_stochastic: Callable[[nn.Module], bool], head: str | None = None
) -> Split:
    """Find where randomness starts.

    For an ``nn.Sequential`` the tail starts at the first child for which ``is_stochastic``
    holds for it or any of its submodules. For other models ``head`` names the submodule
    whose output is the model's output; its input is captured once with a forward pre-hook
    and only ``head`` is re-run per sample. Without either, the whole model is the tail.

    Args:
        model: The user's network.
        is_stochastic: Whether a module introduces randomness.
        head: Dotted name of the stochastic head of a non-Sequential model.

    Raises:
        ValueError: If ``head`` is not a submodule, or a module outside it is stochastic.
    """
    if head is not None:
        try:
            tail = model.get_submodule(head)
        except AttributeError as err:
            names = [n for n, _ in model.named_children()]
            raise ValueError(
                f"head={head!r} is not a submodule of the model; children: {names}."
            ) from err
        outside = [
            n
            for n, m in model.named_modules()
            if is_stochastic(m) and not (n == head or n.startswith(head + "."))
        ]
        if outside:
            raise ValueError(
                f"modules {outside} are stochastic but outside head={head!r}; name a head "
                "that contains every stochastic layer."
            )
        return Split(HeadInput(model, tail, head), tail, head)

    if isinstance(model, nn.Sequential):
        for i, child in enumerate(model):
            if any(is_stochastic(m) for m in child.modules()):
                if i == 0:
                    break
                items = list(model.named_children())
                front = nn.Sequential(OrderedDict(items[:i]))
                return Split(Through(front), nn.Sequential(OrderedDict(items[i:])), "")
    return Split(Through(None), model, "")


def stacked_forward(split: Split, args: tuple[Any, ...], params: dict[str, Tensor]) -> Tensor:
    """Outputs of ``split.tail`` for S parameter sets at once (``vmap`` over them).

    Args:
        split: Where the tail starts.
        args: The prefix's outputs for the inputs (computed once, shared by all S sets).
        params: Model parameter name -> tensor with a leading dimension S; parameters not
            given keep the tail's own values.

    Returns:
        Tensor of shape (S, N, ...).
    """

    def one(p: dict[str, Tensor], *a: Tensor) -> Tensor:
        return functional_call(split.tail, p, a)

    run = vmap(one, in_dims=(0,) + (None,) * len(args))
    return run({split.tail_name(k): v for k, v in params.items()}, *args)
