"""Every committed benchmark result says which command, commit and version made it, and when."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
ARCHIVE = RESULTS / "archive"


def _load_provenance():
    spec = importlib.util.spec_from_file_location(
        "_bench_provenance", ROOT / "benchmarks" / "provenance.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _current(pattern: str) -> list[Path]:
    return sorted(p for p in RESULTS.rglob(pattern) if ARCHIVE not in p.parents)


def _check_record(record: dict, where: str) -> None:
    for key in ("command", "commit", "version", "date"):
        assert isinstance(record.get(key), str) and record[key], f"{where}: no {key!r}"
    assert record["command"].split()[0] in ("python", "bayesdl") or "python benchmarks/" in (
        record["command"]
    ), f"{where}: {record['command']!r} is not a command line"
    assert re.fullmatch(r"[0-9a-f]{40}", record["commit"]), f"{where}: commit {record['commit']!r}"
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", record["version"]), f"{where}: {record['version']!r}"
    dt.datetime.fromisoformat(record["date"])  # raises on a malformed date


JSONS = _current("*.json")


def test_there_are_results_to_check():
    assert len(JSONS) >= 10 and (ARCHIVE / "README.md").is_file()


@pytest.mark.parametrize("path", JSONS, ids=lambda p: str(p.relative_to(RESULTS)))
def test_every_result_json_has_provenance(path):
    record = json.loads(path.read_text()).get("provenance")
    assert isinstance(record, dict), f"{path.name} has no 'provenance'"
    _check_record(record, str(path))
    for i, older in enumerate(record.get("earlier", [])):
        _check_record(older, f"{path} earlier[{i}]")
        assert "earlier" not in older  # flattened, oldest first
    dates = [r["date"] for r in [*record.get("earlier", []), record]]
    assert dates == sorted(dates, key=dt.datetime.fromisoformat), f"{path}: not oldest first"


@pytest.mark.parametrize(
    "path", _current("*.md") + _current("*.csv"), ids=lambda p: str(p.relative_to(RESULTS))
)
def test_every_result_table_starts_with_its_provenance(path):
    first = path.read_text().splitlines()[0]
    prefix = "# Made by `" if path.suffix == ".csv" else "Made by `"
    assert first.startswith(prefix), f"{path}: first line {first[:60]!r}"
    assert re.search(r" at commit [0-9a-f]{12}", first) and "(bayesdl " in first


def test_recorded_commits_are_in_this_history():
    """A recovered commit must be one this repository's history has, before HEAD."""
    if _git("rev-parse", "HEAD") is None or _git("rev-parse", "--is-shallow-repository") != "false":
        pytest.skip("needs a full git checkout")
    commits = set()
    for path in JSONS:
        record = json.loads(path.read_text())["provenance"]
        commits |= {r["commit"] for r in [record, *record.get("earlier", [])]}
    for commit in sorted(commits):
        assert _git("merge-base", "--is-ancestor", commit, "HEAD") is not None, commit


def test_html_reports_are_not_kept_per_run():
    assert len(list(RESULTS.rglob("*.html"))) <= 1


def test_provenance_of_an_invocation_is_the_truth(tmp_path):
    prov = _load_provenance()
    import bayesdl

    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    record = prov.provenance(ROOT / "benchmarks" / "amp_speed.py", ["--out", "a b", "--seed", "1"])
    after = dt.datetime.now(dt.timezone.utc)
    assert shlex.split(record["command"]) == [
        "python", "benchmarks/amp_speed.py", "--out", "a b", "--seed", "1"
    ]  # fmt: skip
    assert record["version"] == bayesdl.__version__
    assert before <= dt.datetime.fromisoformat(record["date"]) <= after
    head = _git("rev-parse", "HEAD")
    assert record["commit"] == (head or "unknown")
    if head is not None:
        dirty = bool(_git("status", "--porcelain", "--untracked-files=no", "--", "src", "benchmarks"))
        assert record["dirty"] is dirty
    line = prov.header(record)
    assert line.startswith("Made by `python benchmarks/amp_speed.py --out 'a b' --seed 1` at commit ")
    assert f"(bayesdl {bayesdl.__version__})" in line


