"""The command line explains itself: defaults and help on every option, method choices from
the registry, one-line errors for unavailable devices, no method names hard-coded."""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

import pytest
import torch

import bayesdl.cli as cli
from bayesdl.cli import build_parser, main
from bayesdl.methods import method_names

SRC = Path(cli.__file__).resolve().parent
README = SRC.parents[1] / "README.md"


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(autouse=True)
def wide_help(monkeypatch):
    """One line per option (argparse wraps at COLUMNS, also inside hyphenated names)."""
    monkeypatch.setenv("COLUMNS", "2000")


def _entries(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Option flag -> its line of the help page."""
    entries: dict[str, str] = {}
    flag = None
    for line in parser.format_help().split("options:", 1)[1].splitlines():
        if line.strip().startswith("-"):
            flag = line.split()[0].rstrip(",")
            entries[flag] = line
        elif flag is not None:  # the help text under a long flag
            entries[flag] += " " + line.strip()
    return entries


@pytest.mark.parametrize("command", ["demo", "active-learn", "evaluate"])
def test_every_option_has_help_and_shows_its_default(command):
    parser = _subparsers()[command]
    entries = _entries(parser)
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        flag = action.option_strings[0]
        assert action.help and action.help.strip(), f"{command} {flag} has no help text"
        if action.default is None or action.default is False:
            # the default is a behaviour, so the help text must say it in words
            if isinstance(action, argparse._StoreAction) and not action.required:
                assert "default" in action.help, f"{command} {flag}: say what None means"
            continue
        shown = (
            ",".join(map(str, action.default))
            if isinstance(action.default, (list, tuple))
            else str(action.default)
        )
        entry = entries[flag]
        assert f"(default: {shown})" in entry or "default:" in action.help, (
            f"{command} {flag}: default {shown!r} not shown in {entry!r}"
        )


def test_defaults_that_the_issue_found_missing_are_shown(capsys):
    entries = _entries(_subparsers()["active-learn"])
    for flag, value in [("--initial", 20), ("--step", 10), ("--budget", 1000), ("--seed", 0)]:
        assert f"(default: {value})" in entries[flag], entries[flag]
    entries = _entries(_subparsers()["evaluate"])
    assert "(default: 20)" in entries["--samples"]
    assert "(default: map,vi,mc-dropout)" in entries["--methods"]
    for flag in ("--seed", "--batch-size", "--method", "--eval-every"):
        parser = _subparsers()["active-learn" if flag in ("--method", "--eval-every") else "evaluate"]
        assert len(_entries(parser)[flag].split()) > 3, flag  # flag, metavar and some help


def test_evaluate_help_lists_every_registered_method(capsys):
    assert main(["evaluate", "--help"]) == 0
    page = capsys.readouterr().out
    for name in method_names():
        assert re.search(rf"[ ,]{re.escape(name)}[ ,)]", page), name


def test_active_learn_method_choices_come_from_the_registry():
    parser = _subparsers()["active-learn"]
    (method,) = [a for a in parser._actions if "--method" in a.option_strings]
    assert sorted(method.choices) == method_names()  # every method the loop can run


def test_unknown_method_is_a_one_line_error_listing_the_choices(tmp_path, capsys):
    assert main(["active-learn", "--method", "bogus", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'bogus'" in err and "mc-dropout" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
@pytest.mark.parametrize("command", ["active-learn", "evaluate"])
def test_unavailable_cuda_is_a_one_line_error(monkeypatch, tmp_path, capsys, command, device):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "o"
    extra = ["--dataset", "digits", "--no-progress"]
    assert main([command, *extra, "--device", device, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bayesdl: error: device") and err.count("\n") == 1, err
    assert "CUDA is not available" in err and "use cpu" in err
    assert not out.exists()


def test_a_device_that_is_not_one_is_a_one_line_error(tmp_path, capsys):
    assert main(["evaluate", "--device", "gpu9", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bayesdl: error: device 'gpu9' is not a torch device")
    assert err.count("\n") == 1


def test_module_docstring_lists_only_commands_that_exist():
    named = set(re.findall(r"``bayesdl ([a-z-]+)``", cli.__doc__))
    assert named == set(cli._COMMANDS)
    assert "bench" not in cli.__doc__


# -- no method name hard-coded outside its own file and the registry -----------------------
CHOOSERS = [
    "cli.py", "evaluate.py", "demo.py", "report.py", "plotting.py",
    "active/experiment.py", "active/loop.py",
]  # fmt: skip


def _string_literals(tree: ast.AST) -> list[tuple[int, str]]:
    """String constants used as values (docstrings left out)."""
    docstrings = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            if isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


@pytest.mark.parametrize("path", CHOOSERS)
def test_no_method_name_is_hard_coded(path):
    names = set(method_names())
    tree = ast.parse((SRC / path).read_text())
    found = [(line, value) for line, value in _string_literals(tree) if value in names]
    assert not found, f"{path} chooses methods by literal names {found}; use the registry"


# -- the demo's claimed time -----------------------------------------------------------------
def test_demo_time_claimed_in_readme_and_help_is_the_measured_one(capsys):
    from bayesdl.demo import MEASURED_S, RUNTIME_S

    claimed = RUNTIME_S
    assert claimed >= max(MEASURED_S)  # the claim covers every recorded measurement
    readme = README.read_text()
    line = next(s for s in readme.splitlines() if "Run the demo" in s)
    assert re.search(rf"\b{claimed} s\b", line), line
    assert main(["demo", "--help"]) == 0
    assert f"about {claimed} s" in _flat(capsys.readouterr().out)
