import json
import struct

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import bayesdl as bdl


def _net(width=8):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, width), nn.ReLU(), nn.Dropout(0.1), nn.Linear(width, 1))


def _fitted():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 3, generator=g)
    vi = bdl.MeanFieldVI(
        _net(),
        likelihood=bdl.likelihoods.Gaussian(),
        prior=bdl.priors.Laplace(0.5),
        subset="last_layer",
    )
    vi.fit((x, x[:, :1] ** 2), epochs=3, progress=False, generator=g)
    return vi, x


def test_round_trip_restores_everything(tmp_path):
    vi, x = _fitted()
    path = bdl.save(vi, tmp_path / "vi.safetensors")
    meta = bdl.io.read_metadata(path)
    assert meta["method"] == "vi" and meta["hparams"]["subset"] == "last_layer"
    assert meta["prior"] == {"name": "laplace", "scale": 0.5}
    loaded = bdl.load(path, _net())
    assert isinstance(loaded.prior, bdl.priors.Laplace)
    assert_close(loaded.likelihood.sigma, vi.likelihood.sigma)
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    a, b = vi.predict(x, 7, generator=g()), loaded.predict(x, 7, generator=g())
    assert_close(a.samples, b.samples)
    assert_close(a.noise_variance, b.noise_variance)


def test_no_silent_overwrite(tmp_path):
    vi, _ = _fitted()
    path = tmp_path / "vi.safetensors"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        bdl.save(vi, path)
    assert path.read_bytes() == b"precious"
    bdl.save(vi, path, overwrite=True)
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind


def test_mismatched_model_fails_clearly(tmp_path):
    vi, _ = _fitted()
    path = bdl.save(vi, tmp_path / "vi.safetensors")
    with pytest.raises(ValueError, match="does not match this model: .*shape mismatch"):
        bdl.load(path, _net(width=16))
    with pytest.raises(TypeError, match="bare network, not a MeanFieldVI"):
        bdl.load(path, vi)  # a method where the network belongs


def test_dropout_rates_are_recorded_and_a_model_with_other_rates_is_refused(tmp_path):
    mc = bdl.MCDropout(_net())
    path = bdl.save(mc, tmp_path / "mc.safetensors")
    assert bdl.io.read_metadata(path)["dropout"] == {"2": 0.1}
    other = _net()
    other[2].p = 0.3  # same weights and shapes: only the rate tells them apart
    with pytest.raises(
        ValueError, match=r"dropout rates \{'2': 0.1\}, but this model has \{'2': 0.3\}"
    ):
        bdl.load(path, other)
    assert bdl.load(path, _net()).model[2].p == 0.1
    # a file written before rates were recorded has no "dropout" key: it loads, unchecked
    from safetensors.torch import load_file, save_file

    meta = bdl.io.read_metadata(path)
    del meta["dropout"]
    save_file(load_file(str(path)), tmp_path / "old.safetensors", {"bayesdl": json.dumps(meta)})
    assert bdl.load(tmp_path / "old.safetensors", other).model[2].p == 0.3


def test_tampered_file_fails_clearly(tmp_path):
    vi, _ = _fitted()
    path = bdl.save(vi, tmp_path / "vi.safetensors")
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF  # flip bits in the tensor payload
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="does not match its recorded SHA-256"):
        bdl.load(bad, _net())
    trunc = tmp_path / "trunc.safetensors"
    trunc.write_bytes(bytes(raw[:40]))
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        bdl.load(trunc, _net())


def test_foreign_and_malicious_files_are_refused(tmp_path):
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, foreign)
    with pytest.raises(ValueError, match="not one written by bayesdl.save"):
        bdl.load(foreign, _net())
    # a pickle renamed .safetensors is never unpickled: it is just an unreadable header
    import pickle

    pkl = tmp_path / "evil.safetensors"
    pkl.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        bdl.load(pkl, _net())
    # metadata that names an unknown method
    header = {
        "__metadata__": {
            "bayesdl": json.dumps(
                {"method": "os.system", "likelihood": {"name": "categorical"}, "sha256": ""}
            )
        }
    }
    blob = json.dumps(header).encode()
    odd = tmp_path / "odd.safetensors"
    odd.write_bytes(struct.pack("<Q", len(blob)) + blob)
    with pytest.raises(ValueError):
        bdl.load(odd, _net())
