import hashlib
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


def _rewrite(src, dst, meta, tensors=None):
    """Copy the file ``src`` to ``dst`` with metadata ``meta`` (and ``tensors``), as an
    editor of the file would."""
    from safetensors.torch import load_file, save_file

    save_file(
        load_file(str(src)) if tensors is None else tensors, dst, {"bayesdl": json.dumps(meta)}
    )
    return dst


def _as_format_1(src, dst, meta):
    """The file as bayesdl wrote it before format 2: no digest table, and "sha256" over the
    tensors alone (name, dtype, shape and bytes of each, in name order)."""
    from safetensors.torch import load_file

    tensors = load_file(str(src))
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        h.update(name.encode() + str(t.dtype).encode() + str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    meta = {k: v for k, v in meta.items() if k not in ("digests", "sha256")}
    meta.update(format=1, sha256=h.hexdigest())
    return _rewrite(src, dst, meta, tensors)


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
    # a format-1 file written before rates were recorded has no "dropout" key: it loads,
    # unchecked, with a warning that its metadata is not covered by the digest
    meta = bdl.io.read_metadata(path)
    del meta["dropout"]
    old = _as_format_1(path, tmp_path / "old.safetensors", meta)
    with pytest.warns(UserWarning, match="predates file format 2"):
        assert bdl.load(old, other).model[2].p == 0.3


def test_tampered_file_fails_clearly(tmp_path):
    vi, _ = _fitted()
    path = bdl.save(vi, tmp_path / "vi.safetensors")
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF  # flip bits in the tensor payload
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="tensor '.*' was altered"):
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


@pytest.mark.parametrize(
    ("field", "value"),
    [("prior", {"name": "laplace", "scale": 5.0}), ("version", "0.0.1"), ("hparams", {})],
)
def test_an_edited_metadata_field_is_named(tmp_path, field, value):
    vi, _ = _fitted()
    path = bdl.save(vi, tmp_path / "vi.safetensors")
    meta = bdl.io.read_metadata(path)
    meta[field] = value
    bad = _rewrite(path, tmp_path / "bad.safetensors", meta)
    with pytest.raises(ValueError, match=f"metadata field '{field}' was altered"):
        bdl.load(bad, _net())


def test_an_edited_method_name_is_reported_as_such(tmp_path):
    vi, _ = _fitted()
    path = bdl.save(vi, tmp_path / "vi.safetensors")
    meta = bdl.io.read_metadata(path)
    meta["method"] = "map"
    bad = _rewrite(path, tmp_path / "bad.safetensors", meta)
    with pytest.raises(ValueError, match="metadata field 'method' was altered \\(now \"map\""):
        bdl.load(bad, _net())


def test_missing_digest_and_altered_tensor_are_different_errors(tmp_path):
    from safetensors.torch import load_file

    vi, _ = _fitted()
    path = bdl.save(vi, tmp_path / "vi.safetensors")
    meta = bdl.io.read_metadata(path)
    del meta["sha256"]
    with pytest.raises(ValueError, match="has no digest"):
        bdl.load(_rewrite(path, tmp_path / "a.safetensors", meta), _net())
    tensors = load_file(str(path))
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 1.0
    meta = bdl.io.read_metadata(path)
    with pytest.raises(ValueError, match=f"tensor '{name}' was altered"):
        bdl.load(_rewrite(path, tmp_path / "b.safetensors", meta, tensors), _net())
    # a forged digest table (the field edited and its digest updated) is still refused
    meta = bdl.io.read_metadata(path)
    meta["prior"] = {"name": "laplace", "scale": 5.0}
    meta["digests"]["fields"]["prior"] = hashlib.sha256(
        json.dumps(meta["prior"], sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    with pytest.raises(ValueError, match="table of digests was altered"):
        bdl.load(_rewrite(path, tmp_path / "c.safetensors", meta), _net())


def test_format_1_files_still_load_and_their_tensors_are_checked(tmp_path):
    from safetensors.torch import load_file

    vi, x = _fitted()
    path = bdl.save(vi, tmp_path / "vi.safetensors")
    old = _as_format_1(path, tmp_path / "old.safetensors", bdl.io.read_metadata(path))
    with pytest.warns(UserWarning, match="predates file format 2"):
        loaded = bdl.load(old, _net())
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    assert_close(
        loaded.predict(x, 3, generator=g()).samples, vi.predict(x, 3, generator=g()).samples
    )
    tensors = load_file(str(old))
    name = sorted(tensors)[-1]
    tensors[name] = -tensors[name]
    bad = _rewrite(old, tmp_path / "bad.safetensors", bdl.io.read_metadata(old), tensors)
    with pytest.raises(ValueError, match="does not match its recorded SHA-256"):
        bdl.load(bad, _net())


def test_centered_prior_serialises_itself(tmp_path):
    net = _net()
    centre = {n: p.detach() + 0.5 for n, p in net.named_parameters()}
    prior = bdl.priors.Centered(centre, scale={"": 2.0, "3": 0.5})
    cfg, tensors = prior.config(), prior.tensors()
    assert cfg == {"name": "centered", "scale": {"": 2.0, "3": 0.5}}
    again = bdl.priors.from_config(json.loads(json.dumps(cfg)), tensors)
    w = {n: torch.randn_like(p) for n, p in net.named_parameters()}
    # truth: the Gaussian log density around the given centre, written out
    truth = sum(
        torch.distributions.Normal(centre[n], 0.5 if n.startswith("3.") else 2.0).log_prob(v).sum()
        for n, v in w.items()
    )
    assert_close(again.log_prob(w), truth)
    assert_close(again.mean("0.weight", w["0.weight"]), centre["0.weight"])
    assert_close(bdl.priors.Normal(1.0).mean("0.weight", w["0.weight"]), torch.zeros(8, 3))
    mc = bdl.MCDropout(_net(), prior=prior)
    loaded = bdl.load(bdl.save(mc, tmp_path / "c.safetensors"), _net())
    assert_close(loaded.prior.log_prob(w), truth)
    with pytest.raises(ValueError, match="takes no tensors"):
        bdl.priors.from_config({"name": "normal", "scale": 1.0}, tensors)


def test_save_of_a_bare_module_says_to_wrap_it(tmp_path):
    with pytest.raises(TypeError, match=r"wrap the Sequential in a method first, e.g. .*bdl.MAP"):
        bdl.save(_net(), tmp_path / "net.safetensors")
    assert not (tmp_path / "net.safetensors").exists()
