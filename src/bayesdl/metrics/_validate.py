"""Input validation shared by the metric functions (private).

Every public metric validates its arguments here, so the error messages are the same
everywhere: they name the argument, the expected and the actual shape or dtype, and
how to fix the input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from bayesdl._checks import check_finite
from bayesdl._checks import check_labels as check_class_labels

PROB_SUM_ATOL = 1e-3
"""How far a row of ``probs`` may sum from 1 before it is rejected."""

_MAX_INDICES_SHOWN = 5


def check_tensor(x: object, name: str) -> Tensor:
    """Raise ``TypeError`` unless ``x`` is a tensor; return it."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}.")
    return x


def _check_rows(x: Tensor, name: str, shape_text: str) -> None:
    if x.shape[0] == 0 or x.numel() == 0:
        raise ValueError(
            f"{name} is empty (expected shape {shape_text}, got {tuple(x.shape)}); "
            "pass at least one example."
        )


def check_probs(probs: object) -> Tensor:
    """Validate class probabilities of shape (N, C) and return them as float64.

    Raises:
        TypeError: If ``probs`` is not a floating-point tensor.
        ValueError: If the shape is not (N, C), it is empty, it has NaN/inf, a value lies
            outside [0, 1], or a row does not sum to 1 within ``PROB_SUM_ATOL``.
    """
    probs = check_tensor(probs, "probs")
    if probs.dim() != 2:
        raise ValueError(
            f"probs must have shape (N, C), got shape {tuple(probs.shape)}; pass "
            "model-averaged class probabilities, one row per example."
        )
    _check_rows(probs, "probs", "(N, C)")
    if not probs.is_floating_point():
        raise TypeError(f"probs must be a floating-point tensor, got dtype {probs.dtype}.")
    check_finite(probs, "probs")
    probs = probs.to(torch.float64)
    if (probs < 0).any() or (probs > 1 + PROB_SUM_ATOL).any():
        rows = ((probs < 0) | (probs > 1 + PROB_SUM_ATOL)).any(dim=1).nonzero().flatten()
        raise ValueError(
            f"probs must lie in [0, 1]; {rows.numel()} row(s) do not, first indices "
            f"{rows[:_MAX_INDICES_SHOWN].tolist()}. Pass probabilities, not logits "
            "(apply softmax first)."
        )
    err = (probs.sum(dim=1) - 1).abs()
    if (err > PROB_SUM_ATOL).any():
        rows = (err > PROB_SUM_ATOL).nonzero().flatten()
        raise ValueError(
            f"each row of probs must sum to 1 (within {PROB_SUM_ATOL}); {rows.numel()} "
            f"row(s) do not, first indices {rows[:_MAX_INDICES_SHOWN].tolist()} with "
            f"sums {probs.sum(dim=1)[rows[:_MAX_INDICES_SHOWN]].tolist()}. Pass "
            "probabilities, not logits (apply softmax first)."
        )
    return probs


def check_labels(y: object, n: int, n_classes: int, device: torch.device) -> Tensor:
    """Validate integer class labels of shape (N,) in [0, C) and return them as int64 on
    ``device`` (``bayesdl._checks.check_labels``, shared with the methods).

    Raises:
        TypeError: If ``y`` is not an integer tensor.
        ValueError: If the shape is not (N,) or a label lies outside [0, C).
    """
    return check_class_labels(y, n, n_classes).to(device)


def check_scores(score: object, name: str, n: int | None = None) -> Tensor:
    """Validate a finite, non-empty 1-D score tensor and return it as float64.

    Args:
        score: The tensor to check.
        name: Argument name used in error messages.
        n: Required length, or ``None`` for any non-zero length.

    Raises:
        TypeError: If ``score`` is not a real tensor.
        ValueError: If it is not 1-D, it is empty, its length is not ``n``, or it has
            NaN/inf.
    """
    score = check_tensor(score, name)
    if score.is_complex() or score.dtype == torch.bool:
        raise TypeError(f"{name} must be a real-valued tensor, got dtype {score.dtype}.")
    expected = "(N,)" if n is None else f"(N,) = ({n},)"
    if score.dim() != 1:
        raise ValueError(
            f"{name} must have shape {expected}, got shape {tuple(score.shape)}; "
            "pass one score per example."
        )
    if score.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape (0,)); pass at least one score.")
    if n is not None and score.shape[0] != n:
        raise ValueError(
            f"{name} must have shape {expected} to match probs, got shape {tuple(score.shape)}."
        )
    check_finite(score, name)
    return score.to(torch.float64)


def check_same_shape(x: Tensor, name: str, ref: Tensor, ref_name: str) -> None:
    """Raise ``ValueError`` unless ``x`` has the shape of ``ref``."""
    if x.shape != ref.shape:
        raise ValueError(
            f"{name} must have the same shape as {ref_name}, expected "
            f"{tuple(ref.shape)}, got {tuple(x.shape)}."
        )


def check_regression(x: object, name: str) -> Tensor:
    """Validate a finite, non-empty (N,) or (N, D) float tensor and return it as float64."""
    x = check_tensor(x, name)
    if x.dim() not in (1, 2):
        raise ValueError(f"{name} must have shape (N, D) or (N,), got shape {tuple(x.shape)}.")
    _check_rows(x, name, "(N, D)")
    if x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"{name} must be a real-valued tensor, got dtype {x.dtype}.")
    check_finite(x, name)
    return x.to(torch.float64)


def check_n_bins(n_bins: object) -> int:
    """Raise ``ValueError`` unless ``n_bins`` is an int >= 1; return it."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}.")
    return n_bins


def check_fraction(value: object, name: str, *, low_closed: bool, high_closed: bool) -> float:
    """Raise ``ValueError`` unless ``value`` is a real number in the given interval."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}.")
    value = float(value)
    low_ok = value >= 0 if low_closed else value > 0
    high_ok = value <= 1 if high_closed else value < 1
    if math.isnan(value) or not (low_ok and high_ok):
        interval = f"{'[' if low_closed else '('}0, 1{']' if high_closed else ')'}"
        raise ValueError(f"{name} must lie in {interval}, got {value!r}.")
    return value


def as_fraction_tensor(fractions: Sequence[float] | Tensor, name: str) -> Tensor:
    """Validate a non-empty 1-D collection of fractions in [0, 1); return float64 on CPU."""
    if isinstance(fractions, Tensor):
        f = fractions.detach().to(device="cpu", dtype=torch.float64)
    else:
        try:
            f = torch.as_tensor(list(fractions), dtype=torch.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} must be a sequence of numbers in [0, 1).") from err
    if f.dim() != 1 or f.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {tuple(f.shape)}.")
    bad = torch.isnan(f) | (f < 0) | (f >= 1)
    if bad.any():
        idx = bad.nonzero().flatten()
        raise ValueError(
            f"{name} must lie in [0, 1) (at least one example must be kept); values "
            f"{f[idx[:_MAX_INDICES_SHOWN]].tolist()} at indices "
            f"{idx[:_MAX_INDICES_SHOWN].tolist()} do not."
        )
    return f
