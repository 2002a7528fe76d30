"""Save and load fitted methods: safetensors for tensors, JSON metadata in its header.

Nothing is ever unpickled. A file records the method's registry name, its
hyperparameters, the likelihood and prior configs, the network's dropout rates, every
tensor's name and shape, the library version and a SHA-256 digest of the tensor payload,
so that ``load`` can refuse a file that was tampered with or that belongs to another model.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from bayesdl import likelihoods, priors
from bayesdl.methods.base import BaseMethod, get_method
from bayesdl.methods.mc_dropout import _is_dropout

__all__ = ["save", "load"]

_KEY = "bayesdl"
_PRIOR_LOC = "prior.loc."


def _version() -> str:
    from bayesdl import __version__

    return __version__


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def _dropout_rates(model: nn.Module) -> dict[str, float]:
    """Rate of every dropout layer, by module name: part of the posterior for MC dropout, and
    not among the weights."""
    return {name: float(m.p) for name, m in model.named_modules() if _is_dropout(m)}


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
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it.")
    tensors = {k: v.detach().cpu().contiguous() for k, v in method.state_dict().items()}
    prior = getattr(method, "prior", None)
    prior_cfg = None
    if prior is not None:
        if isinstance(prior, priors.Centered):
            prior_cfg = {"name": prior.name, "scale": priors.Normal.config(prior)["scale"]}
            tensors.update({_PRIOR_LOC + k: v.cpu().contiguous() for k, v in prior.loc.items()})
        else:
            prior_cfg = prior.config()
    meta = {
        "format": 1,
        "version": _version(),
        "method": method.cli_name,
        "hparams": method.hparams,
        "likelihood": method.likelihood.config(),
        "prior": prior_cfg,
        "dropout": _dropout_rates(method.model),
        "shapes": {k: list(v.shape) for k, v in tensors.items()},
        "sha256": _digest(tensors),
    }
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
    """The JSON metadata of a saved file, without loading its tensors."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(_KEY)
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path} is not a readable safetensors file: {err}") from err
    if raw is None:
        raise ValueError(f"{path} is a safetensors file but not one written by bayesdl.save.")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: corrupt bayesdl metadata ({err}).") from err


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
    meta = read_metadata(path)
    rates = _dropout_rates(model)
    if "dropout" in meta and meta["dropout"] != rates:  # older files lack the key
        raise ValueError(
            f"{path} was saved from a model with dropout rates {meta['dropout']}, but this model "
            f"has {rates}; build it with the saved rates (e.g. gal_cnn(dropout=...), "
            f"bayesdl evaluate --dropout)."
        )
    try:
        tensors = load_file(str(path))
    except SafetensorError as err:
        raise ValueError(f"{path} is corrupt: {err}") from err
    if _digest(tensors) != meta.get("sha256"):
        raise ValueError(f"{path}: tensor data does not match its recorded SHA-256; file altered.")
    loc = {k[len(_PRIOR_LOC) :]: tensors.pop(k) for k in list(tensors) if k.startswith(_PRIOR_LOC)}
    prior_cfg = meta.get("prior")
    kwargs: dict[str, Any] = dict(meta.get("hparams", {}))
    kwargs["likelihood"] = likelihoods.from_config(meta["likelihood"])
    if prior_cfg is not None:
        if prior_cfg["name"] == priors.Centered.name:
            kwargs["prior"] = priors.Centered(loc, prior_cfg["scale"])
        else:
            kwargs["prior"] = priors.from_config(prior_cfg)
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
