"""Hugging Face models in bayesdl: dict inputs in, one tensor of outputs out.

Every bayesdl method expects ``model(x)`` to return a tensor (N, K). A ``transformers`` model
takes keyword arguments (``input_ids``, ``attention_mask``, ``pixel_values``) and returns a
``ModelOutput``. ``adapt(model, output="logits")`` bridges the two with two hooks on the
model itself, so it stays the user's module (parameter names unchanged, so ``subset=``
names and ``peft``'s ``"lora"`` adapters are found as they are):

* a forward pre-hook calls ``model(**x)`` when the model is given one dict ``x``;
* a forward hook replaces the output by ``output(out)``: a key / attribute name
  (``"logits"``) or a callable, e.g. ``next_token(position=-1, tokens=[...])`` for the
  next-token distribution of a causal language model at the answer position.

Nothing here imports ``transformers`` or ``peft`` (the ``hf`` extra): any module that takes
keyword inputs and returns a mapping or an object with the named field works.

Examples:
    >>> import torch, bayesdl as bdl
    >>> from transformers import BertConfig, BertForSequenceClassification
    >>> cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
    ...                  num_attention_heads=2, intermediate_size=32, num_labels=3)
    >>> net = bdl.hf.adapt(BertForSequenceClassification(cfg), output="logits")
    >>> x = {"input_ids": torch.randint(0, 50, (4, 7)),
    ...      "attention_mask": torch.ones(4, 7, dtype=torch.long)}
    >>> net(x).shape
    torch.Size([4, 3])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["OutputSpec", "adapt", "unadapt", "next_token", "select_output"]

OutputSpec = str | Callable[[Any], Tensor]
"""Which tensor of a model's output: a key / attribute name (``"logits"``) or a callable
from the output to a tensor (N, K)."""

_HANDLES = "_bayesdl_adapter_handles"


def select_output(out: Any, output: OutputSpec) -> Tensor:
    """The tensor ``output`` names in a model output (a ``ModelOutput``, dict or object).

    Args:
        out: What the model returned.
        output: A key / attribute name or a callable (see ``OutputSpec``).

    Raises:
        ValueError: If the output has no such field.
    """
    if callable(output):
        return output(out)
    if isinstance(out, Tensor):
        return out
    if isinstance(out, Mapping) and output in out:
        return out[output]
    value = getattr(out, output, None)
    if value is None:
        keys = list(out.keys()) if isinstance(out, Mapping) else type(out).__name__
        raise ValueError(f"the model's output has no {output!r}; it has {keys}; pass output=.")
    return value


def adapt(model: nn.Module, output: OutputSpec = "logits") -> nn.Module:
    """Let ``model`` take a dict of inputs and return one tensor; returns ``model`` itself.

    Adds a forward pre-hook (a single dict argument becomes keyword arguments) and a
    forward hook (the output becomes ``select_output(out, output)``). Calling ``adapt``
    again replaces the hooks; ``unadapt`` removes them.

    Args:
        model: A ``transformers`` model (or any module taking keyword inputs).
        output: Which tensor of the output the methods see: ``"logits"`` (default), another
            field name, or a callable such as ``next_token(...)``.

    Returns:
        The same module, hooked.

    Raises:
        TypeError: If ``model`` is not an ``nn.Module`` or ``output`` is neither a string
            nor callable.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    if not (isinstance(output, str) or callable(output)):
        raise TypeError(f"output must be a field name or a callable, got {output!r}.")
    unadapt(model)

    def unpack(_module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        if len(args) == 1 and isinstance(args[0], Mapping) and not kwargs:
            return (), dict(args[0])
        return None

    def pick(_module: nn.Module, _args: tuple, _kwargs: dict, out: Any) -> Tensor:
        return select_output(out, output)

    handles = [
        model.register_forward_pre_hook(unpack, with_kwargs=True),
        model.register_forward_hook(pick, with_kwargs=True),
    ]
    object.__setattr__(model, _HANDLES, handles)
    return model


def unadapt(model: nn.Module) -> nn.Module:
    """Remove the hooks of ``adapt`` (nothing happens to a model without them).

    Args:
        model: A module, adapted or not.

    Returns:
        The same module.
    """
    for handle in getattr(model, _HANDLES, ()):
        handle.remove()
    if hasattr(model, _HANDLES):
        object.__delattr__(model, _HANDLES)
    return model


def next_token(
    position: int = -1, tokens: Sequence[int] | Tensor | None = None, field: str = "logits"
) -> Callable[[Any], Tensor]:
    """Output spec for a causal language model: next-token logits at one position.

    With ``tokens`` (e.g. the ids of the answers "A", "B", "C", "D" of a multiple-choice
    prompt, as Laplace-LoRA does) only those logits are kept, so the classes are the
    answers. Pad prompts on the left so that ``position=-1`` is every prompt's last token.

    Args:
        position: Sequence position whose next-token distribution is predicted.
        tokens: Vocabulary ids kept as the classes; ``None``: the whole vocabulary.
        field: The output field holding the logits (B, T, V).

    Returns:
        A callable for ``adapt(model, output=...)`` mapping the output to (B, K).
    """
    index = None if tokens is None else torch.as_tensor(tokens, dtype=torch.long)

    def pick(out: Any) -> Tensor:
        logits = select_output(out, field)[:, position]
        return logits if index is None else logits[..., index.to(logits.device)]

    return pick
