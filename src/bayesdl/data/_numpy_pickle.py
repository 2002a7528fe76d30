"""A pickle reader that can only rebuild numpy arrays, never run code.

Ordinary ``pickle.load`` imports and calls whatever globals the file names, so a
pickle can run any code. :class:`NumpyOnlyUnpickler` resolves only the few globals
numpy's own array pickling uses and refuses everything else.
"""

from __future__ import annotations

import pickle
from typing import IO, Any

import numpy as np

__all__ = ["NumpyOnlyUnpickler", "load_numpy_pickle"]

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """Stand-in for ``_codecs.encode`` that Python 3 uses to pickle bytes at protocol < 3."""
    if encoding.lower().replace("-", "").replace("_", "") not in {"latin1", "iso88591"}:
        raise pickle.UnpicklingError(
            f"refusing _codecs.encode with encoding {encoding!r}; only latin1 is allowed."
        )
    return text.encode("latin1")


def _allowed() -> dict[tuple[str, str], Any]:
    table: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    # Old files name numpy.core, numpy >= 2 writes numpy._core; both mean the same.
    for package in ("numpy.core", "numpy._core"):
        table[(f"{package}.multiarray", "_reconstruct")] = _multiarray._reconstruct
        table[(f"{package}.multiarray", "scalar")] = _multiarray.scalar
        frombuffer = getattr(_numeric, "_frombuffer", None)  # pickle protocol 5
        if frombuffer is not None:
            table[(f"{package}.numeric", "_frombuffer")] = frombuffer
    return table


_ALLOWED = _allowed()


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler whose ``find_class`` allows only numpy array reconstruction.

    Allowed globals: ``numpy.ndarray``, ``numpy.dtype``,
    ``numpy[._]core.multiarray._reconstruct`` and ``.scalar``,
    ``numpy[._]core.numeric._frombuffer`` and a latin1-only ``_codecs.encode``.
    Any other global (``os.system``, ``builtins.eval``, ...) raises
    :class:`pickle.UnpicklingError` naming it, before anything is called.
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: this reader only rebuilds "
                "numpy arrays, and the file asks for something else. It may be malicious "
                "or not the data file you meant."
            ) from None


def _check_tree(obj: Any, depth: int = 0) -> None:
    """Accept only containers of plain values and non-object arrays."""
    if depth > 20:
        raise pickle.UnpicklingError("pickle nests containers more than 20 deep.")
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise pickle.UnpicklingError(
                "pickle holds an object-dtype array; only numeric arrays are accepted."
            )
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            _check_tree(item, depth + 1)
    elif isinstance(obj, dict):
        for key, value in obj.items():
            _check_tree(key, depth + 1)
            _check_tree(value, depth + 1)
    elif not isinstance(obj, (str, bytes, int, float, complex, bool, type(None), np.generic)):
        raise pickle.UnpicklingError(f"pickle holds an unexpected {type(obj).__name__}.")


def load_numpy_pickle(file: IO[bytes], *, encoding: str = "latin1") -> Any:
    """Read a pickle of numpy arrays (in tuples, lists or dicts) without running code.

    Args:
        file: Binary file object positioned at the start of the pickle.
        encoding: How to decode Python 2 ``str`` objects; ``"latin1"`` is what numpy
            arrays pickled by Python 2 need.

    Returns:
        The unpickled object: nested tuples/lists/dicts of arrays and plain values.

    Raises:
        pickle.UnpicklingError: If the pickle names a global other than numpy's array
            reconstruction, or holds anything but arrays and plain values.
    """
    obj = NumpyOnlyUnpickler(file, encoding=encoding).load()
    _check_tree(obj)
    return obj
