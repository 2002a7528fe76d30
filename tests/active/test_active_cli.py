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
    assert "bald" in table and "to 95%" in table
    assert "paper" not in table  # Gal et al.'s numbers are MNIST's, not digits'
    assert "published" not in results
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


def test_the_paper_columns_are_shown_beside_mnist_runs_only():
    from bayesdl.active.experiment import format_summary

    row = {"repeats": 1, "labels_to_90": 100.0, "labels_to_95": 300.0, "labels_to_98": None,
           "final_labels": 1000, "accuracy_at_budget": 0.98, "wall_time_s": 60.0}  # fmt: skip
    for dataset, shown in [("mnist", True), ("digits", False), ("fashion-mnist", False)]:
        table = format_summary({"config": {"dataset": dataset}, "summary": {"bald": row}})
        assert ("paper 95%" in table) is shown and ("335" in table) is shown, dataset


SMOKE = ["--dataset", "digits", "--initial", "10", "--step", "10", "--budget", "20",
         "--pool-subset", "40", "--mc-samples", "2", "--train-steps", "4", "--test-size", "30",
         "--no-progress"]  # fmt: skip


def _methods():
    from bayesdl.active.experiment import experiment_methods

    return experiment_methods()


@pytest.mark.parametrize("method", _methods())
def test_every_method_offered_runs_the_loop(tmp_path, method):
    out = tmp_path / method
    assert main(["active-learn", *SMOKE, "--method", method, "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["method"] == method
    (run,) = results["runs"]
    assert run["labels"] == [10, 20] and len(set(run["labelled_indices"])) == 20
    assert all(0.0 <= a <= 1.0 for a in run["accuracy"])


def test_methods_that_cannot_run_are_refused_with_the_reason(tmp_path, capsys):
    from bayesdl.methods import method_names

    refused = sorted(set(method_names()) - set(_methods()))
    assert refused == ["hmc"]  # full-batch NUTS over the whole CNN at every step
    out = tmp_path / "hmc"
    assert main(["active-learn", *SMOKE, "--method", "hmc", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bayesdl: error: method 'hmc' cannot be used for active learning")
    assert "sgld" in err and err.count("\n") == 1
    assert not out.exists()


def test_a_failed_validation_leaves_no_empty_out_directory(tmp_path, capsys):
    out = tmp_path / "new" / "al"
    assert main(["active-learn", *TINY, "--budget", "100000", "--out", str(out)]) == 2
    assert "larger than the pool" in capsys.readouterr().err
    assert not out.exists()
    kept = tmp_path / "kept"  # a directory the user made is left alone
    kept.mkdir()
    assert main(["active-learn", *TINY, "--budget", "100000", "--out", str(kept)]) == 2
    assert kept.is_dir()


def test_fewer_initial_labels_than_classes_is_refused(tmp_path, capsys):
    out = tmp_path / "al"
    assert main(["active-learn", *TINY, "--initial", "5", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--initial 5 is fewer labels than the 10 classes of digits" in err
    assert "--initial 10 or more" in err and err.count("\n") == 1
    assert not out.exists()


def test_resume_with_other_settings_names_the_cli_flags(tmp_path, capsys):
    out = tmp_path / "al"
    flags = [*TINY, "--budget", "30", "--out", str(out)]
    assert main(["active-learn", *flags]) == 0
    capsys.readouterr()
    changed = [*flags, "--resume", "--step", "5", "--mc-samples", "3"]
    assert main(["active-learn", *changed]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--step 10 (this run: 5)" in err and "--mc-samples 4 (this run: 3)" in err
    assert "--resume" in err and "--out" in err
    assert "overwrite=True" not in err and "checkpoint_dir" not in err


def test_progress_in_a_log_is_plain_lines(tmp_path, capsys):
    flags = [f for f in TINY if f != "--no-progress"]
    assert main(["active-learn", *flags, "--budget", "30", "--out", str(tmp_path / "al")]) == 0
    err = capsys.readouterr().err  # captured: not a terminal
    assert "\r" not in err and "\x1b" not in err
    lines = [line for line in err.splitlines() if line.startswith("active power-bald")]
    # the last line has the final count and the last step's postfix
    assert lines and lines[-1].startswith("active power-bald: 100%") and "2/2" in lines[-1]
    assert "labels=30" in lines[-1]
