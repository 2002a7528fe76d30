"""The app's model side: batches to label, the background refit, referral thresholds.

A :class:`Labeller` owns one work directory. It shows one batch at a time; when every
item of the batch has an answer it refits in a background thread: a fresh network on
every labelled item (Gal et al.'s protocol), the held-out accuracy, an atomic checkpoint
(``bdl.save``), then the next batch picked by the acquisition function from a random
subset of the unanswered pool. The refit's result and the next batch are committed to the
database together, so a server killed at any moment restarts either before the refit
(and runs it again) or after it.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from bayesdl import metrics
from bayesdl.active import Pool, get_acquisition, select
from bayesdl.active.loop import derive_seed, retrain_epochs
from bayesdl.app.sources import LabelData
from bayesdl.app.store import STATUSES, Store
from bayesdl.io import load, save
from bayesdl.methods import get_method
from bayesdl.predictive import CategoricalPredictive

__all__ = ["Labeller", "SCORES", "METHODS"]

log = logging.getLogger("bayesdl.app")

METHODS = ("mc-dropout", "vi")
"""Methods the app can refit (trained by ``fit``, classification)."""

SCORES = {"total": "entropy", "epistemic": "mutual_information", "aleatoric": "expected_entropy"}
"""Uncertainty scores the referral view can rank by, and the Predictive method of each."""

_REFIT, _SCORE, _FIRST = range(3)


class _Counting(Dataset):
    """(x, y) pairs that report how many examples training has drawn (the refit progress)."""

    def __init__(self, x: Tensor, y: Tensor, seen: Callable[[int], None]) -> None:
        self.x, self.y, self.seen = x, y, seen

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        self.seen(1)
        return self.x[i], self.y[i]


def _warm_up() -> None:
    """One Adam step on a dummy parameter: its first call imports torch's compiler stack
    (seconds), which would otherwise land on the first refit. No random numbers are drawn."""
    param = torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([param])
    param.sum().backward()
    opt.step()


def _summaries(pred: CategoricalPredictive) -> list[dict[str, Any]]:
    probs = pred.probs.double()
    probs = probs / probs.sum(-1, keepdim=True)
    total, alea, epi = pred.entropy(), pred.expected_entropy(), pred.mutual_information()
    return [
        {"probs": [round(float(v), 4) for v in probs[i]], "total": float(total[i]),
         "epistemic": float(epi[i]), "aleatoric": float(alea[i])}
        for i in range(len(probs))
    ]  # fmt: skip


class Labeller:
    """One labelling session over a work directory.

    Args:
        data: What to label (see :func:`bayesdl.app.sources.load_source`).
        work: The work directory (created if missing): ``app.db``, ``posterior.safetensors``
            and ``cases/``.
        method: ``"mc-dropout"`` or ``"vi"``.
        acquisition: Any registered acquisition function (``bayesdl.active``).
        batch_size: Items per batch.
        train_steps: Gradient steps per refit (the floor of Gal et al.'s schedule, see
            ``bayesdl.active.loop.retrain_epochs``).
        mc_samples: MC samples when scoring the pool and the held-out set.
        pool_subset: Random unanswered items scored per batch (``None``: all).
        seed: Seed of every random choice.

    Raises:
        ValueError: On a bad setting, or a work directory made with other settings.
    """

    def __init__(
        self,
        data: LabelData,
        work: str | Path,
        *,
        method: str = "mc-dropout",
        acquisition: str = "bald",
        batch_size: int = 10,
        train_steps: int = 200,
        mc_samples: int = 20,
        pool_subset: int | None = 2000,
        seed: int = 0,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r} for labelling; choose one of {METHODS}.")
        self.acquisition = get_acquisition(acquisition).name
        for name, value in (
            ("batch_size", batch_size),
            ("train_steps", train_steps),
            ("mc_samples", mc_samples),
            ("pool_subset", pool_subset or 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
        self.data, self.method_name = data, method
        self.batch_size, self.train_steps, self.mc_samples = batch_size, train_steps, mc_samples
        self.pool_subset, self.seed = pool_subset, seed
        self.work = Path(work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.cases_dir = self.work / "cases"
        self.cases_dir.mkdir(exist_ok=True)
        self.checkpoint = self.work / "posterior.safetensors"
        self.store = Store(self.work / "app.db")
        settings = {**data.fingerprint(), "method": method, "acquisition": self.acquisition,
                    "batch_size": batch_size, "train_steps": train_steps,
                    "mc_samples": mc_samples, "seed": seed}  # fmt: skip
        old = self.store.meta()
        if old:
            diff = [
                f"{k}: {old.get(k)!r} (now {v!r})" for k, v in settings.items() if old.get(k) != v
            ]
            if diff:
                raise ValueError(
                    f"{self.work} was made with other settings ({'; '.join(diff)}); use the "
                    "same options or another --out."
                )
        else:
            self.store.set_meta(settings)
        self._lock = threading.Lock()
        self._predict_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._status: dict[str, Any] = {"phase": "idle", "fraction": 1.0, "error": None}
        self._heldout: tuple[int, CategoricalPredictive] | None = None
        self._case_x: dict[str, Tensor] = {}
        self.method = None
        if self.checkpoint.exists() and self.store.fits():
            self.method = load(self.checkpoint, data.network())
        if self.store.num_batches() == 0:
            self._next_batch(None, _FIRST)
        if not self.maybe_refit():  # while the person labels the first batch
            threading.Thread(target=_warm_up, name="bayesdl-warm-up", daemon=True).start()

    # -- state ---------------------------------------------------------------------------
    @property
    def classes(self) -> list[str]:
        """Class names."""
        return self.data.classes

    def status(self) -> dict[str, Any]:
        """The refit's phase (``idle``, ``training``, ``evaluating``, ``scoring``), fraction
        done, seconds so far, and the last error (None if the last refit succeeded)."""
        with self._lock:
            out = dict(self._status)
        if out["phase"] != "idle":
            out["elapsed"] = time.time() - out["started"]
        return out

    def refitting(self) -> bool:
        """Whether a refit is running."""
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> None:
        """Block until the running refit (if any) ends.

        Args:
            timeout: Most seconds to wait (None: no limit).
        """
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _set(self, **kw: Any) -> None:
        with self._lock:
            self._status.update(kw)

    # -- labelling -----------------------------------------------------------------------
    def check_answer(self, item: Any, status: Any, label: Any) -> tuple[int, str, int | None, int]:
        """Validate an answer; return (item, status, label, batch of the item).

        Args:
            item: Pool index of an item that has been offered.
            status: ``"label"``, ``"skip"`` or ``"unsure"``.
            label: Class index (for ``"label"``; ignored otherwise).

        Raises:
            ValueError: If the item was never shown, the status is unknown or the label is
                not an index into the class list.
        """
        if isinstance(item, bool) or not isinstance(item, int):
            raise ValueError(f"item must be an integer pool index, got {item!r}.")
        if status not in STATUSES:
            raise ValueError(f"status must be one of {list(STATUSES)}, got {status!r}.")
        label = self._check_label(label) if status == "label" else None
        batch = self.store.batch_of(item)
        if batch is None:
            raise ValueError(f"item {item} has not been offered for labelling; reload the page.")
        return item, status, label, batch

    def _check_label(self, label: Any) -> int:
        n = len(self.classes)
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < n:
            raise ValueError(
                f"label must be a class index in 0..{n - 1} ({', '.join(self.classes)}), "
                f"got {label!r}."
            )
        return label

    def answer(self, item: Any, status: Any, label: Any = None) -> None:
        """Record an answer (committed before returning) and refit if the batch is done.

        Args:
            item: Pool index of an offered item.
            status: ``"label"``, ``"skip"`` or ``"unsure"``.
            label: Class index for ``"label"``.

        Raises:
            ValueError: See :meth:`check_answer`.
        """
        item, status, label, batch = self.check_answer(item, status, label)
        self.store.answer(item, status, label, batch)
        self.maybe_refit()

    def undo(self, item: Any = None) -> int | None:
        """Remove the answer for ``item`` (default: the latest answer).

        Args:
            item: Pool index, or None for the most recent answer.

        Returns:
            The item whose answer was removed, or None if there was none.
        """
        if item is None:
            item = self.store.last_answered()
            if item is None:
                return None
        if isinstance(item, bool) or not isinstance(item, int):
            raise ValueError(f"item must be an integer pool index, got {item!r}.")
        return item if self.store.undo(item) else None

    def maybe_refit(self) -> bool:
        """Start the background refit if the current batch is fully answered."""
        batch, items = self.store.current_batch()
        if batch is None or any(it["status"] is None for it in items):
            return False
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return False
            self._status = {"phase": "training", "fraction": 0.0, "error": None,
                            "started": time.time(), "batch": batch}  # fmt: skip
            self._thread = threading.Thread(target=self._refit, name="bayesdl-refit", daemon=True)
            self._thread.start()
        return True

    def _refit(self) -> None:
        try:
            start = time.perf_counter()
            fit = None
            items, labels = self.store.labelled()
            if items:
                fit = self._train(items, labels)
                fit["seconds"] = time.perf_counter() - start
            self._set(phase="scoring", fraction=0.9)
            self._next_batch(fit, _SCORE)
            self._set(phase="idle", fraction=1.0, last_seconds=time.perf_counter() - start)
        except Exception as err:  # shown in the page; the batch stays complete, retried on restart
            log.exception("refit failed")
            self._set(
                phase="idle", fraction=1.0, error=f"refit failed: {type(err).__name__}: {err}"
            )

    def _train(self, items: list[int], labels: list[int]) -> dict[str, Any]:
        n = len(items)
        epochs = retrain_epochs(n, 64, self.train_steps, None)
        total = epochs * n
        seen = [0]

        def count(k: int) -> None:
            seen[0] += k
            if seen[0] % 64 == 0 or seen[0] == total:
                self._set(fraction=0.8 * seen[0] / total)

        rounds = self.store.num_batches()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.seed, rounds, _REFIT))
            net = self.data.network()
        prior = self.data.prior()
        if self.method_name == "vi":
            from bayesdl import priors

            prior = priors.Normal(1.0)
        method = get_method(self.method_name)(net, prior=prior)
        x = self.data.pool_x[torch.tensor(items)]
        y = torch.tensor(labels, dtype=torch.long)
        g = torch.Generator().manual_seed(derive_seed(self.seed, rounds, _REFIT, 1))
        method.fit(_Counting(x, y, count), epochs=epochs, lr=1e-3, batch_size=64,
                   progress=False, generator=g)  # fmt: skip
        self._set(phase="evaluating", fraction=0.8)
        accuracy = nll = None
        held = None
        if self.data.heldout_x is not None and self.data.heldout_y is not None:
            held = self._predict(method, self.data.heldout_x, rounds)
            probs = held.probs.double()
            probs = probs / probs.sum(-1, keepdim=True)
            accuracy = metrics.accuracy(probs, self.data.heldout_y)
            nll = metrics.nll(probs, self.data.heldout_y)
        save(method, self.checkpoint, overwrite=True)  # atomic: temporary file, fsync, rename
        with self._lock:
            self.method = method
            self._heldout = None if held is None else (len(self.store.fits()) + 1, held)
        return {"n_labels": n, "accuracy": accuracy, "nll": nll}

    def _predict(self, method: Any, x: Tensor, rounds: int) -> CategoricalPredictive:
        g = torch.Generator().manual_seed(derive_seed(self.seed, rounds, _SCORE))
        with self._predict_lock:  # one prediction at a time: methods keep per-call state
            pred = method.predict(x, samples=self.mc_samples, generator=g)
        if not isinstance(pred, CategoricalPredictive):
            raise TypeError("labelling needs a classification method.")
        return pred.cpu()

    def _next_batch(self, fit: dict[str, Any] | None, purpose: int) -> None:
        rounds = self.store.num_batches()
        g = torch.Generator().manual_seed(derive_seed(self.seed, rounds, purpose))
        pool = Pool(len(self.data.pool_x), sorted(self.store.answered_items()))
        if pool.num_unlabelled == 0:
            if fit is not None:
                self.store.add_fit_and_batch(fit, [], None)
            return
        candidates = pool.unlabelled_subset(self.pool_subset, g)
        k = min(self.batch_size, len(candidates))
        method = self.method
        if method is None or purpose == _FIRST:
            pick = candidates[torch.randperm(len(candidates), generator=g)[:k]]
            self.store.add_fit_and_batch(fit, pick.tolist(), None)
            return
        pred = self._predict(method, self.data.pool_x[candidates], rounds)
        local = select(self.acquisition, pred, k, generator=g)
        chosen = CategoricalPredictive(pred.samples[:, local])
        self.store.add_fit_and_batch(fit, candidates[local].tolist(), _summaries(chosen))

    # -- views ---------------------------------------------------------------------------
    def item_features(self, x: Tensor) -> list[tuple[str, float]]:
        """Feature names and raw (unstandardised) values of one ``"features"`` input.

        Args:
            x: One standardised input, shape (F,).
        """
        d = self.data
        assert d.feature_mean is not None and d.feature_std is not None
        raw = x * d.feature_std + d.feature_mean
        return [(name, round(float(v), 4)) for name, v in zip(d.feature_names, raw, strict=True)]

    def counts(self) -> dict[str, Any]:
        """Answers so far: labels per class, skipped, not sure."""
        rows = self.store.answers()
        per_class = [0] * len(self.classes)
        skip = unsure = 0
        for r in rows:
            if r["status"] == "label":
                per_class[r["label"]] += 1
            elif r["status"] == "skip":
                skip += 1
            else:
                unsure += 1
        return {"labelled": sum(per_class), "per_class": per_class, "skip": skip,
                "unsure": unsure, "pool": len(self.data.pool_x)}  # fmt: skip

    # -- referral ------------------------------------------------------------------------
    def _heldout_pred(self) -> CategoricalPredictive:
        if self.data.heldout_x is None or self.data.heldout_y is None:
            raise ValueError(
                "referral needs held-out inputs with known labels: a built-in data set, a "
                "labels.csv in the image folder, or labelled rows in the CSV."
            )
        with self._lock:
            method, cached = self.method, self._heldout
        if method is None:
            raise ValueError("there is no model yet: label the first batch, then try again.")
        fits = len(self.store.fits())
        if cached is None or cached[0] != fits:
            cached = (fits, self._predict(method, self.data.heldout_x, fits))
            with self._lock:
                self._heldout = cached
        return cached[1]

    @staticmethod
    def _check_plan(target: Any, score: Any) -> tuple[float, str]:
        if (
            isinstance(target, bool)
            or not isinstance(target, (int, float))
            or not (0 < target <= 1)
        ):
            raise ValueError(f"target accuracy must be a number in (0, 1], got {target!r}.")
        if score not in SCORES:
            raise ValueError(f"score must be one of {list(SCORES)}, got {score!r}.")
        return float(target), str(score)

    def referral_plan(self, target: Any, score: Any = "total") -> dict[str, Any]:
        """The referral threshold for a target accuracy on the kept held-out cases.

        The held-out referral curve (``bayesdl.metrics.referral_curve`` at every count)
        gives the smallest number k of most-uncertain held-out cases to refer so that the
        accuracy on the rest reaches ``target``; the threshold is the k-th largest score,
        and new cases scoring at least that much are referred.

        Args:
            target: Accuracy wanted on the cases kept, in (0, 1].
            score: ``"total"``, ``"epistemic"`` or ``"aleatoric"`` uncertainty.

        Returns:
            ``expected_fraction`` (k / N on held-out), ``threshold`` (None: refer nothing),
            ``accuracy_kept``, ``achievable``, the number of current cases it would refer,
            and the curve (``curve_fraction``, ``curve_accuracy``) for plotting.

        Raises:
            ValueError: On a bad target or score, without held-out labels or a model.
        """
        target, score = self._check_plan(target, score)
        pred = self._heldout_pred()
        probs = pred.probs.double()
        probs = probs / probs.sum(-1, keepdim=True)
        s = getattr(pred, SCORES[score])().double()
        y = self.data.heldout_y
        n = len(s)
        curve = metrics.referral_curve(
            probs, y, s, fractions=torch.arange(n, dtype=torch.float64) / n
        )
        acc = curve.accuracy_retained
        hits = (acc >= target - 1e-12).nonzero().flatten()
        achievable = bool(hits.numel())
        first = int(hits[0]) if achievable else int(torch.argmax(acc))
        k = int(curve.n_referred[first])
        ordered = torch.sort(s, descending=True, stable=True).values
        threshold = float(ordered[k - 1]) if k > 0 else None
        cases = self.case_scores(score)
        referred = sum(1 for c in cases if threshold is not None and c[1] >= threshold)
        step = max(1, n // 100)
        return {
            "target": target, "score": score, "n_heldout": n, "k": k,
            "expected_fraction": k / n, "threshold": threshold,
            "accuracy_kept": float(acc[first]), "accuracy_all": float(acc[0]),
            "achievable": achievable, "cases_total": len(cases), "cases_referred": referred,
            "curve_fraction": [float(v) for v in curve.fraction_referred[::step]],
            "curve_accuracy": [float(v) for v in acc[::step]],
        }  # fmt: skip

    def case_input(self, file: str) -> Tensor:
        """The model input of a stored case file (cached).

        Args:
            file: File name inside ``cases/``.
        """
        if file not in self._case_x:
            raw = (self.cases_dir / file).read_bytes()
            if self.data.kind == "image":
                self._case_x[file] = self.data.image_from_bytes(raw)
            else:
                self._case_x[file] = self.data.features_from_csv(raw.decode())[0]
        return self._case_x[file]

    def case_scores(self, score: str) -> list[tuple[int, float, list[float]]]:
        """(case id, uncertainty score, probabilities) of every case under the current model.

        Args:
            score: ``"total"``, ``"epistemic"`` or ``"aleatoric"``.
        """
        cases = self.store.cases()
        with self._lock:
            method = self.method
        if not cases or method is None:
            return []
        x = torch.stack([self.case_input(c["file"]) for c in cases])
        pred = self._predict(method, x, len(self.store.fits()))
        probs = pred.probs.double()
        probs = probs / probs.sum(-1, keepdim=True)
        s = getattr(pred, SCORES[score])().double()
        return [(c["id"], float(s[i]), [round(float(v), 4) for v in probs[i]])
                for i, c in enumerate(cases)]  # fmt: skip

    def commit_referral(self, target: Any, score: Any = "total") -> dict[str, Any]:
        """Apply the plan's threshold to every case and record the verdicts.

        Args:
            target: Accuracy wanted on the cases kept, in (0, 1].
            score: ``"total"``, ``"epistemic"`` or ``"aleatoric"`` uncertainty.

        Returns:
            The plan (see :meth:`referral_plan`) with the run id.
        """
        plan = self.referral_plan(target, score)
        threshold = plan["threshold"]
        verdicts = [
            {"case": cid, "score": sc, "probs": probs, "predicted": int(np.argmax(probs)),
             "referred": threshold is not None and sc >= threshold}
            for cid, sc, probs in self.case_scores(plan["score"])
        ]  # fmt: skip
        if not verdicts:
            raise ValueError("there are no cases to refer: add some inputs first.")
        fits = self.store.fits()
        plan["run"] = self.store.add_referral_run(
            {**plan, "threshold": math.inf if threshold is None else threshold,
             "fit": fits[-1]["id"] if fits else None}, verdicts)  # fmt: skip
        return plan

    def add_cases(self, raw: bytes, name: str) -> list[int]:
        """Store new inputs as cases (checked and converted first); return their ids.

        Args:
            raw: The file's bytes (PNG/JPEG, or CSV for ``"features"`` data).
            name: Name shown in the page.

        An image file is one case; a CSV (``"features"`` data) gives one case per row.

        Raises:
            ValueError: If the bytes are not inputs of this data's kind.
        """
        if self.data.kind == "image":
            files = [(raw, self.data.image_from_bytes(raw), ".png", name)]
        else:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError(f"{name} is not a UTF-8 CSV file.") from None
            xs = self.data.features_from_csv(text)
            if not xs:
                raise ValueError(f"{name} has a header but no rows.")
            header = ",".join(self.data.feature_names)
            files = []
            for i, x in enumerate(xs):
                values = x * self.data.feature_std + self.data.feature_mean
                row = ",".join(repr(float(v)) for v in values)
                files.append((f"{header}\n{row}\n".encode(), x, ".csv", f"{name} row {i + 2}"))
        ids = []
        for content, x, suffix, label in files:
            file = hashlib.sha256(content).hexdigest()[:24] + suffix
            path = self.cases_dir / file
            if not path.exists():  # written whole, then renamed: never a half file
                tmp = path.with_name(f".{file}.tmp")
                tmp.write_bytes(content)
                tmp.replace(path)
            self._case_x[file] = x
            ids.append(self.store.add_case(file, label))
        return ids

    def decide(self, case: Any, label: Any) -> None:
        """Record the expert's label for a case (committed before returning).

        Args:
            case: Id of a stored case.
            label: Class index.

        Raises:
            ValueError: If the case is unknown or the label is not a class index.
        """
        known = {c["id"] for c in self.store.cases()}
        if isinstance(case, bool) or not isinstance(case, int) or case not in known:
            raise ValueError(f"case must be the id of a stored case, got {case!r}.")
        self.store.decide(case, self._check_label(label))

    def add_sample_cases(self, count: int) -> int:
        """Add up to ``count`` cases from the built-in test split's unused half.

        Args:
            count: Most cases to add.

        Returns:
            How many were added.
        """
        if self.data.sample_x is None:
            raise ValueError("sample cases exist only for the built-in data sets; upload files.")
        have = len(self.store.cases())
        added = 0
        for i in range(have, min(have + count, len(self.data.sample_x))):
            self.add_cases(self.data.render_png(self.data.sample_x[i]), f"sample #{i}")
            added += 1
        return added
