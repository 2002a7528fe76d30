"""Smoke-run ``benchmarks/prior_knowledge.py`` at tiny sizes on random MNIST-shaped images."""

import importlib.util
import json
import sys
from pathlib import Path

import torch

import bayesdl as bdl

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load():
    if str(BENCHMARKS) not in sys.path:  # the script imports its sibling provenance.py
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(
        "_bench_prior_knowledge", BENCHMARKS / "prior_knowledge.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_prior_knowledge_tiny(tmp_path, monkeypatch):
    g = torch.Generator().manual_seed(0)

    def images(split="train"):
        n = 300 if split == "train" else 60
        y = torch.arange(n) % 10  # noise plus one bright row per class: learnable
        x = 0.3 * torch.rand(n, 1, 28, 28, generator=g)
        x[torch.arange(n), 0, 2 * y + 4] += 0.7
        return bdl.data.Data(x, y, "mnist", "random", 10)

    monkeypatch.setattr(bdl.data, "mnist", images)
    monkeypatch.setattr(bdl.data, "fashion_mnist", images)
    threads = torch.get_num_threads()
    bench = _load()
    try:
        bench.main(["--n-labels", "10", "--pretrain-epochs", "1", "--steps", "2", "--val-size", "20",
                    "--test-size", "20", "--ood-size", "20", "--samples", "2", "--out", str(tmp_path)])  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    report = json.loads((tmp_path / "prior_knowledge.json").read_text())
    keys = {(r["method"], r["arm"]) for r in report["runs"].values()}
    assert keys == {("vi", "scratch"), ("laplace", "scratch"), ("vi", "centered"),
                    ("laplace", "centered"), ("map", "finetune")}  # fmt: skip
    for r in report["runs"].values():  # the chosen scale is one of the arm's, best on validation
        assert r["scale"] in report["arms"][r["arm"]][1]
        assert r["val_nll"][str(r["scale"])] == min(r["val_nll"].values())
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["ood_auroc"] <= 1
    assert (tmp_path / "prior_knowledge.png").stat().st_size > 0
    assert (
        (tmp_path / "prior_knowledge.md")
        .read_text()
        .startswith("Made by `python benchmarks/prior_knowledge.py")
    )
