"""A local web app for uncertainty-driven labelling and for referring cases to an expert.

``bayesdl label --data digits --out WORK`` serves two pages on 127.0.0.1:

* **Label**: the batch the acquisition function picks from the unlabelled pool, each item
  with the model's predictive and its total / epistemic / aleatoric uncertainty; answers
  by click or key; a background refit after each batch; the held-out learning curve and
  the class balance; exports of the labels (CSV) and the posterior (``bdl.save`` file).
* **Refer to an expert**: new inputs scored by the current posterior; the threshold for a
  target accuracy on the kept cases comes from the referral curve on held-out data; the
  expert's decisions are stored like labels.

Everything is kept in ``WORK`` (SQLite in WAL mode, an atomic checkpoint), so a server
killed at any moment resumes where it stopped. Needs the ``app`` extra (Flask, waitress,
Pillow): ``pip install 'bayesdl[app]'``. Nothing else in bayesdl imports this package.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["LabelData", "Labeller", "Store", "create_app", "load_source"]

_WHERE = {"LabelData": "sources", "load_source": "sources", "Labeller": "engine",
          "Store": "store", "create_app": "web"}  # fmt: skip


def __getattr__(name: str) -> Any:
    """Import on first use, so ``bayesdl --help`` (which declares ``label``) stays light."""
    if name in _WHERE:
        return getattr(importlib.import_module(f"bayesdl.app.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'bayesdl.app' has no attribute {name!r}")
