"""Tests for bayesdl.data.read_idx: round trips with hand-written bytes and corrupt files."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bayesdl.data import read_idx


def test_reads_hand_written_bytes(tmp_path):
    # magic 0 0 0x08 (ubyte) 2 dims, dims 2 x 3 big-endian, then 6 values.
    raw = bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 255])
    (tmp_path / "a").write_bytes(raw)
    out = read_idx(tmp_path / "a")
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [[1, 2, 3], [4, 5, 255]])


def test_big_endian_int32_and_float(tmp_path):
    raw = bytes([0, 0, 0x0C, 1, 0, 0, 0, 2]) + struct.pack(">ii", 0x01020304, -5)
    (tmp_path / "i").write_bytes(raw)
    out = read_idx(tmp_path / "i")
    assert out.dtype == np.dtype("int32") and out.dtype.isnative
    assert out.tolist() == [0x01020304, -5]
    raw = bytes([0, 0, 0x0D, 1, 0, 0, 0, 1]) + struct.pack(">f", 1.5)
    (tmp_path / "f").write_bytes(raw)
    assert read_idx(str(tmp_path / "f")).tolist() == [1.5]


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
def test_round_trip_every_type(tmp_path, idx_bytes, dtype, gz):
    rng = np.random.default_rng(0)
    array = (rng.standard_normal((3, 4, 5)) * 50).astype(dtype)
    data = idx_bytes(array)
    path = tmp_path / "x-idx3"
    path.write_bytes(gzip.compress(data) if gz else data)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, array)
    assert out.flags.writeable


@settings(max_examples=40, deadline=None)
@given(
    hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.int16, np.int32, np.float64]),
        shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5),
    ),
    st.booleans(),
)
def test_round_trip_property(tmp_path_factory, idx_bytes, array, gz):
    path = tmp_path_factory.mktemp("idx") / "file"
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if gz else data)
    out = read_idx(path)
    assert out.shape == array.shape
    np.testing.assert_array_equal(out, array)


def test_empty_dimension_is_allowed(tmp_path, idx_bytes):
    (tmp_path / "e").write_bytes(idx_bytes(np.zeros((0, 28, 28), np.uint8)))
    assert read_idx(tmp_path / "e").shape == (0, 28, 28)


# A valid ubyte file of shape (2, 3, 4), written by hand.
GOOD = bytes([0, 0, 0x08, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4]) + bytes(range(24))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "shorter than the 4-byte magic"),
        (b"\x00\x00", "shorter than the 4-byte magic"),
        (b"PK\x03\x04" + GOOD[4:], "not an IDX file"),
        (bytes([0, 0, 0x07, 1, 0, 0, 0, 1, 9]), "unknown IDX data type code 0x07"),
        (bytes([0, 0, 0x08, 0]), "0 dimensions"),
        (GOOD[:10], "truncated IDX header"),
        (GOOD[:-1], "truncated IDX file"),
        (GOOD[:16], "truncated IDX file"),
        (GOOD + b"\x00", "beyond the 24 bytes"),
    ],
    ids=[
        "empty",
        "short-magic",
        "bad-magic",
        "bad-type",
        "ndim-0",
        "short-header",
        "one-byte-short",
        "no-data",
        "trailing",
    ],
)
@pytest.mark.parametrize("gz", [False, True])
def test_corrupt_files_raise_value_error(tmp_path, raw, message, gz):
    path = tmp_path / "bad"
    path.write_bytes(gzip.compress(raw) if gz else raw)
    with pytest.raises(ValueError, match=message):
        read_idx(path)


def test_truncated_gzip_stream(tmp_path, idx_bytes):
    compressed = gzip.compress(idx_bytes(np.arange(5000, dtype=np.int32)))
    path = tmp_path / "cut.gz"
    path.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(ValueError, match="damaged gzip stream"):
        read_idx(path)


def test_gzip_checksum_error(tmp_path, idx_bytes):
    compressed = bytearray(gzip.compress(idx_bytes(np.arange(100, dtype=np.uint8))))
    compressed[-8] ^= 0xFF  # damage the CRC32 in the gzip trailer
    path = tmp_path / "crc.gz"
    path.write_bytes(bytes(compressed))
    with pytest.raises(ValueError, match="damaged gzip stream"):
        read_idx(path)


def test_huge_declared_size_does_not_allocate(tmp_path):
    # Header claims 4e9 x 4e9 bytes; the reader must fail on the short data, not on memory.
    raw = bytes([0, 0, 0x08, 2]) + struct.pack(">II", 4_000_000_000, 4_000_000_000) + b"\x01"
    (tmp_path / "big").write_bytes(raw)
    with pytest.raises(ValueError, match="truncated IDX file"):
        read_idx(tmp_path / "big")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")