def test_stamp_keeps_earlier_invocations_oldest_first():
    prov = _load_provenance()
    a, b, c, d = ({"command": n, "commit": "0" * 40, "version": "0.1.0", "date": n} for n in "abcd")
    first = prov.stamp({"x": 1}, a)
    assert first == {"x": 1, "provenance": a}
    second = prov.stamp(first, b, first["provenance"])
    assert second["provenance"]["earlier"] == [a] and second["provenance"]["command"] == "b"
    third = prov.stamp(second, c, second["provenance"])
    assert [r["command"] for r in third["provenance"]["earlier"]] == ["a", "b"]
    merged = prov.stamp({}, d, [third["provenance"], a])  # --merge of two files
    assert [r["command"] for r in merged["provenance"]["earlier"]] == ["a", "b", "c", "a"]
    assert "Extends 4 earlier invocation(s)" in prov.header(merged["provenance"])


def test_log_header_names_where_the_lines_came_from():
    prov = _load_provenance()
    rec = {"command": "python benchmarks/x.py --seeds 1", "commit": "f" * 40, "version": "0.1.0",
           "date": "2026-12-06T00:00:00+00:00"}  # fmt: skip
    rows = [{"v": 1}, {"v": 2, "provenance": rec}, {"v": 3, "provenance": rec}]
    text = prov.log_header(rec, rows)
    assert "`python benchmarks/x.py --seeds 1` at ffffffffffff (2 lines)" in text
    assert "1 lines from before provenance was recorded" in text


def test_recovered_reads_commit_version_and_date_from_git():
    prov = _load_provenance()
    commit = _git("rev-parse", "HEAD~1")
    if commit is None:
        pytest.skip("needs a git checkout with history")
    record = prov.recovered("python benchmarks/x.py", commit[:7], "a test", "n", root=ROOT)
    assert record["commit"] == commit and record["dirty"] is None and record["note"] == "n"
    assert record["date"] == _git("log", "-1", "--format=%aI", commit)
    pyproject = _git("show", f"{commit}:pyproject.toml")
    assert f'version = "{record["version"]}"' in pyproject
    assert record["recovered"].endswith("command = a test")
    with pytest.raises(ValueError, match="not a commit"):
        prov.recovered("python benchmarks/x.py", "f" * 40, "a test", root=ROOT)


def test_add_to_file_keeps_the_rest_of_each_file(tmp_path):
    prov = _load_provenance()
    record = {"command": "python benchmarks/x.py", "commit": "a" * 40, "version": "0.1.0",
              "date": "2026-12-06T00:00:00+00:00", "recovered": "by hand"}  # fmt: skip
    for indent, end in ((1, ""), (2, "\n")):
        path = tmp_path / f"r{indent}.json"
        path.write_text(json.dumps({"rows": [1, 2], "x": {"y": 1}}, indent=indent) + end)
        prov.add_to_file(path, record)
        expected = {"rows": [1, 2], "x": {"y": 1}, "provenance": record}
        assert path.read_text() == json.dumps(expected, indent=indent) + end
        with pytest.raises(ValueError, match="without 'provenance'"):
            prov.add_to_file(path, record)
    md, csv = tmp_path / "t.md", tmp_path / "t.csv"
    md.write_text("| a |\n|---|\n")
    csv.write_text("a,b\n1,2\n")
    prov.add_to_file(md, record)
    prov.add_to_file(csv, record)
    assert md.read_text() == prov.header(record) + "\n\n| a |\n|---|\n"
    assert csv.read_text() == "# " + prov.header(record) + "\na,b\n1,2\n"
    with pytest.raises(ValueError, match="already starts"):
        prov.add_to_file(csv, record)
    with pytest.raises(ValueError, match="not .png"):
        prov.add_to_file(tmp_path / "p.png", record)
