"""Save and load fitted methods: safetensors for tensors, JSON metadata in its header.

Nothing is ever unpickled. A file records the method's registry name, its
hyperparameters, the likelihood and prior configs, the network's dropout rates, every
tensor's name and shape and the library version, each metadata field and each tensor with
its own SHA-256 digest, and one SHA-256 over all of them. ``load`` refuses a file whose
digest is missing, naming the metadata field or the tensor that was altered, and a file
that belongs to another model.

Files of format 1 (bayesdl before the metadata digest) still load: their tensors are
checked, and a warning says that their metadata is not covered.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from bayesdl import likelihoods, priors
from bayesdl.methods.base import BaseMethod, get_method
from bayesdl.methods.mc_dropout import is_dropout

__all__ = ["save", "load", "read_metadata"]

_KEY = "bayesdl"
_PRIOR = "prior."
FORMAT = 2
"""Version of the file layout that ``save`` writes (1: digest over the tensors only)."""


def _version() -> str:
    from bayesdl import __version__

    return __version__


def _tensor_bytes(t: torch.Tensor) -> bytes:
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def _tensor_digest(name: str, t: torch.Tensor) -> str:
    return hashlib.sha256(
        name.encode() + str(t.dtype).encode() + str(tuple(t.shape)).encode() + _tensor_bytes(t)
    ).hexdigest()


def _payload_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """Format 1's digest: every tensor's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(_tensor_bytes(t))
    return h.hexdigest()


def _json_digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _dropout_rates(model: nn.Module) -> dict[str, float]:
    """Rate of every dropout layer, by module name: part of the posterior for MC dropout, and
    not among the weights."""
    return {name: float(m.p) for name, m in model.named_modules() if is_dropout(m)}


