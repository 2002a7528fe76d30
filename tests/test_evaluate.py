"""``bayesdl evaluate``: files, metric ranges, reload, refusals, and the report in Chromium."""

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest
import torch

from bayesdl.cli import main
from bayesdl.evaluate import (
    METRIC_COLUMNS,
    METRIC_LABELS,
    TIMING_REPEATS,
    EvaluateConfig,
    decision_metrics,
    evaluate,
)
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
        name: {k: v for k, v in row.items() if not k.startswith(("predict_", "fit_"))}
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
        timings = [c for c in METRIC_COLUMNS if c.startswith(("predict_", "fit_"))]
        assert METRIC_COLUMNS[-len(timings) :] == timings  # the timings come last
        for key in METRIC_COLUMNS[: -len(timings)]:  # the rest are fractions or a loss
            assert 0.0 <= row[key] <= (10.0 if key == "nll" else 1.0), (name, key, row[key])
        assert row["predict_ratio"] > 0 and row["fit_s"] > 0
        # medians of several timings, with their range
        assert row["predict_ratio_min"] <= row["predict_ratio"] <= row["predict_ratio_max"]
        assert row["predict_s_min"] <= row["predict_s"] <= row["predict_s_max"]
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
        "window.addEventListener('load', () => document.body.setAttribute('data-explained', "
        "[...document.querySelectorAll('#why-is-the-model-unsure img')]"
        ".filter(i => i.complete && i.naturalWidth > 100).length));"
        "</script></body>"
    )
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("</body>", probe))
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
         "--dump-dom", probed.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    # 4 figures, and per method with several draws (mc-dropout, vi) its most uncertain
    # images and most confident mistakes with their epistemic attributions
    assert re.search(r'data-decoded="8"', dom), dom[:300]
    assert re.search(r'data-explained="4"', dom), dom[:300]
    assert "Why is the model unsure?" in dom and "map: one posterior draw" in dom
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


# -- the report reads like a report ----------------------------------------------------------
class _Cells(HTMLParser):
    """Collects the text of every <th> and <td>, and the <img> count."""

    def __init__(self):
        super().__init__()
        self.headers, self.cells, self.images, self._into = [], [], 0, None

    def handle_starttag(self, tag, attrs):
        if tag in ("th", "td"):
            self._into = self.headers if tag == "th" else self.cells
            self._into.append("")
        elif tag == "img":
            self.images += 1

    def handle_endtag(self, tag):
        if tag in ("th", "td"):
            self._into = None

    def handle_data(self, data):
        if self._into is not None:
            self._into[-1] += data


def _parse(path):
    cells = _Cells()
    cells.feed(path.read_text())
    return cells


def test_report_headers_are_human_names_with_the_direction_of_better(run):
    out, _ = run
    headers = [h for h in _parse(out / "report.html").headers if h != "method"]
    assert headers, "no table headers"
    for header in headers:
        assert "_" not in header, f"raw snake_case header {header!r}"
        assert header in METRIC_LABELS.values(), header
        assert header.endswith(("\u2191", "\u2193")), f"{header!r}: which way is better?"
    assert "NLL \u2193" in headers and "Accuracy \u2191" in headers
    page = (out / "report.html").read_text()
    assert "higher is better" in page and "lower is better" in page


def test_report_gives_medians_of_several_timings_with_their_range(run):
    out, results = run
    page = (out / "report.html").read_text()
    assert f"median of {TIMING_REPEATS} timings" in page
    row = results["methods"]["vi"]
    cell = f"{row['predict_ratio']:.4f} ({row['predict_ratio_min']:.3g}\u2013"
    assert any(c.startswith(cell) for c in _parse(out / "report.html").cells), cell


def test_predict_timings_alternate_and_summarise(monkeypatch):
    import bayesdl as bdl
    import bayesdl.evaluate as ev

    method = bdl.MAP(torch.nn.Linear(3, 2))
    calls = []
    real = method.predict
    monkeypatch.setattr(method, "predict", lambda *a, **k: calls.append(1) or real(*a, **k))
    clock = iter(range(1000))  # each timing reads the clock twice: 1 s per timed call
    monkeypatch.setattr(ev.time, "perf_counter", lambda: float(next(clock)))
    t = ev.predict_timings(method, torch.randn(10, 3), samples=4, repeats=3)
    assert len(calls) == 1 + 3  # a warm-up, then one per repeat
    assert t["predict_ratio"] == t["predict_ratio_min"] == t["predict_ratio_max"] == 1.0
    assert t["predict_s"] == 1.0
    with pytest.raises(ValueError, match="repeats must be a positive integer"):
        ev.predict_timings(method, torch.randn(10, 3), samples=4, repeats=0)


def test_a_point_estimate_gets_no_mutual_information_histogram_but_a_note(tmp_path, monkeypatch):
    import bayesdl.plotting as plotting

    drawn = {}
    real = plotting.plot_score_histograms

    def spy(scores, **kwargs):
        drawn[kwargs["score_name"]] = list(scores)
        return real(scores, **kwargs)

    monkeypatch.setattr(plotting, "plot_score_histograms", spy)
    fast = list(FAST)
    fast[fast.index("--methods") + 1] = "map,vi"
    out = tmp_path / "mi"
    assert main(["evaluate", *fast, "--out", str(out)]) == 0
    assert drawn == {"predictive entropy": ["map", "vi"], "mutual information": ["vi"]}
    page = _parse(out / "report.html")
    assert "No mutual-information histogram for map" in (out / "report.html").read_text()
    # MAP's MI columns (AUROC, AUPR, FPR95) say n/a instead of a meaningless 0.5 / 1.0
    assert page.cells.count("n/a") == 3
    # with MAP alone there is no MI picture at all
    fast[fast.index("--methods") + 1] = "map"
    assert main(["evaluate", *fast, "--out", str(tmp_path / "map")]) == 0
    assert not (tmp_path / "map" / "ood_mi.png").exists()
    assert _parse(tmp_path / "map" / "report.html").images == 3


@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (apt-get install chromium)")
def test_report_does_not_scroll_sideways_at_1200_pixels(run, tmp_path):
    out, _ = run
    probe = (
        "<script>window.onload = () => document.body.setAttribute('data-widths', "
        "document.documentElement.scrollWidth + '/' + document.documentElement.clientWidth);"
        "</script></body>"
    )
    probed = tmp_path / "probed.html"
    probed.write_text((out / "report.html").read_text().replace("</body>", probe))
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,900",
         "--virtual-time-budget=5000", "--dump-dom", probed.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    scroll, client = map(int, re.search(r'data-widths="(\d+)/(\d+)"', dom).groups())
    assert 1000 < client <= 1200 and scroll <= client, (scroll, client)
