"""``bayesdl evaluate``: files, metric ranges, reload, refusals, and the report in Chromium."""

import json
import re
import shutil
import subprocess

import pytest
import torch

from bayesdl.cli import main
from bayesdl.evaluate import METRIC_COLUMNS, EvaluateConfig, decision_metrics, evaluate
from bayesdl.models import gal_cnn
from bayesdl.predictive import CategoricalPredictive

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")  # digits and the OOD metrics

FAST = ["--dataset", "digits", "--ood", "noise", "--methods", "map,mc-dropout,vi",
        "--epochs", "4", "--train-size", "400", "--test-size", "120", "--samples", "8",
        "--no-progress"]  # fmt: skip
FILES = ["metrics.json", "metrics.csv", "reliability.png", "ood_entropy.png", "ood_mi.png",
         "referral.png", "report.html"]  # fmt: skip


def _without_timings(results):
    return {
        name: {k: v for k, v in row.items() if k not in ("predict_ratio", "predict_s", "fit_s")}
        for name, row in results["methods"].items()
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluate") / "out"
    assert main(["evaluate", *FAST, "--out", str(out)]) == 0
    return out, json.loads((out / "metrics.json").read_text())


def test_writes_every_file_with_the_documented_layout(run):
    out, results = run
    for name in FILES:
        assert (out / name).stat().st_size > 0, name
    assert set(results["methods"]) == {"map", "mc-dropout", "vi"}
    for name, row in results["methods"].items():
        assert list(row) == METRIC_COLUMNS, name
        for key in METRIC_COLUMNS[:-3]:  # everything but the timings is a fraction or a loss
            assert 0.0 <= row[key] <= (10.0 if key == "nll" else 1.0), (name, key, row[key])
        assert row["predict_ratio"] > 0 and row["fit_s"] > 0
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0].split(",") == ["method", *METRIC_COLUMNS] and len(rows) == 4
    assert results["n_test"] == 120 and results["n_ood"] == 120 and results["n_train"] == 400


def test_map_has_no_epistemic_uncertainty_so_mi_cannot_flag_ood(run):
    row = run[1]["methods"]["map"]
    assert row["ood_auroc_mi"] == 0.5  # MI is exactly 0 everywhere: all ties
    # Entropy still flags uniform noise: under "no signal" the AUROC of 120 vs 120 points
    # has sd sqrt((n1 + n2 + 1) / (12 n1 n2)) = 0.037, so > 0.5 + 4 sd is a real signal.
    assert row["ood_auroc_entropy"] > 0.65


def test_loaded_posteriors_give_the_same_metrics(run, tmp_path):
    out, results = run
    again = tmp_path / "again"
    code = main(["evaluate", *FAST, "--load", str(out / "posteriors"), "--out", str(again)])
    assert code == 0
    reloaded = json.loads((again / "metrics.json").read_text())
    assert _without_timings(reloaded) == _without_timings(results)
    assert all(row["fit_s"] is None for row in reloaded["methods"].values())


