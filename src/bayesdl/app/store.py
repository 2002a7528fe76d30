"""The app's durable state: one SQLite database (WAL mode) in the work directory.

Every write is its own transaction, committed (``synchronous=FULL``) before the function
returns, so a label the page has been told about survives a SIGKILL of the server. Each
call opens its own short-lived connection, so web threads and the refit thread never share
one; writes take the database lock up front (``BEGIN IMMEDIATE``), so two tabs labelling at
once are serialised rather than lost.

Tables:

* ``meta``: the settings the work directory was created with (checked on restart);
* ``labels``: one row per pool item that has an answer (``label``, ``skip`` or ``unsure``),
  so an item can never be labelled twice; ``events`` keeps every answer and undo;
* ``batches`` / ``batch_items``: each batch shown for labelling, with the predictive and
  the uncertainties the model had when it picked them;
* ``fits``: one row per refit (labels used, held-out accuracy, seconds);
* ``cases`` / ``referrals`` / ``decisions``: the referral view's inputs, the model's verdict
  on each (referred or kept) and the expert's answers.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["Store", "STATUSES"]

STATUSES = ("label", "skip", "unsure")
"""An answer's kind: a class label, "skip" (not now) or "not sure"."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS labels (
    item INTEGER PRIMARY KEY, status TEXT NOT NULL CHECK (status IN ('label','skip','unsure')),
    label INTEGER, batch INTEGER NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, kind TEXT NOT NULL,
    item INTEGER NOT NULL, status TEXT, label INTEGER);
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY, created REAL NOT NULL, fit INTEGER);
CREATE TABLE IF NOT EXISTS batch_items (
    batch INTEGER NOT NULL, pos INTEGER NOT NULL, item INTEGER NOT NULL, probs TEXT,
    total REAL, epistemic REAL, aleatoric REAL, PRIMARY KEY (batch, pos));
CREATE INDEX IF NOT EXISTS batch_items_item ON batch_items (item);
CREATE TABLE IF NOT EXISTS fits (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, n_labels INTEGER NOT NULL, accuracy REAL,
    nll REAL, seconds REAL NOT NULL);
CREATE TABLE IF NOT EXISTS cases (
    id INTEGER PRIMARY KEY, file TEXT NOT NULL UNIQUE, name TEXT NOT NULL, added REAL NOT NULL);
CREATE TABLE IF NOT EXISTS referral_runs (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, target REAL NOT NULL, score TEXT NOT NULL,
    threshold REAL NOT NULL, expected_fraction REAL NOT NULL, fit INTEGER);
CREATE TABLE IF NOT EXISTS referrals (
    "case" INTEGER PRIMARY KEY, run INTEGER NOT NULL, referred INTEGER NOT NULL,
    predicted INTEGER NOT NULL, probs TEXT NOT NULL, score REAL NOT NULL);
CREATE TABLE IF NOT EXISTS decisions (
    "case" INTEGER PRIMARY KEY, label INTEGER NOT NULL, updated REAL NOT NULL);
