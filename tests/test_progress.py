"""Progress output: bars on a terminal, plain lines in logs; CI's pytest prints its summary."""

from __future__ import annotations

import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from bayesdl.progress import progress_bar

ROOT = Path(__file__).resolve().parents[1]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Clock:
    """A fake clock for tqdm: ``now`` seconds, advanced by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_terminal_gets_a_tqdm_bar_redrawn_in_place():
    screen = _Terminal()
    for _ in progress_bar(range(3), desc="fit", file=screen):
        pass
    assert "\r" in screen.getvalue() and "fit" in screen.getvalue()


def test_a_log_gets_one_plain_line_per_interval_and_a_last_line(monkeypatch):
    clock = _Clock()
    import tqdm.std

    monkeypatch.setattr(tqdm.std, "time", clock)  # tqdm's bars read their clock from here
    log = io.StringIO()
    bar = progress_bar(total=100, desc="fit", file=log, interval=10.0, mininterval=0, miniters=1)
    for step in range(100):
        clock.now = step * 0.5  # one update every 0.5 s: 50 s in all
        bar.update(1)
        bar.set_postfix(loss=f"{100 - step}")
    bar.close()
    text = log.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    # a line at 10, 20, 30 and 40 s (not one per update), then the last state on close
    assert len(lines) == 5, lines
    assert all(line.startswith("fit:") for line in lines)
    assert "100/100" in lines[-1] and "loss=1" in lines[-1]
    assert "21/100" in lines[0]  # the update at t = 10 s


def test_a_log_of_a_short_loop_gets_only_the_last_line():
    log = io.StringIO()
    for _ in progress_bar(range(1000), desc="quick", file=log, leave=False):
        pass
    assert log.getvalue().count("\n") == 1 and "1000/1000" in log.getvalue()


def test_disabled_bars_write_nothing_and_bad_intervals_are_refused():
    log = io.StringIO()
    with progress_bar(total=5, file=log, disable=True) as bar:
        bar.update(5)
    assert log.getvalue() == ""
    with pytest.raises(ValueError, match="interval must be a non-negative number"):
        progress_bar(range(3), interval=-1.0)


def test_no_module_outside_the_methods_uses_tqdm_directly():
    src = ROOT / "src" / "bayesdl"
    offenders = [
        str(path.relative_to(src))
        for path in src.rglob("*.py")
        if "methods" not in path.parts
        and path.name != "progress.py"
        and re.search(r"^\s*(from tqdm|import tqdm)", path.read_text(), re.M)
    ]
    assert not offenders, f"use bayesdl.progress.progress_bar in {offenders}"


def test_the_ci_test_command_ends_with_pytest_summary_line(tmp_path):
    """CI runs ``.ci/run``'s pytest command; with ``-q`` given twice (there and in the
    config's ``addopts``) pytest drops its ``N passed in ...`` summary."""
    commands = [
        line for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if re.match(r"\s*python -m pytest", line)
    ]  # fmt: skip
    assert len(commands) == 1, commands
    args = shlex.split(commands[0])[3:]  # after "python -m pytest"
    test = tmp_path / "test_one.py"
    test.write_text("def test_one():\n    assert True\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *args, "-p", "no:cacheprovider",
         "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(ROOT), str(test)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"1 passed in [\d.]+s", last), proc.stdout
