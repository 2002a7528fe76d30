"""Smoke tests of the ``bayesdl`` command line (``demo --fast``) and its error handling."""

import json
import subprocess
import sys

import pytest

from bayesdl.cli import main
from bayesdl.demo import OUTPUT_FILES

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")  # two_moons


def _numbers(metrics):
    """The experiment results without timings (which differ from run to run)."""
    out = {k: metrics[k] for k in ("coin", "regression", "two_moons")}
    text = json.dumps(out, sort_keys=True)
    clean = json.loads(text)
    for section in ("regression", "two_moons"):
        for m in clean[section]["methods"].values():
            m.pop("fit_time_s")
    return clean


@pytest.fixture(scope="module")
def fast_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "x"
    code = main(["demo", "--fast", "--out", str(out), "--no-progress"])
    return code, out


def test_demo_fast_writes_pictures_and_metrics(fast_demo, capsys):
    code, out = fast_demo
    assert code == 0
    for name in OUTPUT_FILES:
        assert (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["fast"] is True and metrics["seed"] == 0
    assert metrics["coin"]["posterior"] == [9.0, 5.0]
    lo, hi = metrics["coin"]["interval"]
    assert 0 < lo < metrics["coin"]["posterior_mean"] < hi < 1
    assert set(metrics["regression"]["methods"]) == {"map", "vi", "mc-dropout"}
    for key in ("ratio_gap", "ratio_outside", "ratio_far"):
        assert metrics["regression"]["methods"]["vi"][key] > 0
    for m in metrics["two_moons"]["methods"].values():
        assert set(m) >= {"accuracy", "nll", "ece", "brier"}
    assert not list(out.glob("*.tmp"))


def test_python_m_bayesdl_is_reproducible(fast_demo, tmp_path):
    out = tmp_path / "y"
    proc = subprocess.run(
        [sys.executable, "-m", "bayesdl", "demo", "--fast", "--out", str(out), "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "bayesdl demo" in proc.stdout and "ECE" in proc.stdout
    for name in OUTPUT_FILES:
        assert (out / name).exists(), name
    # same seed, same numbers as the in-process run
    first = json.loads((fast_demo[1] / "metrics.json").read_text())
    second = json.loads((out / "metrics.json").read_text())
    assert _numbers(first) == _numbers(second)


def test_refuses_to_overwrite_unless_asked(tmp_path, capsys):
    out = tmp_path / "z"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    assert main(["demo", "--fast", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bayesdl: error:") and err.count("\n") == 1
    assert "already exists" in err and "--overwrite" in err
    assert (out / "metrics.json").read_text() == "{}"  # untouched
    assert main(["demo", "--fast", "--out", str(out), "--no-progress", "--overwrite"]) == 0
    assert json.loads((out / "metrics.json").read_text())["fast"] is True


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["no-such-command"],
        ["demo", "--bogus"],
        ["demo", "--seed", "-1"],
        ["demo", "--seed", "one"],
    ],
)
def test_bad_arguments_exit_non_zero(argv, capsys):
    assert main(argv) == 2
    assert capsys.readouterr().err


def test_out_that_is_a_file_is_a_one_line_error(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("not a directory")
    assert main(["demo", "--fast", "--out", str(target), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bayesdl: error:") and err.count("\n") == 1


def test_help_and_version_exit_zero(capsys):
    assert main(["--version"]) == 0
    assert "bayesdl" in capsys.readouterr().out
    assert main(["demo", "--help"]) == 0
    assert "--overwrite" in capsys.readouterr().out