def test_refuses_to_overwrite_and_names_the_files(run, capsys):
    out, _ = run
    before = (out / "metrics.json").read_bytes()
    assert main(["evaluate", *FAST, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already holds" in err and "metrics.json" in err and "--overwrite" in err
    assert (out / "metrics.json").read_bytes() == before


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--methods", "map,bogus"], r"unknown method\(s\) \['bogus'\]"),
        (["--methods", "map,map"], "listed twice"),
        (["--dataset", "mnist", "--ood", "mnist"], "ood must be one of"),
    ],
)
def test_bad_settings_fail_with_one_line(extra, message, tmp_path, capsys):
    assert main(["evaluate", *FAST, *extra, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err


def test_load_of_a_missing_posterior_says_where_they_are_written(tmp_path):
    cfg = EvaluateConfig(dataset="digits", ood="noise", methods=["map"], load=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="writes them to DIR/posteriors"):
        evaluate(cfg, tmp_path / "o", progress=False)


def test_decision_metrics_on_a_hand_made_case():
    # Two test points, one right (confident) and one wrong (unsure), the same in every
    # sample; the samples disagree completely on the OOD points (+-3 logits), whose
    # average is flat.
    pred_in = CategoricalPredictive(torch.tensor([[[4.0, 0.0], [0.1, 0.0]]]).expand(2, 2, 2))
    pred_out = CategoricalPredictive(torch.tensor([[[3.0, 0.0]] * 2, [[-3.0, 0.0]] * 2]))
    y = torch.tensor([0, 1])
    m = decision_metrics(pred_in, y, pred_out)
    assert m["accuracy"] == 0.5
    assert m["referral_acc_at_10"] == 0.5  # floor(0.1 * 2) = 0 cases referred
    assert m["ood_auroc_entropy"] == 1.0  # flat averages have the top entropy, log 2
    assert m["ood_auroc_mi"] == 1.0  # only the OOD samples disagree
    p = torch.softmax(torch.tensor([4.0, 0.0]), 0)[0].item()
    assert m["brier"] == pytest.approx(((1 - p) ** 2 * 2 + (0.525**2 + 0.525**2)) / 2, abs=2e-3)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (apt-get install chromium)")
def test_report_renders_in_headless_chromium_with_tables_and_images(run, tmp_path):
    out, results = run
    page = (out / "report.html").read_text()
    assert "<script" not in page and 'src="http' not in page  # self-contained, static
    # A copy with a probe that records, once the page has loaded, how many images decoded.
    probe = (
        "<script>window.onload = () => document.body.setAttribute('data-decoded', "
        "[...document.images].filter(i => i.complete && i.naturalWidth > 100).length);"
        "</script></body>"
    )
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("</body>", probe))
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
         "--dump-dom", probed.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    assert re.search(r'data-decoded="4"', dom), dom[:300]
    assert dom.count("<table") == 4
    for name, row in results["methods"].items():
        assert f"<td>{name}</td>" in dom
        assert f"{row['accuracy']:.4f}" in dom


def test_calibrate_adds_temperature_scaled_rows_fitted_on_held_out_images(tmp_path):
    out = tmp_path / "cal"
    fast = list(FAST)
    fast[fast.index("--methods") + 1] = "map,mc-dropout"
    assert main(["evaluate", *fast, "--calibrate", "--out", str(out)]) == 0
    results = json.loads((out / "metrics.json").read_text())
    assert list(results["methods"]) == ["map", "map+T", "mc-dropout", "mc-dropout+T"]
    # digits has no validation split: the last 10% of its training split is held out
    from bayesdl.data import digits

    n_full = len(digits("train"))
    assert results["n_valid"] == round(0.1 * n_full)
    assert results["n_train"] == min(400, n_full - results["n_valid"])
    temps = results["temperatures"]
    assert set(temps) == {"map", "mc-dropout"}
    assert all(0 < t < float("inf") and t != 1.0 for t in temps.values())
    # one sample: dividing the logits by T > 0 never moves the arg-max
    assert results["methods"]["map+T"]["accuracy"] == results["methods"]["map"]["accuracy"]
    html = (out / "report.html").read_text()
    assert "Temperature scaling" in html and "mc-dropout+T" in html


def test_dropout_option_reaches_the_network(tmp_path, monkeypatch, capsys):
    import bayesdl.evaluate as ev

    built = []

    def spy(*args, **kwargs):
        built.append(gal_cnn(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(ev, "gal_cnn", spy)
    fast = list(FAST)
    fast[fast.index("--methods") + 1] = "mc-dropout"
    assert main(["evaluate", *fast, "--dropout", "0.1,0.2", "--out", str(tmp_path / "p")]) == 0
    results = json.loads((tmp_path / "p" / "metrics.json").read_text())
    assert results["config"]["dropout"] == [0.1, 0.2]
    assert built and all(
        [m.p for m in net if isinstance(m, torch.nn.Dropout)] == [0.1, 0.2] for net in built
    )
    with pytest.raises(
        ValueError, match=r"dropout must be two rates in \[0, 1\), got \(0.5, 1.0\)"
    ):
        EvaluateConfig(dropout=(0.5, 1.0)).resolved()
    for bad in ["0.5", "0.5,1", "a,b"]:
        assert main(["evaluate", *fast, "--dropout", bad, "--out", str(tmp_path / "bad")]) == 2
        assert f"--dropout: expected two rates in [0, 1) like 0.25,0.5, got '{bad}'" in (
            capsys.readouterr().err
        )
    assert not (tmp_path / "bad").exists()
