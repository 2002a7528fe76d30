"""Reader for the IDX format of MNIST and Fashion-MNIST (plain or gzip-compressed).

An IDX file is a 4-byte magic number ``0x00 0x00 <type> <ndim>``, then ``ndim``
big-endian uint32 dimension sizes, then the values in C order, big-endian
(LeCun et al., http://yann.lecun.com/exdb/mnist/, section "File formats").
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from typing import BinaryIO

import numpy as np

__all__ = ["read_idx"]

#: IDX type code -> big-endian numpy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 24


def _read_up_to(f: BinaryIO, n: int) -> bytearray:
    """Read at most ``n`` bytes, in chunks, so a lying header cannot allocate ``n`` up front."""
    buf = bytearray()
    while len(buf) < n:
        chunk = f.read(min(_CHUNK, n - len(buf)))
        if not chunk:
            break
        buf += chunk
    return buf


def _parse(f: BinaryIO, where: str) -> np.ndarray:
    magic = _read_up_to(f, 4)
    if len(magic) < 4:
        raise ValueError(
            f"{where}: truncated IDX file, {len(magic)} bytes is shorter than the 4-byte "
            "magic number; download the file again."
        )
    if magic[0] != 0 or magic[1] != 0:
        raise ValueError(
            f"{where}: not an IDX file, magic number starts with bytes "
            f"{magic[0]:#04x} {magic[1]:#04x} instead of 0x00 0x00; check the path."
        )
    code, ndim = magic[2], magic[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"{c:#04x}" for c in IDX_DTYPES)
        raise ValueError(
            f"{where}: unknown IDX data type code {code:#04x}; expected one of {known}."
        )
    if ndim == 0:
        raise ValueError(f"{where}: IDX header declares 0 dimensions; the file is corrupt.")
    raw_dims = _read_up_to(f, 4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise ValueError(
            f"{where}: truncated IDX header, needs {4 * ndim} bytes for {ndim} dimension "
            f"sizes but only {len(raw_dims)} remain; download the file again."
        )
    dims = struct.unpack(f">{ndim}I", bytes(raw_dims))
    dtype = IDX_DTYPES[code]
    nbytes = math.prod(dims) * dtype.itemsize
    payload = _read_up_to(f, nbytes + 1)
    if len(payload) < nbytes:
        raise ValueError(
            f"{where}: truncated IDX file, header declares shape {dims} of {dtype.name} "
            f"({nbytes} bytes of data) but only {len(payload)} bytes follow; "
            "the file is incomplete, download it again."
        )
    if len(payload) > nbytes:
        raise ValueError(
            f"{where}: IDX file has data beyond the {nbytes} bytes its header declares "
            f"(shape {dims}); the file is corrupt or not IDX."
        )
    array = np.frombuffer(payload, dtype=dtype).reshape(dims)
    if dtype.itemsize > 1:
        array = array.astype(dtype.newbyteorder("="))
    return array


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file into a numpy array.

    Gzip compression is recognised by the file's first bytes, whatever its name. The
    header is checked against the data: the magic number, the type code, the number
    of dimensions and that exactly ``prod(shape) * itemsize`` bytes follow.

    Args:
        path: Path to an IDX file such as ``train-images-idx3-ubyte`` or
            ``train-images-idx3-ubyte.gz``.

    Returns:
        A writable array in native byte order with the shape from the header, e.g.
        (60000, 28, 28) uint8 for MNIST training images.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file is not IDX, is truncated, has trailing data, or is a
            damaged gzip stream.

    Examples:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "labels-idx1-ubyte"
        >>> _ = p.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1]))
        >>> read_idx(p).tolist()
        [7, 2, 1]
    """
    where = os.fspath(path)
    with open(where, "rb") as raw:
        gzipped = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        if not gzipped:
            return _parse(raw, where)
        try:
            with gzip.GzipFile(fileobj=raw, mode="rb") as f:
                return _parse(f, where)
        except (gzip.BadGzipFile, EOFError, zlib.error) as err:
            raise ValueError(
                f"{where}: damaged gzip stream ({err}); the download is probably "
                "incomplete, delete the file and download it again."
            ) from err