def save(method: BaseMethod, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write a fitted method to ``path`` (a ``.safetensors`` file), atomically.

    Args:
        method: Any bayesdl method.
        path: Destination file.
        overwrite: Replace an existing file; refused by default.

    Returns:
        The path written.

    Raises:
        FileExistsError: If ``path`` exists and ``overwrite`` is False.
    """
    if not isinstance(method, BaseMethod):
        hint = ""
        if isinstance(method, nn.Module):
            hint = (
                f"; wrap the {type(method).__name__} in a method first, e.g. "
                "method = bdl.MAP(net); method.fit(data); bdl.save(method, path)"
            )
        raise TypeError(
            f"save takes a bayesdl method (bdl.MAP, bdl.MCDropout, ...), got "
            f"{type(method).__name__}{hint}."
        )
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it.")
    tensors = {k: v.detach().cpu().contiguous() for k, v in method.state_dict().items()}
    prior = getattr(method, "prior", None)
    prior_cfg = None
    if prior is not None:
        prior_cfg = prior.config()
        extra = prior.tensors()
        tensors.update({_PRIOR + k: v.detach().cpu().contiguous() for k, v in extra.items()})
    meta: dict[str, Any] = {
        "format": FORMAT,
        "version": _version(),
        "method": method.cli_name,
        "hparams": method.hparams,
        "likelihood": method.likelihood.config(),
        "prior": prior_cfg,
        "dropout": _dropout_rates(method.model),
        "shapes": {k: list(v.shape) for k, v in tensors.items()},
    }
    meta = json.loads(json.dumps(meta))  # digest exactly what load will read back
    meta["digests"] = {
        "fields": {k: _json_digest(v) for k, v in meta.items()},
        "tensors": {k: _tensor_digest(k, v) for k, v in tensors.items()},
    }
    meta["sha256"] = _json_digest(meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={_KEY: json.dumps(meta)})
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON metadata of a saved file, without loading its tensors (nor verifying it).

    Args:
        path: A file written by ``save``.

    Raises:
        ValueError: If the file is not a safetensors file written by ``save``, or was
            written by a newer bayesdl.
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(_KEY)
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path} is not a readable safetensors file: {err}") from err
    if raw is None:
        raise ValueError(f"{path} is a safetensors file but not one written by bayesdl.save.")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: corrupt bayesdl metadata ({err}).") from err
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: corrupt bayesdl metadata (not a JSON object).")
    if isinstance(meta.get("format"), int) and meta["format"] > FORMAT:
        raise ValueError(
            f"{path} has file format {meta['format']}, newer than this bayesdl reads "
            f"({FORMAT}); upgrade bayesdl to load it."
        )
    return meta


def _first_change(
    current: Mapping[str, Any], recorded: Mapping[str, str], digest: Callable[[str, Any], str]
) -> tuple[str, str] | None:
    """The first key, in sorted order, that was ``"removed"``, ``"added"`` or ``"altered"``
    (its ``digest(key, value)`` differs from the recorded one), or ``None``."""
    for key in sorted(set(recorded) | set(current)):
        if key not in current:
            return key, "removed"
        if key not in recorded:
            return key, "added"
        if digest(key, current[key]) != recorded[key]:
            return key, "altered"
    return None


def _verify(path: Path, meta: dict[str, Any], tensors: Mapping[str, torch.Tensor]) -> None:
    """Raise ``ValueError`` naming what was altered unless ``meta`` and ``tensors`` are what
    ``save`` wrote (format 2), or the tensors match a format-1 file's digest (with a warning).
    """
    if "sha256" not in meta:
        raise ValueError(
            f"{path} has no digest (its metadata lacks 'sha256'): it was edited or not written "
            "by bayesdl.save; refusing to load it."
        )
    if meta.get("format", 1) == 1 and "digests" not in meta:
        if _payload_digest(tensors) != meta["sha256"]:
            raise ValueError(
                f"{path}: tensor data does not match its recorded SHA-256; file altered."
            )
        warnings.warn(
            f"{path} predates file format {FORMAT}: its tensors are verified but its metadata "
            "is not covered by a digest; re-save it with bdl.save to protect it.",
            stacklevel=3,
        )
        return
    table = meta.get("digests")
    if not isinstance(table, dict) or not {"fields", "tensors"} <= set(table):
        raise ValueError(f"{path}: its table of digests is missing or altered; file altered.")
    fields = {k: v for k, v in meta.items() if k not in ("digests", "sha256")}
    change = _first_change(fields, table["fields"], lambda _key, value: _json_digest(value))
    if change is not None:
        key, how = change
        shown = json.dumps(fields.get(key))
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        now = f" (now {shown}; it does not match its digest)" if how == "altered" else ""
        raise ValueError(f"{path}: metadata field {key!r} was {how}{now}; refusing to load it.")
    change = _first_change(tensors, table["tensors"], _tensor_digest)
    if change is not None:
        name, how = change
        data = " (its data does not match its digest)" if how == "altered" else ""
        raise ValueError(f"{path}: tensor {name!r} was {how}{data}; refusing to load it.")
    if _json_digest({k: v for k, v in meta.items() if k != "sha256"}) != meta["sha256"]:
        raise ValueError(f"{path}: its table of digests was altered; file altered.")


def load(path: str | os.PathLike, model: nn.Module, **overrides: Any) -> BaseMethod:
    """Rebuild a saved method around ``model`` (same architecture as when it was saved).

    Args:
        path: A file written by ``save``.
        model: A freshly constructed network of the same architecture; its weights are
            replaced by the saved ones.
        **overrides: Constructor arguments that cannot be stored (none are needed for the
            built-in methods).

    Returns:
        The method, on the model's device, in eval mode.

    Raises:
        ValueError: If the file is corrupt or tampered with, or does not match ``model``
            (its tensors' names and shapes, or its dropout rates).
        TypeError: If ``model`` is a method rather than the bare network.
    """
    if isinstance(model, BaseMethod):
        raise TypeError(
            f"load takes the bare network, not a {type(model).__name__}: pass a freshly built "
            f"nn.Module (the file records which method to rebuild around it)."
        )
    path = Path(path)
    meta = read_metadata(path)
    try:
        tensors = load_file(str(path))
    except SafetensorError as err:
        raise ValueError(f"{path} is corrupt: {err}") from err
    _verify(path, meta, tensors)
    rates = _dropout_rates(model)
    if "dropout" in meta and meta["dropout"] != rates:  # format-1 files may lack the key
        raise ValueError(
            f"{path} was saved from a model with dropout rates {meta['dropout']}, but this model "
            f"has {rates}; build it with the saved rates (e.g. gal_cnn(dropout=...), "
            f"bayesdl evaluate --dropout)."
        )
    prior_tensors = {
        k[len(_PRIOR) :]: tensors.pop(k) for k in list(tensors) if k.startswith(_PRIOR)
    }
    prior_cfg = meta.get("prior")
    kwargs: dict[str, Any] = dict(meta.get("hparams", {}))
    kwargs["likelihood"] = likelihoods.from_config(meta["likelihood"])
    if prior_cfg is not None:
        kwargs["prior"] = priors.from_config(prior_cfg, prior_tensors)
    kwargs.update(overrides)
    method = get_method(meta["method"])(model, **kwargs)
    expected = {k: tuple(v.shape) for k, v in method.state_dict().items()}
    saved = {k: tuple(v.shape) for k, v in tensors.items()}
    if expected != saved:
        missing = sorted(set(expected) - set(saved))[:5]
        extra = sorted(set(saved) - set(expected))[:5]
        wrong = [k for k in expected if k in saved and expected[k] != saved[k]][:5]
        raise ValueError(
            f"{path} does not match this model: missing {missing}, unexpected {extra}, "
            f"shape mismatch {[(k, saved[k], expected[k]) for k in wrong]}."
        )
    method.load_state_dict(tensors)
    method.to(method.device)
    method.eval()
    return method
