"""Where a benchmark result came from: the command, the git commit, the library version, the date.

Every benchmark script calls :func:`provenance` when it writes results and records it:

- JSON files get a top-level ``"provenance"`` key (:func:`stamp`); a file that an invocation
  extends (``--append``, ``--merge``) keeps the earlier invocations' records under
  ``"provenance"["earlier"]``, oldest first;
- JSON-lines logs get a ``"provenance"`` key on every line they append;
- markdown tables and CSV files start with one line (:func:`header`).

Results committed before this helper existed carry records recovered from git history; those
have ``"recovered"`` set to a sentence saying how (see ``benchmarks/README.md``). To add one to
a results file that lacks it::

    python benchmarks/provenance.py recover benchmarks/results/<name>.json --commit 1a2b3c4 \
        --command "python benchmarks/<name>.py --out benchmarks/results" --source "its docstring"

This file is a script helper, not part of the package: the scripts import it from their own
folder (``benchmarks/`` is on ``sys.path`` when a script runs).
"""

from __future__ import annotations

import datetime as _dt
import platform
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REQUIRED = ("command", "commit", "version", "date")
"""The keys every provenance record has."""


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def provenance(script: str | Path, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The record of one benchmark invocation.

    Args:
        script: the benchmark script's path (pass ``__file__``).
        argv: the arguments it was given, without the program name; ``None`` reads
            ``sys.argv[1:]`` (the command line of a script run from a shell).

    Returns:
        ``{"command", "commit", "dirty", "version", "date", "python", "torch", "host"}``:
        the command as one shell line relative to the repository root
        (``python benchmarks/amp_speed.py --repeats 9``), the full hash of ``HEAD`` (``"unknown"``
        outside a git checkout), whether tracked files under ``src/`` or ``benchmarks/``
        differed from it, ``bayesdl.__version__``, the UTC time (ISO 8601, seconds), the
        Python and torch versions and the machine (``platform.platform()``).
    """
    import torch

    import bayesdl

    if argv is None:
        argv = sys.argv[1:]
    path = Path(script).resolve()
    root_text = _git(path.parent, "rev-parse", "--show-toplevel")
    root = Path(root_text) if root_text else path.parent.parent
    try:
        shown = path.relative_to(root).as_posix()
    except ValueError:
        shown = str(path)
    commit = _git(root, "rev-parse", "HEAD") if root_text else None
    changes = _git(root, "status", "--porcelain", "--untracked-files=no", "--", "src", "benchmarks")
    return {
        "command": shlex.join(["python", shown, *map(str, argv)]),
        "commit": commit or "unknown",
        "dirty": bool(changes) if changes is not None else None,
        "version": bayesdl.__version__,
        "date": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "host": platform.platform(),
    }


def stamp(
    results: dict[str, Any],
    record: dict[str, Any],
    earlier: dict[str, Any] | Sequence[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Put ``record`` under ``results["provenance"]``, after the other keys.

    Args:
        results: the JSON document about to be written (changed in place).
        record: this invocation's :func:`provenance`.
        earlier: the provenance the file had before this invocation extended it, or a list of
            them for files merged into it (their own ``"earlier"`` lists are flattened in);
            ``None`` for a file written afresh.

    Returns:
        ``results``.
    """
    record = dict(record)
    older: list[dict[str, Any]] = []
    for item in [earlier] if isinstance(earlier, dict) else list(earlier or []):
        item = dict(item)
        older += item.pop("earlier", []) + [item]
    if older:
        record["earlier"] = older
    results.pop("provenance", None)
    results["provenance"] = record
    return results


def header(record: dict[str, Any], comment: str = "") -> str:
    """One line naming the invocation, for the top of a markdown or CSV file.

    Args:
        record: a :func:`provenance` record.
        comment: prefix for formats with comments (``"# "`` for CSV); empty for markdown.

    Returns:
        e.g. ``Made by `python benchmarks/amp_speed.py --repeats 9` at commit 1a2b3c4d5e6f (bayesdl
        0.1.0), 2026-12-06T23:00:00+00:00.`` without a trailing newline.
    """
    commit = record["commit"][:12] + (" + uncommitted changes" if record.get("dirty") else "")
    text = (
        f"Made by `{record['command']}` at commit {commit} (bayesdl {record['version']}), "
        f"{record['date']}."
    )
    if record.get("earlier"):
        text += f" Extends {len(record['earlier'])} earlier invocation(s), listed in the JSON."
    if record.get("recovered"):
        text += " Recovered from git history; see the JSON or benchmarks/README.md."
    return comment + text


def log_header(record: dict[str, Any], rows: Sequence[dict[str, Any]]) -> str:
    """:func:`header` for a summary made from a JSON-lines log, naming where its lines came from.

    Args:
        record: the :func:`provenance` of the invocation writing the summary.
        rows: the log's lines (dictionaries); those written with provenance carry it under
            ``"provenance"``.

    Returns:
        The header line, followed by the distinct commands (with commit and line count) behind
        the log's lines, and the number of lines written before provenance was recorded.
    """
    seen: dict[tuple[str, str], int] = {}
    missing = 0
    for row in rows:
        p = row.get("provenance")
        if p is None:
            missing += 1
        else:
            key = (p["command"], p["commit"][:12])
            seen[key] = seen.get(key, 0) + 1
    parts = [f"`{cmd}` at {commit} ({n} lines)" for (cmd, commit), n in seen.items()]
    if missing:
        parts.append(f"{missing} lines from before provenance was recorded (benchmarks/README.md)")
    return header(record) + (" Log lines from: " + "; ".join(parts) + "." if parts else "")


def recovered(
    command: str, commit: str, source: str, note: str | None = None, root: str | Path = "."
) -> dict[str, Any]:
    """A provenance record for results made before provenance was recorded.

    Args:
        command: the command that made them, as far as it is known.
        commit: the commit that added the results (any revision git understands).
        source: where ``command`` comes from (a docstring, a README, the results' config).
        note: what else a reader should know (e.g. where a rerun would differ).
        root: a directory inside the git checkout.

    Returns:
        ``{"command", "commit", "dirty", "version", "date", "recovered"[, "note"]}``: the
        full commit hash, ``dirty`` ``None`` (unknown), the version in ``pyproject.toml`` at
        that commit, that commit's author date, and a sentence saying how it was recovered.

    Raises:
        ValueError: when ``commit`` is not a commit of this repository.
    """
    full = _git(Path(root), "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}")
    if not full:
        raise ValueError(f"{commit!r} is not a commit of this repository; pass one git knows.")
    pyproject = _git(Path(root), "show", f"{full}:pyproject.toml") or ""
    version = next(
        (line.split('"')[1] for line in pyproject.splitlines() if line.startswith("version")),
        "unknown",
    )
    today = _dt.date.today().isoformat()
    record = {
        "command": command,
        "commit": full,
        "dirty": None,
        "version": version,
        "date": _git(Path(root), "log", "-1", "--format=%aI", full),
        "recovered": (
            f"on {today} from git history: commit = the commit that added these results (the "
            "run used its code or its parent's; uncommitted changes unknown), date = that "
            "commit's date (the run ended before it), version = pyproject.toml there, "
            f"command = {source}"
        ),
    }
    if note:
        record["note"] = note
    return record


def add_to_file(path: str | Path, record: dict[str, Any]) -> None:
    """Record ``record`` in a committed results file, keeping the rest of it as it was.

    A JSON object gets a ``"provenance"`` key (its indentation and final newline kept); a
    markdown file a first line :func:`header`; a CSV file that line as a ``#`` comment.

    Args:
        path: a ``.json``, ``.md`` or ``.csv`` file.
        record: a :func:`provenance` or :func:`recovered` record.

    Raises:
        ValueError: when the file already has provenance, or is of another kind.
    """
    import json

    path = Path(path)
    if path.suffix not in (".json", ".md", ".csv"):
        raise ValueError(f"{path}: provenance goes into .json, .md or .csv files, not {path.suffix}.")
    text = path.read_text()
    if path.suffix == ".json":
        data = json.loads(text)
        if not isinstance(data, dict) or "provenance" in data:
            raise ValueError(f"{path}: not a JSON object without 'provenance'; nothing changed.")
        lines = text.splitlines()
        indent = len(lines[1]) - len(lines[1].lstrip()) if len(lines) > 1 else None
        data["provenance"] = record
        end = "\n" if text.endswith("\n") else ""
        path.write_text(json.dumps(data, indent=indent or None) + end)
    else:
        comment = "# " if path.suffix == ".csv" else ""
        if text.startswith(comment + "Made by `"):
            raise ValueError(f"{path} already starts with its provenance; nothing changed.")
        path.write_text(comment + header(record) + ("\n" if comment else "\n\n") + text)


def main(argv: Sequence[str] | None = None) -> None:
    """``recover PATH... --command CMD --commit REV --source TEXT [--note TEXT]``."""
    import argparse

    p = argparse.ArgumentParser(description="Add recovered provenance to committed results.")
    sub = p.add_subparsers(dest="action", required=True)
    r = sub.add_parser("recover", help="record how committed results were made")
    r.add_argument("paths", nargs="+", type=Path, help=".json / .md / .csv results files")
    r.add_argument("--command", required=True, help="the command that made them")
    r.add_argument("--commit", required=True, help="the commit that added them")
    r.add_argument("--source", required=True, help="where the command comes from")
    r.add_argument("--note", default=None, help="anything else a reader should know")
    args = p.parse_args(argv)
    record = recovered(args.command, args.commit, args.source, args.note, root=args.paths[0].parent)
    for path in args.paths:
        add_to_file(path, record)
        print(f"{path}: {header(record)}")


if __name__ == "__main__":
    main()
