"""Tests for bayesdl.data.download against a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import functools
import hashlib
import http.server
import importlib
import re
import threading

import pytest
import torch

from bayesdl.data import download, download_fashion_mnist, download_mnist, fashion_mnist, mnist
from bayesdl.data.download import FASHION_MNIST_SHA256, MNIST_SHA256

download_module = importlib.import_module("bayesdl.data.download")
PAYLOAD = bytes(range(256)) * 5000  # 1.28 MB, several read chunks
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def do_GET(self):  # noqa: N802 - name fixed by http.server
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, format, *args):  # silence the server's stderr log
        pass


@pytest.fixture
def server(tmp_path):
    """Serve ``tmp_path / "srv"``; yields (base_url, directory, list of requested paths)."""
    root = tmp_path / "srv"
    root.mkdir()
    requests: list[str] = []
    handler = type("Handler", (_Handler,), {"requests": requests})
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(root))
    )
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", root, requests
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_success(server, tmp_path):
    url, root, requests = server
    (root / "file.bin").write_bytes(PAYLOAD)
    dest = tmp_path / "out" / "sub" / "file.bin"
    assert download(url + "file.bin", dest, PAYLOAD_SHA, progress=False) == dest
    assert dest.read_bytes() == PAYLOAD
    assert list(dest.parent.iterdir()) == [dest]  # no temporary file left
    assert requests == ["/file.bin"]


def test_upper_case_hash_and_progress_bar(server, tmp_path, capsys):
    url, root, _ = server
    (root / "f").write_bytes(PAYLOAD)
    download(url + "f", tmp_path / "f", PAYLOAD_SHA.upper(), progress=True)
    assert "f" in capsys.readouterr().err  # tqdm writes to stderr
    download(url + "f", tmp_path / "g", PAYLOAD_SHA, progress=False)
    assert capsys.readouterr().err == ""


def test_hash_mismatch_leaves_nothing(server, tmp_path):
    url, root, _ = server
    (root / "file.bin").write_bytes(PAYLOAD)
    out = tmp_path / "out"
    wrong = "0" * 64
    with pytest.raises(ValueError, match=f"expected {wrong}, got {PAYLOAD_SHA}"):
        download(url + "file.bin", out / "file.bin", wrong, progress=False)
    assert list(out.iterdir()) == []


def test_http_error_leaves_nothing(server, tmp_path):
    url, _, _ = server
    out = tmp_path / "out"
    with pytest.raises(OSError, match="404"):
        download(url + "missing.bin", out / "x", PAYLOAD_SHA, progress=False)
    assert list(out.iterdir()) == []


def test_existing_file_with_right_hash_is_kept(server, tmp_path):
    url, root, requests = server
    dest = tmp_path / "file.bin"
    dest.write_bytes(PAYLOAD)
    (root / "file.bin").write_bytes(b"other content on the server")
    assert download(url + "file.bin", dest, PAYLOAD_SHA, progress=False) == dest
    assert requests == [] and dest.read_bytes() == PAYLOAD


def test_no_overwrite_unless_asked(server, tmp_path):
    url, root, _ = server
    (root / "file.bin").write_bytes(PAYLOAD)
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"my precious file")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        download(url + "file.bin", dest, PAYLOAD_SHA, progress=False)
    assert dest.read_bytes() == b"my precious file"
    download(url + "file.bin", dest, PAYLOAD_SHA, overwrite=True, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert not list(tmp_path.glob(".*.part"))  # the temporary file was renamed


def test_failed_overwrite_keeps_old_file(server, tmp_path):
    url, root, _ = server
    (root / "file.bin").write_bytes(b"tampered")
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"old")
    with pytest.raises(ValueError, match="SHA-256 mismatch"):
        download(url + "file.bin", dest, PAYLOAD_SHA, overwrite=True, progress=False)
    assert dest.read_bytes() == b"old"


@pytest.mark.parametrize(
    ("url", "sha", "message"),
    [
        ("file:///etc/passwd", PAYLOAD_SHA, "http:// or https://"),
        ("ftp://example.com/x", PAYLOAD_SHA, "http:// or https://"),
        ("http://127.0.0.1/x", "abc", "64 hexadecimal digits"),
        ("http://127.0.0.1/x", "g" * 64, "64 hexadecimal digits"),
    ],
)
def test_bad_arguments(tmp_path, url, sha, message):
    with pytest.raises(ValueError, match=message):
        download(url, tmp_path / "x", sha, progress=False)


def test_dest_is_directory(tmp_path):
    with pytest.raises(ValueError, match="is a directory"):
        download("http://127.0.0.1/x", tmp_path, PAYLOAD_SHA, progress=False)


@pytest.mark.parametrize("table", [MNIST_SHA256, FASHION_MNIST_SHA256])
def test_published_hash_tables_are_well_formed(table):
    assert sorted(table) == sorted(
        f"{p}-{k}-idx{d}-ubyte.gz"
        for p in ("train", "t10k")
        for k, d in (("images", 3), ("labels", 1))
    )
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in table.values())
    assert len(set(table.values())) == 4


@pytest.mark.parametrize(
    ("fetch", "load", "table_name", "subdir"),
    [
        (download_mnist, mnist, "MNIST_SHA256", "MNIST"),
        (download_fashion_mnist, fashion_mnist, "FASHION_MNIST_SHA256", "FashionMNIST"),
    ],
    ids=["mnist", "fashion-mnist"],
)
def test_download_set_then_load(
    server, tmp_path, fake_image_set, monkeypatch, fetch, load, table_name, subdir
):
    url, root, requests = server
    fake_image_set(root, 10_003, 4, gz=True)
    served = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.iterdir()}
    table = getattr(download_module, table_name)
    for name in table:
        monkeypatch.setitem(table, name, served[name])
    data_dir = tmp_path / "data"
    raw = fetch(data_dir, base_url=url.rstrip("/"), progress=False)
    assert raw == data_dir / subdir / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(table)
    test = load("test", root=data_dir)
    assert test.x.shape == (4, 1, 28, 28)
    torch.testing.assert_close(test.y, torch.arange(4))
    n_requests = len(requests)
    fetch(data_dir, base_url=url, progress=False)  # everything present: nothing fetched
    assert len(requests) == n_requests


def test_download_set_wrong_hash(server, tmp_path, fake_image_set):
    url, root, _ = server
    fake_image_set(root, 1, 1, gz=True)  # not the real MNIST files
    with pytest.raises(ValueError, match="SHA-256 mismatch"):
        download_mnist(tmp_path / "data", base_url=url, progress=False)
    raw = tmp_path / "data" / "MNIST" / "raw"
    assert list(raw.iterdir()) == []  # neither the bad file nor a temporary one