"""


class Store:
    """The SQLite database ``WORK/app.db``.

    Args:
        path: The database file; created (with its tables) if missing.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(_SCHEMA)

    # -- connections ---------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        con.row_factory = sqlite3.Row
        con.execute("PRAGMA synchronous=FULL")
        con.execute("PRAGMA busy_timeout=30000")
        return con

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding the lock from the start; committed on exit."""
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        finally:
            con.close()

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        con = self._connect()
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    # -- settings --------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        """The stored settings (JSON values), empty for a new work directory."""
        return {r["key"]: json.loads(r["value"]) for r in self._read("SELECT * FROM meta")}

    def set_meta(self, values: dict[str, Any]) -> None:
        """Store settings.

        Args:
            values: Setting name -> JSON-serialisable value.
        """
        with self._write() as con:
            con.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                [(k, json.dumps(v)) for k, v in values.items()],
            )

    # -- labels ----------------------------------------------------------------------------
    def answer(self, item: int, status: str, label: int | None, batch: int) -> None:
        """Record (or replace) the answer for ``item``, and the event, in one transaction.

        Args:
            item: Pool index.
            status: One of ``STATUSES``.
            label: Class index for ``"label"``, else None.
            batch: The batch that offered the item.
        """
        now = time.time()
        with self._write() as con:
            con.execute(
                "INSERT INTO labels VALUES (?, ?, ?, ?, ?) ON CONFLICT(item) DO UPDATE SET "
                "status=excluded.status, label=excluded.label, updated=excluded.updated",
                (item, status, label, batch, now),
            )
            con.execute(
                "INSERT INTO events (ts, kind, item, status, label) VALUES (?, 'answer', ?, ?, ?)",
                (now, item, status, label),
            )

    def undo(self, item: int) -> bool:
        """Remove the answer for ``item``; False if it had none.

        Args:
            item: Pool index.
        """
        with self._write() as con:
            gone = con.execute("DELETE FROM labels WHERE item = ?", (item,)).rowcount
            if gone:
                con.execute(
                    "INSERT INTO events (ts, kind, item) VALUES (?, 'undo', ?)", (time.time(), item)
                )
        return bool(gone)

    def last_answered(self) -> int | None:
        """The item whose answer was given most recently and is still in place."""
        rows = self._read("SELECT item FROM labels ORDER BY updated DESC LIMIT 1")
        return rows[0]["item"] if rows else None

    def answers(self) -> list[sqlite3.Row]:
        """Every answer (item, status, label, batch, updated), in the order given."""
        return self._read("SELECT * FROM labels ORDER BY updated, item")

    def labelled(self) -> tuple[list[int], list[int]]:
        """Items answered with a class label and their labels, in item order."""
        rows = self._read("SELECT item, label FROM labels WHERE status = 'label' ORDER BY item")
        return [r["item"] for r in rows], [r["label"] for r in rows]

    def answered_items(self) -> set[int]:
        """Every item with an answer of any kind (never offered again)."""
        return {r["item"] for r in self._read("SELECT item FROM labels")}

    def batch_of(self, item: int) -> int | None:
        """The newest batch that offered ``item`` (None if it was never offered).

        Args:
            item: Pool index.
        """
        return self._read("SELECT max(batch) AS b FROM batch_items WHERE item = ?", (item,))[0]["b"]

    def shown_items(self) -> set[int]:
        """Every item that has been in a batch."""
        return {r["item"] for r in self._read("SELECT DISTINCT item FROM batch_items")}

    # -- batches ---------------------------------------------------------------------------
    def current_batch(self) -> tuple[int | None, list[dict[str, Any]]]:
        """The newest batch's id and items, each with its stored predictive and answer."""
        rows = self._read("SELECT max(id) AS id FROM batches")
        batch = rows[0]["id"]
        if batch is None:
            return None, []
        items = self._read(
            "SELECT b.pos, b.item, b.probs, b.total, b.epistemic, b.aleatoric, l.status, l.label "
            "FROM batch_items b LEFT JOIN labels l ON l.item = b.item WHERE b.batch = ? "
            "ORDER BY b.pos",
            (batch,),
        )
        out = []
        for r in items:
            d = dict(r)
            d["probs"] = None if d["probs"] is None else json.loads(d["probs"])
            out.append(d)
        return batch, out

    def add_fit_and_batch(
        self,
        fit: dict[str, Any] | None,
        items: Sequence[int],
        preds: Sequence[dict[str, Any]] | None,
    ) -> int:
        """Record a refit (if any) and the next batch in one transaction; return its id.

        Args:
            fit: ``n_labels``, ``accuracy``, ``nll`` and ``seconds`` of the refit, or None.
            items: Pool items of the batch, in display order.
            preds: Per item ``probs`` (list), ``total``, ``epistemic``, ``aleatoric``; or
                None when there is no model yet.
        """
        now = time.time()
        with self._write() as con:
            fit_id = None
            if fit is not None:
                fit_id = con.execute(
                    "INSERT INTO fits (ts, n_labels, accuracy, nll, seconds) VALUES (?, ?, ?, ?, ?)",
                    (now, fit["n_labels"], fit["accuracy"], fit["nll"], fit["seconds"]),
                ).lastrowid
            batch = con.execute(
                "INSERT INTO batches (created, fit) VALUES (?, ?)", (now, fit_id)
            ).lastrowid
            rows = []
            for pos, item in enumerate(items):
                p = preds[pos] if preds is not None else None
                rows.append((
                    batch, pos, int(item), None if p is None else json.dumps(p["probs"]),
                    None if p is None else p["total"], None if p is None else p["epistemic"],
                    None if p is None else p["aleatoric"],
                ))  # fmt: skip
            con.executemany("INSERT INTO batch_items VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        return int(batch)

    def num_batches(self) -> int:
        """How many batches have been created."""
        return int(self._read("SELECT count(*) AS n FROM batches")[0]["n"])

    def fits(self) -> list[dict[str, Any]]:
        """Every refit, oldest first."""
        return [dict(r) for r in self._read("SELECT * FROM fits ORDER BY id")]

    # -- referral ------------------------------------------------------------------------
    def add_case(self, file: str, name: str) -> int:
        """Register a stored input file as a case (once per file); return its id.

        Args:
            file: File name inside the work directory's ``cases/``.
            name: Name shown in the page (the uploaded file's name).
        """
        with self._write() as con:
            con.execute(
                "INSERT OR IGNORE INTO cases (file, name, added) VALUES (?, ?, ?)",
                (file, name, time.time()),
            )
            return int(con.execute("SELECT id FROM cases WHERE file = ?", (file,)).fetchone()[0])

    def cases(self) -> list[dict[str, Any]]:
        """Every case with the model's verdict (if scored) and the expert's decision."""
        rows = self._read(
            "SELECT c.id, c.file, c.name, r.referred, r.predicted, r.probs, r.score, "
            'd.label AS decision FROM cases c LEFT JOIN referrals r ON r."case" = c.id '
            'LEFT JOIN decisions d ON d."case" = c.id ORDER BY c.id'
        )
        out = []
        for r in rows:
            d = dict(r)
            d["probs"] = None if d["probs"] is None else json.loads(d["probs"])
            out.append(d)
        return out

    def add_referral_run(self, run: dict[str, Any], verdicts: Sequence[dict[str, Any]]) -> int:
        """Record a committed referral threshold and its verdict on each case.

        Args:
            run: ``target``, ``score``, ``threshold``, ``expected_fraction`` and ``fit``.
            verdicts: Per case ``case``, ``referred``, ``predicted``, ``probs``, ``score``.
        """
        with self._write() as con:
            run_id = con.execute(
                "INSERT INTO referral_runs (ts, target, score, threshold, expected_fraction, fit) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (time.time(), run["target"], run["score"], run["threshold"],
                 run["expected_fraction"], run["fit"]),
            ).lastrowid  # fmt: skip
            con.executemany(
                'INSERT OR REPLACE INTO referrals ("case", run, referred, predicted, probs, score) '
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(v["case"], run_id, int(v["referred"]), v["predicted"], json.dumps(v["probs"]),
                  v["score"]) for v in verdicts],
            )  # fmt: skip
        return int(run_id)

    def referral_runs(self) -> list[dict[str, Any]]:
        """Every committed referral threshold, oldest first."""
        return [dict(r) for r in self._read("SELECT * FROM referral_runs ORDER BY id")]

    def decide(self, case: int, label: int) -> None:
        """Record (or replace) the expert's label for a case, with an event.

        Args:
            case: Case id.
            label: Class index.
        """
        now = time.time()
        with self._write() as con:
            con.execute(
                'INSERT INTO decisions ("case", label, updated) VALUES (?, ?, ?) '
                'ON CONFLICT("case") DO UPDATE SET label=excluded.label, updated=excluded.updated',
                (case, label, now),
            )
            con.execute(
                "INSERT INTO events (ts, kind, item, label) VALUES (?, 'decision', ?, ?)",
                (now, case, label),
            )
