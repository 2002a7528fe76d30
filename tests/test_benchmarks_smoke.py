"""Smoke-run the benchmark scripts with tiny sizes (they are not part of the package)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    if str(BENCHMARKS) not in sys.path:  # the scripts import their sibling provenance.py
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _random_images(bdl):
    """A maker of MNIST-shaped ``Data`` of uniform noise with labels 0-9 in turn."""
    g = torch.Generator().manual_seed(0)

    def images(n: int, name: str):
        x, y = torch.rand(n, 1, 28, 28, generator=g), torch.arange(n) % 10
        return bdl.data.Data(x, y, name, "random", 10)

    return images


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_predict_speed_tiny(tmp_path, restore_threads):
    bench = _load("predict_speed")
    args = bench.parse_args([
        "--num-inputs", "8", "--samples", "2", "--repeats", "1", "--threads", "1",
        "--batch-size", "8", "--chunk-sizes", "16", "--memory-cases", "deterministic",
        "--out", str(tmp_path), "--no-progress", "--independent-vi",
    ])  # fmt: skip
    bench.main(args)

    report = json.loads((tmp_path / "predict_speed.json").read_text())
    assert set(report) == {"config", "models", "targets", "provenance"}
    assert report["provenance"]["command"].startswith(
        "python benchmarks/predict_speed.py --num-inputs 8 "
    )
    assert report["config"]["num_inputs"] == 8 and "argv" not in report["config"]
    assert set(report["models"]) == {"cnn", "mlp"}
    cases = {"python_loop", "prefix_repeat", "mc_dropout", "vi_all", "vi_last_layer",
             "mc_dropout_independent", "vi_last_layer_independent"}  # fmt: skip
    for m in report["models"].values():
        assert m["deterministic_s"] > 0 and m["deterministic_train_step_s"] > 0
        assert {r["case"] for r in m["predict"]} == cases
        assert {r["chunk_size"] for r in m["predict"] if r["case"] == "mc_dropout"} == {None, 16}
        for r in m["predict"]:
            assert r["samples"] == 2 and r["repeats"] == 1
            assert r["ratio"] > 0 and r["flop_floor"] >= 1.0
        assert {(r["case"], r["estimator"]) for r in m["train"]} == {
            (f"vi_{s}", e) for s in ("all", "last_layer") for e in ("reparam", "local", "flipout")
        }
        assert [r["case"] for r in m["memory"]] == ["deterministic"]
        assert m["memory"][0]["peak_mib"] is not None, m["memory"][0]["how"]
    table = (tmp_path / "predict_speed.md").read_text()
    assert "| cnn | MCDropout | 2 |" in table
    assert table.startswith("Made by `python benchmarks/predict_speed.py --num-inputs 8 ")


def test_predict_speed_flop_floor_matches_reference():
    """The published FLOP floor of the Gal et al. CNN: ~2.1x at S=20, ~6.7x at S=100.

    Counting Conv/Linear multiply-adds only gives 2.08x and 6.62x (biases and
    activations make up the rest).
    """
    bench = _load("predict_speed")
    model = bench.build_model("cnn")
    x, _ = bench.make_inputs(2, 0, torch.device("cpu"))
    cut = bench.stochastic_start(model, "mc_dropout")
    assert bench.flop_floor(model, x, 20, cut) == pytest.approx(2.1, abs=0.1)
    assert bench.flop_floor(model, x, 100, cut) == pytest.approx(6.7, abs=0.1)


def test_uci_boston_quick(tmp_path, restore_threads):
    pytest.importorskip("mlxtend")
    bench = _load("uci_boston")
    configs = ["map", "mc-dropout"] + (["hmc"] if importlib.util.find_spec("pyro") else [])
    bench.main(bench.parse_args(["--quick", "--splits", "1", "--configs", ",".join(configs),
                                 "--out", str(tmp_path)]))  # fmt: skip
    report = json.loads((tmp_path / "uci_boston.json").read_text())
    assert set(report["methods"]) == set(configs)
    if "hmc" in configs:  # nothing to choose: no validation fits, one fit of --hmc-epochs
        split = report["splits"][0]["hmc"]
        assert split["validation"] == [] and split["valid_ll"] is None
        assert split["chosen"]["epochs"] == report["config"]["hmc"]["epochs"]
    for row in report["methods"].values():
        assert row["rmse"]["mean"] > 0 and row["ll"]["mean"] < 0
    assert "| mc-dropout | bayesdl |" in (tmp_path / "uci_boston.md").read_text()


def test_uci_boston_append_with_suffix_keeps_earlier_rows(tmp_path, restore_threads):
    """An appended invocation with other settings adds suffixed rows and its own grid."""
    pytest.importorskip("mlxtend")
    bench = _load("uci_boston")
    common = ["--quick", "--splits", "1", "--configs", "mc-dropout", "--out", str(tmp_path)]
    bench.main(bench.parse_args(common))
    first = json.loads((tmp_path / "uci_boston.json").read_text())["methods"]["mc-dropout"]
    bench.main(bench.parse_args([*common, "--append", "--suffix", "@long", "--rates", "0.3"]))
    report = json.loads((tmp_path / "uci_boston.json").read_text())
    assert report["methods"]["mc-dropout"] == first
    # The appended invocation's provenance is on top; the first one's is kept under it.
    commands = [p["command"] for p in report["provenance"]["earlier"]]
    assert len(commands) == 1 and "--append" not in commands[0]
    assert "--suffix @long" in report["provenance"]["command"]
    assert report["splits"][0]["mc-dropout@long"]["chosen"]["p"] == 0.3
    assert "Rows ending in @long" in (tmp_path / "uci_boston.md").read_text()


def test_methods_mnist_tiny(tmp_path, restore_threads):
    bdl = pytest.importorskip("bayesdl")
    try:
        bdl.data.mnist("test"), bdl.data.fashion_mnist("test")
    except FileNotFoundError as err:
        pytest.skip(str(err))
    bench = _load("methods_mnist")
    bench.SETTINGS["l0"]["fit"] = {"epochs": 1}
    bench.SETTINGS["ensemble"] = {"ctor": {"members": 2}, "fit": {"epochs": 1}}
    bench.main(["--train-size", "256", "--methods", "l0,ensemble", "--samples", "4",
                "--out", str(tmp_path)])  # fmt: skip
    report = json.loads((tmp_path / "methods_mnist.json").read_text())
    assert report["methods"]["ensemble"]["samples"] == 2  # min(S, members)
    assert 0 <= report["methods"]["l0"]["sparsity"]["weights_removed"] <= 1
    assert "| l0 | 784-200-10 | 256 |" in (tmp_path / "methods_mnist.md").read_text()


def test_mc_dropout_rates_choose_on_validation_nll_only():
    bench = _load("mc_dropout_rates")
    metrics = dict.fromkeys(bench.SHOWN, 0.5)

    def line(pair, seed, valid_nll, ece=0.5):
        return {"dropout": list(pair), "seed": seed, **metrics, "valid_nll": valid_nll, "ece": ece}

    stage1 = [
        line((0.25, 0.5), 0, 0.05, ece=0.001),  # best test ECE, worst validation NLL
        line((0.1, 0.25), 0, 0.04, ece=0.004),
        line((0.25, 0.25), 0, 0.03),
        line((0.05, 0.1), 1, 0.01),  # no seed 0: not a candidate
    ]
    assert bench.choose(stage1, finalists=2) == ((0.25, 0.25), [0])
    # Stage 2: over seeds 0-2 the runner-up of seed 0 is better on average.
    stage2 = [*stage1, line((0.25, 0.25), 1, 0.06), line((0.25, 0.25), 2, 0.06),
              line((0.1, 0.25), 1, 0.04, ece=0.006), line((0.1, 0.25), 2, 0.04, ece=0.005)]  # fmt: skip
    assert bench.choose(stage2, finalists=2) == ((0.1, 0.25), [0, 1, 2])
    assert bench.choose(stage2, finalists=1) == ((0.25, 0.25), [0, 1, 2])
    text = bench.summary(stage2, finalists=2)
    assert "Chosen on validation: (0.1, 0.25)." in text
    assert (
        "| (0.1, 0.25) chosen | 0.0400 | 0,1,2 | 0.5000 +- 0.0000 | 0.5000 +- 0.0000 | 0.0050 +- 0.0010 |"
        in text
    )
    assert "| (0.25, 0.5) (Gal et al.) | - | 0 |" in text


def test_mc_dropout_samples_blocks_and_table(tmp_path, monkeypatch, restore_threads):
    bdl = pytest.importorskip("bayesdl")
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # it imports mc_dropout_rates
    bench = _load("mc_dropout_samples")
    images = _random_images(bdl)

    data = {"train": images(40, "train"), "test": images(30, "test"), "ood": images(30, "ood")}
    run = bench.measure(data, (0.25, 0.5), 0, max_samples=6, sizes=[1, 2, 4], blocks=3)
    assert {k: len(v) for k, v in run["blocks"].items()} == {"1": 3, "2": 3, "4": 1}
    # One mask per block: the S = 1 "average" is a single network, different per block.
    assert len({b["nll"] for b in run["blocks"]["1"]}) == 3
    text = bench.markdown([run], {((0.25, 0.5), 0): 0.25})
    assert "| (0.25, 0.5) | 4 | 1 | 1 |" in text and text.rstrip().endswith("thread(s)")
    assert f"{run['s20_as_logged']['ece']:.4f} here, 0.2500 in the log" in text
    bench.plot([run], tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 0


def test_active_mnist_classes_counts_by_hand():
    pytest.importorskip("bayesdl")
    bench = _load("active_mnist_classes")
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    runs = [
        {"acquisition": "bald", "labelled_indices": [0, 3, 6, 1], "labels": [2, 4], "accuracy": [0.5, 0.7]},
        {"acquisition": "bald", "labelled_indices": [1, 4, 2, 5], "labels": [2, 4], "accuracy": [0.6, 0.9]},
        {"acquisition": "random", "labelled_indices": [2], "labels": [1], "accuracy": [0.4]},
    ]  # fmt: skip
    assert bench.class_counts(runs[:2], labels, 3).tolist() == [[3, 0, 0], [0, 2, 1]]
    text = bench.markdown({"runs": runs}, labels, [2, 4])
    assert "| bald | 2 | 2 | 1.0 (0-2) | 1.0 (0-2) | 0.0 (0-0) | 55.00% |" in text
    assert "| bald | 4 | 2 | 1.5 (0-3) | 1.5 (1-2) | 1.0 (0-2) | 80.00% |" in text
    assert "| random |" not in text  # it labelled fewer than 2
    with pytest.raises(ValueError, match="fewer than 4"):
        bench.class_counts(runs, labels, 4)


def test_mc_dropout_epochs_blocks_choice_and_summary(tmp_path, monkeypatch, restore_threads):
    bdl = pytest.importorskip("bayesdl")
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # it imports mc_dropout_rates
    bench = _load("mc_dropout_epochs")
    images = _random_images(bdl)

    data = {k: images(40, k) for k in ("train", "valid", "test", "ood")}
    monkeypatch.setattr(bench, "load_data", lambda: data)
    bench.main(["--seeds", "0,1", "--epochs", "5,6", "--threads", "1", "--out", str(tmp_path)])
    lines = bench.read_log(tmp_path / "mc_dropout_epochs.jsonl")
    assert [(r["seed"], r["epochs"]) for r in lines] == [(0, 5), (0, 6), (1, 5), (1, 6)]
    # The first block is exactly the 5-epoch training of mc_dropout_rates.py (`evaluate`'s).
    rates = _load("mc_dropout_rates")
    assert lines[2]["valid_nll"] == rates.run(data, 0.5, 0.1, seed=1)["valid_nll"]
    assert lines[3]["valid_nll"] != lines[2]["valid_nll"]
    assert lines[1]["fit_s"] > lines[0]["fit_s"] > 0
    assert all(0 < r["temperature"] for r in lines)
    # Rerunning a complete seed appends nothing; another grid is refused.
    bench.main(["--seeds", "1", "--epochs", "5,6", "--out", str(tmp_path)])
    assert len(bench.read_log(tmp_path / "mc_dropout_epochs.jsonl")) == 4
    with pytest.raises(ValueError, match="another --rates or --epochs"):
        bench.main(["--seeds", "2", "--epochs", "5,7", "--out", str(tmp_path)])
    assert (tmp_path / "mc_dropout_epochs.png").stat().st_size > 0
    assert "Chosen by the mean validation NLL" in (tmp_path / "mc_dropout_epochs.md").read_text()


def test_mc_dropout_epochs_chooses_on_validation_nll_only(monkeypatch):
    pytest.importorskip("bayesdl")
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    bench = _load("mc_dropout_epochs")
    base = dict.fromkeys([*bench.SHOWN, "ece_T", "ood_auroc_entropy_T"], 0.5)

    def line(seed, epochs, valid_nll, ece):
        return {**base, "dropout": [0.5, 0.1], "seed": seed, "epochs": epochs,
                "valid_nll": valid_nll, "ece": ece, "fit_s": 1.0, "threads": 1}  # fmt: skip

    lines = [line(0, 5, 0.03, 0.001), line(0, 10, 0.02, 0.009),  # test ECE favours 5
             line(1, 5, 0.03, 0.001), line(1, 10, 0.03, 0.009),
             line(2, 5, 0.01, 0.001)]  # seed 2 lacks 10 epochs: left out  # fmt: skip
    assert bench.choose(lines) == 10
    text = bench.summary(lines)
    assert "seeds 0,1" in text and "**10 epochs**" in text
    assert "| 10 (chosen) |" in text
    assert "At the chosen 10 epochs, raw: ece = 0.0090 (NOT met, target <= 0.005)" in text


def test_subnormal_speed_tiny(tmp_path, restore_threads):
    pytest.importorskip("bayesdl")
    bench = _load("subnormal_speed")
    rows = bench.main(["--fractions", "0,0.5", "--repeats", "1", "--threads", "1",
                       "--out", str(tmp_path)])  # fmt: skip
    assert [r["fraction"] for r in rows] == [0.0, 0.5]
    assert all(r["step_subnormal_s"] > 0 and r["step_flushed_s"] > 0 for r in rows)
    assert "| 50% |" in (tmp_path / "subnormal_speed.md").read_text()


def test_active_mnist_retrain_prefixes_grid_and_ranking(tmp_path, monkeypatch, restore_threads):
    bdl = pytest.importorskip("bayesdl")
    bench = _load("active_mnist_retrain")
    images = _random_images(bdl)
    train, valid = images(60, "train"), images(30, "valid")
    monkeypatch.setattr(bench, "load_data", lambda: (train, valid))
    seen, retrain = [], bench.retrain
    monkeypatch.setattr(
        bench, "retrain", lambda x, y, *a, **k: seen.append(x) or retrain(x, y, *a, **k)
    )
    order = [5, 17, 3, 40, 22, 9, 31, 0, 12, 58]
    runs = tmp_path / "runs.json"
    runs.write_text(
        json.dumps({"runs": [{"acquisition": "bald", "repeat": 0, "labelled_indices": order}]})
    )
    out = tmp_path / "retrain.jsonl"
    args = ["--runs", str(runs), "--acquisitions", "bald:0", "--sizes", "4,10", "--decays", "1,3.5",
            "--epochs", "2", "--valid-size", "30", "--out", str(out)]  # fmt: skip
    bench.main(args)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    # n = 4 and 10 are one batch of 64: the protocol's 100-step floor is 100 epochs.
    assert [(r["n"], r["c"], r["epochs"], r["steps"]) for r in rows] == [
        (4, 1.0, 100, 100), (4, 3.5, 100, 100), (4, 3.5, 2, 2),
        (10, 1.0, 100, 100), (10, 3.5, 100, 100), (10, 3.5, 2, 2),
    ]  # fmt: skip
    # The first n labelled indices, in labelling order, are the training set.
    assert torch.equal(seen[0], train.x[[5, 17, 3, 40]]) and torch.equal(seen[3], train.x[order])
    assert all(0 <= r["valid_accuracy"] <= 1 and r["valid_nll"] > 0 for r in rows)
    bench.main(args)  # complete: nothing appended
    assert len(out.read_text().splitlines()) == 6
    text = out.with_suffix(".md").read_text()
    ranked = [line for line in text.splitlines() if line[:1].isdigit()]
    nll = {}
    for r in rows:
        key = f"c = {r['c']:g}, " + ("2 epochs" if r["epochs"] == 2 else "50 epochs")
        nll.setdefault(key, []).append(r["valid_nll"])
    best = min(nll, key=lambda k: sum(nll[k]) / len(nll[k]))
    assert ranked[0].startswith(f"1. {best}: ")
    assert len(ranked) == 3


def test_amp_speed_tiny_records_its_provenance(tmp_path, restore_threads):
    pytest.importorskip("bayesdl")
    bench = _load("amp_speed")
    argv = ["--train-size", "64", "--test-size", "4", "--samples", "2", "--repeats", "1",
            "--out", str(tmp_path)]  # fmt: skip
    results = bench.main(argv)
    assert results["cases"]["fit"]["float32"]["ratio"] == 1.0
    saved = json.loads((tmp_path / "amp_speed.json").read_text())
    record = saved["provenance"]
    assert record["command"] == "python benchmarks/amp_speed.py " + " ".join(argv)
    assert "earlier" not in record and record["version"] == sys.modules["bayesdl"].__version__
    table = (tmp_path / "amp_speed.md").read_text().splitlines()
    assert table[0].startswith("Made by `python benchmarks/amp_speed.py --train-size 64 ")
    assert "| bfloat16 |" in "\n".join(table)


def test_approximation_quality_tiny(tmp_path, restore_threads):
    pytest.importorskip("pyro")
    pytest.importorskip("sklearn")
    bench = _load("approximation_quality")
    args = bench.parse_args(["--quick", "--jobs", "1", "--methods", "map,vi,mc-dropout",
                             "--out", str(tmp_path)])  # fmt: skip
    bench.main(args)
    report = json.loads((tmp_path / "approximation_quality.json").read_text())
    assert {"command", "commit", "version", "date"} <= set(report["provenance"])
    assert set(report["summary"]) == {"boston", "digits"}
    for run in report["runs"]:
        assert set(run["methods"]) == {"map", "vi", "mc-dropout"}
        assert run["reference"]["chains"] == 2
    digits = report["summary"]["digits"]["map"]
    assert 0 <= digits["agreement"][0] <= 1 and 0 <= digits["total_variation"][0] <= 1
    assert report["summary"]["boston"]["vi"]["w2"][0] >= 0
    table = (tmp_path / "approximation_quality.md").read_text().splitlines()
    assert table[0].startswith("Made by `python benchmarks/approximation_quality.py --quick")
    assert table[2].startswith("# How far")
    assert (tmp_path / "approximation_quality.png").stat().st_size > 0


def test_acquisition_pools_tiny(tmp_path, restore_threads):
    bench = _load("acquisition_pools")
    argv = ["--pool", "digits", "--seeds", "2", "--budget", "30", "--train-steps", "5",
            "--mc-samples", "3", "--acquisitions", "random,bald@shared,bald",
            "--no-progress", "--out", str(tmp_path)]  # fmt: skip
    bench.main(argv)
    record = json.loads((tmp_path / "acquisition_pools_digits.json").read_text())
    assert record["provenance"]["command"].startswith("python benchmarks/acquisition_pools.py")
    assert {(r["acquisition"], r["seed"]) for r in record["runs"]} == {
        (a, s) for a in ("random", "bald@shared", "bald") for s in (0, 1)
    }
    for r in record["runs"]:
        assert r["labels"] == [20, 30] and len(r["accuracy"]) == 2
    table = (tmp_path / "acquisition_pools.md").read_text()
    assert table.startswith("Made by `python benchmarks/acquisition_pools.py")
    assert "| bald@shared | 2 |" in table and "/2 |" in table
    assert (tmp_path / "acquisition_pools.png").stat().st_size > 0

    # a tagged invocation to another budget is merged; random is paired over common labels
    bench.main([*argv[:2], "--seeds", "1", "--budget", "40", "--train-steps", "5",
                "--mc-samples", "3", "--acquisitions", "entropy", "--tag", "more",
                "--no-progress", "--out", str(tmp_path)])  # fmt: skip
    more = json.loads((tmp_path / "acquisition_pools_digits_more.json").read_text())
    (run,) = more["runs"]
    assert run["labels"] == [20, 30, 40] and run["budget"] == 40
    table = (tmp_path / "acquisition_pools.md").read_text()
    assert "runs added from `python benchmarks/acquisition_pools.py --pool digits" in table
    (row,) = [line for line in table.splitlines() if line.startswith("| entropy |")]
    rand = next(r for r in record["runs"] if r["acquisition"] == "random" and r["seed"] == 0)
    diff = (sum(run["accuracy"][:2]) - sum(rand["accuracy"])) / 2 * 100
    assert f"| {diff:+.2f} |" in row and f"({40})" in row
    assert "ran to another budget than 30" in table
    with pytest.raises(ValueError, match="needs MNIST's validation split"):
        bench.learner(bench.parse_args(argv), "batchbald+published", 0)


def test_distance_awareness_tiny(tmp_path, monkeypatch, restore_threads):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    import bayesdl as bdl

    images = _random_images(bdl)
    monkeypatch.setattr(bdl.data, "mnist", lambda split: images(64, "mnist"))
    monkeypatch.setattr(bdl.data, "fashion_mnist", lambda split: images(64, "fashion-mnist"))
    bench = _load("distance_awareness")
    argv = ["--methods", "map,vi,sngp", "--moons-epochs", "2", "--moons-resolution", "12",
            "--mnist-train", "40", "--mnist-test", "16", "--mnist-epochs", "1",
            "--sngp-lengthscales", "1,2", "--sngp-features", "16", "--samples", "4",
            "--out", str(tmp_path)]  # fmt: skip
    bench.main(bench.parse_args(argv), argv)
    report = json.loads((tmp_path / "distance_awareness.json").read_text())
    assert report["provenance"]["command"].startswith("python benchmarks/distance_awareness.py")
    for problem in ("moons", "mnist"):
        rows = report["problems"][problem]["methods"]
        assert set(rows) == {"map", "vi", "sngp"}
        assert rows["map"]["far_fraction_mi"] == 0.0  # one draw: no epistemic uncertainty
        assert all(0 <= r["far_fraction_mi"] <= 1 and 0 <= r["auroc_mi"] <= 1
                   for r in rows.values())  # fmt: skip
    assert report["problems"]["moons"]["sngp_lengthscale"]["chosen"] in (1.0, 2.0)
    table = (tmp_path / "distance_awareness.md").read_text().splitlines()
    assert table[0].startswith("Made by `python benchmarks/distance_awareness.py --methods")
    assert (tmp_path / "distance_awareness.png").stat().st_size > 0


def test_distributed_scaling_worker_and_on_paper(tmp_path, restore_threads):
    """One process's measurements (no process group: no all-reduce), and the on-paper ring
    all-reduce model against numbers worked out by hand."""
    from bayesdl.models import gal_cnn

    bench = _load("distributed_scaling")
    out = tmp_path / "row.json"
    bench.main(["--worker", "--worker-out", str(out), "--pool", "8", "--samples", "2",
                "--train", "16", "--batch-size", "8"])  # fmt: skip
    row = json.loads(out.read_text())
    assert row["world"] == 1 and row["steps"] == 2 and row["allreduce_s"] == 0.0
    assert row["grad_bytes_per_step"] == 4 * sum(p.numel() for p in gal_cnn().parameters())
    assert row["score_points_per_s"] == pytest.approx(8 / row["score_s"])
    nvlink = bench.on_paper(0.1, 10**6, [8])[0]  # 350 GB/s, 5 us a hop
    assert nvlink["comm_s"] == pytest.approx(14 * 5e-6 + 1.75e6 / 350e9)  # 7.5e-5 s
    assert nvlink["speedup"] == pytest.approx(0.1 / (0.1 / 8 + 7.5e-5))  # 7.95x
def test_snr_pruning_tiny(tmp_path, restore_threads):
    pytest.importorskip("matplotlib")
    bdl = pytest.importorskip("bayesdl")
    try:
        bdl.data.mnist("test")
    except FileNotFoundError as err:
        pytest.skip(str(err))
    bench = _load("snr_pruning")
    args = bench.parse_args([
        "--hidden", "8", "--epochs", "1", "--samples", "2", "--fractions", "0,0.5,0.9",
        "--train-size", "256", "--test-size", "64", "--out", str(tmp_path), "--no-progress",
    ])  # fmt: skip
    results = bench.main(args)
    assert [(r["by"], r["fraction"]) for r in results["rows"]] == [
        (b, f) for b in ("snr", "magnitude") for f in (0.0, 0.5, 0.9)
    ]
    for r in results["rows"]:
        assert abs(r["removed"] - r["fraction"]) < 1e-3 and 0 <= r["error_average"] <= 100
    assert (tmp_path / "snr_pruning.png").stat().st_size > 0
    assert (tmp_path / "snr_pruning.md").read_text().startswith("Made by `python benchmarks/snr_pruning.py")


def test_horseshoe_hmc_tiny(tmp_path, restore_threads):
    pytest.importorskip("pyro")
    bench = _load("horseshoe_hmc")
    args = bench.parse_args([
        "--inputs", "3", "--nonzero", "1", "--points", "20", "--warmup", "10", "--draws", "6",
        "--max-tree-depth", "3", "--gibbs-chains", "2", "--gibbs-draws", "50", "--name", "hs",
        "--out", str(tmp_path),
    ])  # fmt: skip
    result = bench.main(args)
    assert len(result["hmc"]["mean"]) == 3 and len(result["agreement"]["z_mean"]) == 3
    assert set(result["shrinkage_vs_normal1"]) == {"hmc", "gibbs"}
    made_by = "Made by `python benchmarks/horseshoe_hmc.py"
    assert (tmp_path / "hs.md").read_text().startswith(made_by)
    assert json.loads((tmp_path / "hs.json").read_text())["provenance"]["command"].endswith(
        "--name hs --out " + str(tmp_path)
    )


def test_prior_predictive_boston_tiny(tmp_path, restore_threads):
    bench = _load("prior_predictive_boston")
    bench.main(["--samples", "500", "--out", str(tmp_path)])
    sd = json.loads((tmp_path / "prior_predictive_boston.json").read_text())["prior_predictive_sd"]
    # Normal(1) draws far wider functions than the fan-in prior (17.8 against 1.4 at 4,000)
    assert sd["Normal(1)"] > 2 * sd["Normal(sqrt(1/5))"] > 4 * sd["Normal.fan_in(net)"]
    table = (tmp_path / "prior_predictive_boston.md").read_text()
    assert table.startswith("Made by `python benchmarks/prior_predictive_boston.py")
