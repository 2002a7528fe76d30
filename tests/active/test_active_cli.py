"""``bayesdl active-learn`` end to end on digits, and its refusals."""

import csv
import json

import pytest

from bayesdl.cli import main

TINY = ["--dataset", "digits", "--initial", "20", "--step", "10", "--budget", "40",
        "--pool-subset", "300", "--mc-samples", "4", "--train-steps", "60", "--no-progress"]  # fmt: skip


def test_active_learn_writes_the_documented_layout(tmp_path, capsys):
    out = tmp_path / "al"
    assert (
        main(
            [
                "active-learn",
                *TINY,
                "--acquisition",
                "bald,random",
                "--repeats",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["acquisitions"] == ["bald", "random"]
    assert [(r["acquisition"], r["repeat"]) for r in results["runs"]] == [
        ("bald", 0), ("bald", 1), ("random", 0), ("random", 1)
    ]  # fmt: skip
    for run in results["runs"]:
        assert run["labels"] == [20, 30, 40]
        assert all(0.0 <= a <= 1.0 for a in run["accuracy"])  # fractions, not percents
        assert len(run["labelled_indices"]) == 40 == len(set(run["labelled_indices"]))
        assert run["wall_time_s"] > 0
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 4 * 3 and set(rows[0]) == {
        "acquisition",
        "repeat",
        "labels",
        "accuracy",
        "nll",
    }
    assert (out / "curves.png").stat().st_size > 0
    table = capsys.readouterr().out
    assert "bald" in table and "to 95%" in table and "paper 95%" in table
    # the same --out again is refused; --resume finishes at once from the checkpoints
    assert (
        main(
            [
                "active-learn",
                *TINY,
                "--acquisition",
                "bald,random",
                "--repeats",
                "2",
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert (
        main(
            [
                "active-learn",
                *TINY,
                "--acquisition",
                "bald,random",
                "--repeats",
                "2",
                "--out",
                str(out),
                "--resume",
            ]
        )
        == 0
    )
    again = json.loads((out / "results.json").read_text())
    assert again["runs"] == results["runs"]  # finished runs keep their records and timings


def test_train_epochs_and_precision_reach_the_run(tmp_path):
    out = tmp_path / "al"
    flags = ["--train-epochs", "25", "--precision", "bfloat16", "--budget", "30",
             "--test-samples", "3", "--out", str(out)]  # fmt: skip
    assert main(["active-learn", *TINY, *flags]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["train_epochs"] == 25 and results["config"]["precision"] == "bfloat16"
    assert results["config"]["test_samples"] == 3
    assert results["config"]["decay"] is None  # the defaults: Gal's dense layer, Keras init
    assert results["config"]["init"] == "glorot"
    assert results["runs"][0]["labels"] == [20, 30]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--budget", "100000"], "budget=100000 is larger than the pool"),
        (["--initial", "50"], "initial=50 is larger than budget=40"),
        (["--acquisition", "bogus"], "unknown acquisition"),
        (["--step", "0"], "expected a positive integer"),
        (["--train-epochs", "0"], "expected a positive number, got 0.0"),
        (["--precision", "float16"], "invalid choice: 'float16'"),
        (["--decay", "conv"], "invalid choice: 'conv'"),
        (["--init", "he"], "invalid choice: 'he'"),
        (["--test-samples", "0"], "expected a positive integer"),
    ],
)
def test_bad_settings_exit_2_with_one_line(tmp_path, capsys, extra, message):
    assert main(["active-learn", *TINY, "--out", str(tmp_path / "x"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err
