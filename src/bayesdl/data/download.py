"""Explicit, checked downloads: nothing in bayesdl downloads unless you call these.

Every file is streamed to a temporary file next to its destination, its SHA-256 is
compared with the published value, and only then is it renamed into place, so a
failed or tampered download never leaves a file that looks complete.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

from bayesdl.progress import progress_bar

__all__ = [
    "FASHION_MNIST_SHA256",
    "FASHION_MNIST_URL",
    "MNIST_SHA256",
    "MNIST_URL",
    "download",
    "download_fashion_mnist",
    "download_mnist",
]

#: PyTorch's mirror of the MNIST files (yann.lecun.com often refuses downloads).
MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"

#: SHA-256 of the four original MNIST files (identical on all mirrors).
MNIST_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}

#: The files in Zalando Research's repository (Xiao et al., 2017).
FASHION_MNIST_URL = (
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"
)

#: SHA-256 of the four original Fashion-MNIST files.
FASHION_MNIST_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
}

_HEX64 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Return the hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(
    url: str,
    dest: str | os.PathLike[str],
    sha256: str,
    *,
    overwrite: bool = False,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest`` and check its SHA-256.

    The file is streamed into a temporary file in ``dest``'s directory, hashed on the
    way, fsynced and then renamed onto ``dest`` (atomic on POSIX), so ``dest`` is either
    absent or complete and verified.

    Args:
        url: An ``http://`` or ``https://`` URL.
        dest: Where to put the file; missing parent directories are created.
        sha256: Expected SHA-256 of the file, 64 hex digits.
        overwrite: Replace an existing ``dest`` whose hash differs. If False (default)
            an existing file with the right hash is kept and returned, and one with a
            different hash is an error.
        progress: Show a progress bar on stderr (``bayesdl.progress.progress_bar``).
        timeout: Seconds to wait for the server before giving up.

    Returns:
        ``dest`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: If ``url`` is not http(s), ``sha256`` is malformed, or the
            downloaded file's hash differs from ``sha256`` (the partial file is deleted).
        FileExistsError: If ``dest`` exists with another hash and ``overwrite`` is False.
        OSError: If the server or network fails (the partial file is deleted).

    Examples:
        >>> download(  # doctest: +SKIP
        ...     MNIST_URL + "t10k-labels-idx1-ubyte.gz", "data/t10k-labels-idx1-ubyte.gz",
        ...     MNIST_SHA256["t10k-labels-idx1-ubyte.gz"])
    """
    if not isinstance(url, str) or urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"url must be an http:// or https:// URL, got {url!r}.")
    if not isinstance(sha256, str) or not _HEX64.fullmatch(sha256.strip().lower()):
        raise ValueError(
            f"sha256 must be 64 hexadecimal digits (a SHA-256 hex digest), got {sha256!r}."
        )
    expected = sha256.strip().lower()
    dest = Path(dest).expanduser()
    if dest.is_dir():
        raise ValueError(f"dest={str(dest)!r} is a directory; pass the path of the file.")
    if dest.exists():
        actual = sha256_file(dest)
        if actual == expected:
            return dest
        if not overwrite:
            raise FileExistsError(
                f"{dest} already exists with SHA-256 {actual}, expected {expected}; "
                "delete it or pass overwrite=True to replace it."
            )
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    done = False
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            try:
                request = urllib.request.Request(url, headers={"User-Agent": "bayesdl"})
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    length = response.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                    with progress_bar(
                        total=total,
                        unit="B",
                        unit_scale=True,
                        unit_divisor=1024,
                        desc=dest.name,
                        disable=not progress,
                    ) as bar:
                        for chunk in iter(lambda: response.read(_CHUNK), b""):
                            out.write(chunk)
                            digest.update(chunk)
                            bar.update(len(chunk))
            except OSError as err:
                raise OSError(
                    f"downloading {url} failed: {err}. Check the URL and your network "
                    "connection, or copy the file to the destination by hand."
                ) from err
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if actual != expected:
            raise ValueError(
                f"SHA-256 mismatch for {url}: expected {expected}, got {actual}. "
                "The file was deleted; the server may serve a different or damaged file."
            )
        if dest.exists() and not overwrite:
            raise FileExistsError(f"{dest} appeared during the download; not replacing it.")
        os.replace(tmp, dest)
        done = True
    finally:
        if not done:
            tmp.unlink(missing_ok=True)
    return dest


def _download_set(
    root: str | os.PathLike[str],
    subdir: str,
    hashes: dict[str, str],
    base_url: str,
    overwrite: bool,
    progress: bool,
) -> Path:
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a str or Path, got {type(root).__name__}.")
    if not isinstance(base_url, str):
        raise TypeError(f"base_url must be a str, got {type(base_url).__name__}.")
    raw = Path(root).expanduser() / subdir / "raw"
    for name, digest in hashes.items():
        download(
            base_url.rstrip("/") + "/" + name,
            raw / name,
            digest,
            overwrite=overwrite,
            progress=progress,
        )
    return raw


def download_mnist(
    root: str | os.PathLike[str],
    *,
    base_url: str = MNIST_URL,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Download the four MNIST IDX files into ``<root>/MNIST/raw`` (torchvision layout).

    Files already there with the right SHA-256 are not fetched again. Afterwards
    ``bayesdl.data.mnist(root=root)`` reads them.

    Args:
        root: Data directory; ``MNIST/raw`` is created inside it.
        base_url: Directory URL holding the files (a mirror or a local test server).
        overwrite: Replace existing files whose hash is wrong instead of raising.
        progress: Show a progress bar per file.

    Returns:
        The directory holding the files, ``<root>/MNIST/raw``.

    Raises:
        ValueError: If a downloaded file's SHA-256 is not the published one.
        FileExistsError: If a file exists with a wrong hash and ``overwrite`` is False.
        OSError: If the network or server fails.
    """
    return _download_set(root, "MNIST", MNIST_SHA256, base_url, overwrite, progress)


def download_fashion_mnist(
    root: str | os.PathLike[str],
    *,
    base_url: str = FASHION_MNIST_URL,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Download the four Fashion-MNIST IDX files into ``<root>/FashionMNIST/raw``.

    Files already there with the right SHA-256 are not fetched again. Afterwards
    ``bayesdl.data.fashion_mnist(root=root)`` reads them.

    Args:
        root: Data directory; ``FashionMNIST/raw`` is created inside it.
        base_url: Directory URL holding the files (a mirror or a local test server).
        overwrite: Replace existing files whose hash is wrong instead of raising.
        progress: Show a progress bar per file.

    Returns:
        The directory holding the files, ``<root>/FashionMNIST/raw``.

    Raises:
        ValueError: If a downloaded file's SHA-256 is not the published one.
        FileExistsError: If a file exists with a wrong hash and ``overwrite`` is False.
        OSError: If the network or server fails.
    """
    return _download_set(root, "FashionMNIST", FASHION_MNIST_SHA256, base_url, overwrite, progress)
