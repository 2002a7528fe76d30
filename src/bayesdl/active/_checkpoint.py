"""Crash-safe checkpoints of the active-learning loop.

A checkpoint directory holds ``state.json`` (config, labelled indices, oracle labels,
history, RNG states) and the fitted method's tensors in ``model-<step>.safetensors``.
Every file is written atomically: to a temporary file in the same directory, flushed and
fsynced, then ``os.replace``d over the target and the directory fsynced. The weights file
is written first under a new name and only then does ``state.json`` point at it (with its
SHA-256), so a kill at any moment leaves a consistent pair: the previous checkpoint or the
new one. Old weight files are removed after the new state is in place.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

STATE = "state.json"
FORMAT = 1
_WEIGHTS_PREFIX = "model-"
_WEIGHTS_SUFFIX = ".safetensors"


def weights_name(step: int) -> str:
    """File name of the weights written after ``step``."""
    return f"{_WEIGHTS_PREFIX}{step:05d}{_WEIGHTS_SUFFIX}"


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a directory
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` atomically (temp file, flush, fsync, rename)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def encode_generator(generator: torch.Generator) -> str:
    """A generator's state as base64 text."""
    return base64.b64encode(generator.get_state().numpy().tobytes()).decode("ascii")


def decode_generator(text: str, generator: torch.Generator) -> torch.Generator:
    """Restore ``generator`` to the state encoded by ``encode_generator``."""
    state = torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)
    generator.set_state(state.clone())
    return generator


def has_checkpoint(directory: Path) -> bool:
    """Whether ``directory`` holds a loop checkpoint."""
    return (directory / STATE).is_file()


def clear(directory: Path) -> None:
    """Remove this module's files (state, weights, stale temporaries) from ``directory``."""
    for p in directory.iterdir():
        name = p.name
        ours = (
            name == STATE
            or (name.startswith(_WEIGHTS_PREFIX) and name.endswith(_WEIGHTS_SUFFIX))
            or (name.startswith((f".{STATE}.", f".{_WEIGHTS_PREFIX}")) and name.endswith(".tmp"))
        )
        if ours and p.is_file():
            p.unlink()


def save(
    directory: Path, step: int, state: dict[str, Any], tensors: dict[str, torch.Tensor]
) -> None:
    """Write the weights, then ``state.json`` pointing at them, then drop old weights."""
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    payload = save_safetensors(tensors, metadata={"bayesdl-active-step": str(step)})
    name = weights_name(step)
    atomic_write(directory / name, payload)
    state = dict(state, weights={"file": name, "sha256": hashlib.sha256(payload).hexdigest()})
    atomic_write(directory / STATE, json.dumps(state, indent=1).encode())
    for p in directory.glob(f"{_WEIGHTS_PREFIX}*{_WEIGHTS_SUFFIX}"):
        if p.name != name:
            with contextlib.suppress(OSError):
                p.unlink()


def read_state(directory: Path) -> dict[str, Any]:
    """Read and check ``state.json`` (without the weights)."""
    path = directory / STATE
    try:
        state = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read the checkpoint {path}: {err}") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else None
        raise ValueError(f"{path} has checkpoint format {found!r}; this version reads {FORMAT}.")
    return state


def load(directory: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read ``state.json`` and the weights it names; check the format and the SHA-256."""
    state = read_state(directory)
    path = directory / STATE
    weights = directory / state["weights"]["file"]
    try:
        payload = weights.read_bytes()
    except OSError as err:
        raise ValueError(f"checkpoint weights {weights} are missing: {err}") from err
    if hashlib.sha256(payload).hexdigest() != state["weights"]["sha256"]:
        raise ValueError(f"{weights} does not match the SHA-256 recorded in {path}; file altered.")
    return state, load_safetensors(payload)


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"fit": {"lr": 1}}`` -> ``{"fit.lr": 1}``."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Human-readable list of the settings that differ between two configs."""
    a, b = flatten(saved), flatten(current)
    missing = object()
    return [
        f"{key}: checkpoint has {a.get(key, '<unset>')!r}, this run has {b.get(key, '<unset>')!r}"
        for key in sorted(set(a) | set(b))
        if a.get(key, missing) != b.get(key, missing)
    ]


def jsonable(value: Any) -> Any:
    """A JSON-serialisable stand-in for ``value`` (classes by dotted name, priors by config)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    config = getattr(value, "config", None)
    if callable(config):
        with contextlib.suppress(Exception):
            return jsonable(config())
    return repr(value)
