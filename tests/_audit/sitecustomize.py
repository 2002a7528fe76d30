"""Loaded by every Python process whose ``PYTHONPATH`` holds this folder (the torchrun ranks
of ``tests/test_distributed.py``'s CLI test): with ``BAYESDL_AUDIT_DIR`` set, records every
write under it (``open`` for writing, ``os.rename`` / ``os.replace``, ``os.mkdir``,
``os.remove``) and, at exit, saves the list to ``BAYESDL_AUDIT_LOG`` + ``<RANK>.json``."""

import atexit
import json
import os
import sys

_DIR = os.environ.get("BAYESDL_AUDIT_DIR")
if _DIR and "RANK" in os.environ:
    _DIR = os.path.realpath(_DIR)
    _WRITES: list[str] = []

    def _under(path: object) -> bool:
        try:
            return os.path.realpath(os.fsdecode(path)).startswith(_DIR)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False

    def _hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                mode is None and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
            )
            if writing and _under(path):
                _WRITES.append(f"open {path}")
        elif event in ("os.rename", "os.mkdir", "os.remove", "os.rmdir"):
            paths = args[:2] if event == "os.rename" else args[:1]
            if any(_under(p) for p in paths):
                _WRITES.append(f"{event} {paths}")

    def _save() -> None:
        with open(os.environ["BAYESDL_AUDIT_LOG"] + os.environ["RANK"] + ".json", "w") as f:
            json.dump(_WRITES, f)

    sys.addaudithook(_hook)
    atexit.register(_save)
