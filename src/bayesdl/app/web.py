"""The Flask application: pages, a JSON API, the token check and the error pages.

Every request must carry the session's token: in the URL once (``/?token=...``, as printed
at start; the server answers with a cookie and a redirect to the same page without it), in
that cookie afterwards, or in an ``X-Bayesdl-Token`` header. Anything else gets 403. The
cookie is ``HttpOnly`` and ``SameSite=Strict``, so another site cannot post labels through
the person's browser. Files are served only from fixed names or integer ids, never from a
path taken from the URL. Errors come back as one line of JSON (``{"error": ...}``) that the
page shows; a traceback only ever goes to the server's log.
"""

from __future__ import annotations

import csv
import hmac
import io
import logging
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bayesdl.app.engine import SCORES, Labeller
from bayesdl.app.sources import IMAGE_SUFFIXES

__all__ = ["create_app", "MAX_UPLOAD_BYTES", "MAX_FILE_BYTES", "MAX_FILES"]

log = logging.getLogger("bayesdl.app")

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
"""Largest request body (all uploaded files together); larger requests get 413."""

MAX_FILE_BYTES = 2 * 1024 * 1024
"""Largest single uploaded file."""

MAX_FILES = 500
"""Most files in one upload."""

TOKEN_HEADER = "X-Bayesdl-Token"


def _body() -> dict[str, Any]:
    from flask import request

    if not request.is_json:
        raise ValueError("send the request body as JSON (Content-Type: application/json).")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ValueError("the request body must be a JSON object.")
    return body


def create_app(labeller: Labeller, token: str, *, cookie_name: str = "bayesdl_token") -> Any:
    """Build the Flask app around a :class:`~bayesdl.app.engine.Labeller`.

    Args:
        labeller: The session's model side and database.
        token: The secret every request must carry (see the module docstring).
        cookie_name: Name of the cookie holding the token (one per port, so two apps on
            one host do not overwrite each other's).

    Returns:
        A ``flask.Flask`` WSGI application.

    Raises:
        ImportError: If Flask is not installed (``pip install bayesdl[app]``).
        ValueError: If the token is shorter than 16 characters.
    """
    try:
        from flask import Flask, Response, abort, jsonify, redirect, render_template, request
        from werkzeug.exceptions import HTTPException
    except ImportError as err:
        raise ImportError(
            "the labelling app needs Flask and waitress: pip install 'bayesdl[app]'."
        ) from err
    if not isinstance(token, str) or len(token) < 16:
        raise ValueError("token must be a string of at least 16 characters.")
    here = Path(__file__).parent
    app = Flask("bayesdl.app", template_folder=str(here / "templates"),
                static_folder=str(here / "static"))  # fmt: skip
    app.config["MAX_CONTENT_LENGTH"] = MAX_UPLOAD_BYTES
    lab = labeller
    data = lab.data

    # -- the token ---------------------------------------------------------------------
    def _valid(given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), token.encode())

    @app.before_request
    def check_token() -> Any:
        in_url = request.args.get("token")
        if _valid(in_url):
            if request.method == "GET" and not request.path.startswith("/api/"):
                args = {k: v for k, v in request.args.items() if k != "token"}
                target = request.path + ("?" + urlencode(args) if args else "")
                resp = redirect(target, code=303)
            else:
                return None
        elif _valid(request.cookies.get(cookie_name)) or _valid(request.headers.get(TOKEN_HEADER)):
            return None
        else:
            message = (
                "forbidden: open the address with ?token=... that `bayesdl label` printed "
                "when it started."
            )
            if request.path.startswith("/api/"):
                return jsonify(error=message), 403
            return Response(_page("Forbidden", message), status=403, mimetype="text/html")
        resp.set_cookie(cookie_name, token, httponly=True, samesite="Strict", path="/")
        return resp

    @app.after_request
    def headers(resp: Any) -> Any:
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
        resp.headers.setdefault("Cache-Control", "no-store")
        return resp

    # -- errors: one line, never a traceback ---------------------------------------------
    @app.errorhandler(ValueError)
    def bad_input(err: ValueError) -> Any:
        text = " ".join(str(err).split())
        if request.path.startswith("/api/"):
            return jsonify(error=text), 400
        return Response(_page("Cannot do that", text), status=400, mimetype="text/html")

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException) -> Any:
        text = {
            404: "not found.",
            405: "method not allowed.",
            413: f"upload too large: at most {MAX_UPLOAD_BYTES // 2**20} MiB per request and "
            f"{MAX_FILE_BYTES // 2**20} MiB per file.",
        }.get(err.code or 500, err.description or err.name)
        if request.path.startswith("/api/"):
            return jsonify(error=text), err.code
        return Response(_page(err.name, text), status=err.code, mimetype="text/html")

    @app.errorhandler(Exception)
    def internal(err: Exception) -> Any:
        log.exception("request failed: %s %s", request.method, request.path)
        text = f"internal error ({type(err).__name__}); the server's log has the details."
        if request.path.startswith("/api/"):
            return jsonify(error=text), 500
        return Response(_page("Error", text), status=500, mimetype="text/html")

    # -- pages -------------------------------------------------------------------------
    common = {"classes": data.classes, "data_name": data.name, "kind": data.kind}

    @app.get("/")
    def label_page() -> Any:
        return render_template("label.html", page="label", **common)

    @app.get("/referral")
    def referral_page() -> Any:
        return render_template("referral.html", page="referral", scores=list(SCORES), **common)

    # -- labelling API -----------------------------------------------------------------
    def state() -> dict[str, Any]:
        batch, items = lab.store.current_batch()
        out = []
        for it in items:
            entry = {k: it[k] for k in ("item", "probs", "total", "epistemic", "aleatoric",
                                        "status", "label")}  # fmt: skip
            entry["name"] = data.item_names[it["item"]]
            if data.kind == "image":
                entry["image"] = f"/item/{it['item']}.png"
            else:
                entry["features"] = lab.item_features(data.pool_x[it["item"]])
            out.append(entry)
        fits = lab.store.fits()
        return {
            "batch": batch, "items": out, "counts": lab.counts(),
            "curve": [{"n": f["n_labels"], "accuracy": f["accuracy"], "seconds": f["seconds"]}
                      for f in fits],
            "refit": lab.status(), "refitting": lab.refitting(),
            "acquisition": lab.acquisition, "method": lab.method_name,
            "has_heldout": data.heldout_y is not None,
            "has_model": lab.method is not None,
        }  # fmt: skip

    @app.get("/api/state")
    def get_state() -> Any:
        return jsonify(state())

    @app.post("/api/answer")
    def post_answer() -> Any:
        body = _body()
        lab.answer(body.get("item"), body.get("status", "label"), body.get("label"))
        return jsonify(state())

    @app.post("/api/undo")
    def post_undo() -> Any:
        body = _body()
        item = lab.undo(body.get("item"))
        return jsonify({**state(), "undone": item})

    @lru_cache(maxsize=4096)
    def item_png(item: int) -> bytes:
        return data.render_png(data.pool_x[item])

    @app.get("/item/<int:item>.png")
    def item_image(item: int) -> Any:
        if data.kind != "image" or not 0 <= item < len(data.pool_x):
            abort(404)
        return Response(item_png(item), mimetype="image/png")

    # -- referral API ------------------------------------------------------------------
    def _target(value: Any) -> Any:
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise ValueError(f"target accuracy must be a number, got {value!r}.") from None
        return value

    @app.get("/api/referral/plan")
    def get_plan() -> Any:
        return jsonify(lab.referral_plan(_target(request.args.get("target", "0.99")),
                                         request.args.get("score", "total")))  # fmt: skip

    @app.post("/api/referral/commit")
    def post_commit() -> Any:
        body = _body()
        plan = lab.commit_referral(_target(body.get("target")), body.get("score", "total"))
        return jsonify({**plan, **referral_state()})

    def referral_state() -> dict[str, Any]:
        cases = []
        for c in lab.store.cases():
            entry = {k: c[k] for k in ("id", "name", "referred", "predicted", "probs", "score",
                                       "decision")}  # fmt: skip
            if data.kind == "image":
                entry["image"] = f"/case/{c['id']}.png"
            else:
                entry["features"] = lab.item_features(lab.case_input(c["file"]))
            cases.append(entry)
        return {"cases": cases, "runs": lab.store.referral_runs(),
                "has_model": lab.method is not None,
                "samples": data.sample_x is not None}  # fmt: skip

    @app.get("/api/referral/state")
    def get_referral_state() -> Any:
        return jsonify(referral_state())

    @app.post("/api/referral/decide")
    def post_decide() -> Any:
        body = _body()
        lab.decide(body.get("case"), body.get("label"))
        return jsonify(referral_state())

    @app.post("/api/cases")
    def post_cases() -> Any:
        files = request.files.getlist("files")
        if not files:
            raise ValueError("choose one or more files to upload (form field 'files').")
        if len(files) > MAX_FILES:
            raise ValueError(f"at most {MAX_FILES} files per upload, got {len(files)}.")
        allowed = IMAGE_SUFFIXES if data.kind == "image" else (".csv",)
        prepared = []
        for f in files:  # check every file before storing any
            name = Path(f.filename or "upload").name
            if Path(name).suffix.lower() not in allowed:
                raise ValueError(f"{name}: only {', '.join(allowed)} files are accepted here.")
            raw = f.read(MAX_FILE_BYTES + 1)
            if len(raw) > MAX_FILE_BYTES:
                raise ValueError(f"{name} is larger than {MAX_FILE_BYTES // 2**20} MiB.")
            if data.kind == "image":
                data.image_from_bytes(raw)  # raises ValueError naming what is wrong
            prepared.append((raw, name))
        ids = [i for raw, name in prepared for i in lab.add_cases(raw, name)]
        return jsonify({**referral_state(), "added": ids})

    @app.post("/api/cases/sample")
    def post_sample_cases() -> Any:
        count = _body().get("count", 50)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 1000:
            raise ValueError(f"count must be an integer in [1, 1000], got {count!r}.")
        added = lab.add_sample_cases(count)
        return jsonify({**referral_state(), "added": added})

    @app.get("/case/<int:case>.png")
    def case_image(case: int) -> Any:
        match = [c for c in lab.store.cases() if c["id"] == case]
        if data.kind != "image" or not match:
            abort(404)
        return Response(data.render_png(lab.case_input(match[0]["file"])), mimetype="image/png")

    # -- exports -----------------------------------------------------------------------
    @app.get("/download/labels.csv")
    def labels_csv() -> Any:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["item", "name", "status", "label", "class", "updated"])
        for r in lab.store.answers():
            cls = data.classes[r["label"]] if r["label"] is not None else ""
            w.writerow([r["item"], data.item_names[r["item"]], r["status"],
                        "" if r["label"] is None else r["label"], cls, f"{r['updated']:.3f}"])  # fmt: skip
        return Response(buf.getvalue(), mimetype="text/csv",
                        headers={"Content-Disposition": "attachment; filename=labels.csv"})  # fmt: skip

    @app.get("/download/decisions.csv")
    def decisions_csv() -> Any:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["case", "name", "referred", "predicted", "score", "expert_label", "class"])
        for c in lab.store.cases():
            dec = c["decision"]
            w.writerow([c["id"], c["name"], "" if c["referred"] is None else c["referred"],
                        "" if c["predicted"] is None else data.classes[c["predicted"]],
                        "" if c["score"] is None else f"{c['score']:.6f}",
                        "" if dec is None else dec, "" if dec is None else data.classes[dec]])  # fmt: skip
        return Response(buf.getvalue(), mimetype="text/csv",
                        headers={"Content-Disposition": "attachment; filename=decisions.csv"})  # fmt: skip

    @app.get("/download/posterior.safetensors")
    def posterior() -> Any:
        from flask import send_file

        if not lab.checkpoint.exists():
            raise ValueError("there is no model yet: label the first batch, then export.")
        raw = lab.checkpoint.read_bytes()  # one read of an atomically replaced file
        return send_file(io.BytesIO(raw), mimetype="application/octet-stream",
                         as_attachment=True, download_name="posterior.safetensors")  # fmt: skip

    return app


def _page(title: str, message: str) -> str:
    from markupsafe import escape

    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>bayesdl: "
        f"{escape(title)}</title></head><body style='font-family:sans-serif;margin:3em'>"
        f"<h1>{escape(title)}</h1><p>{escape(message)}</p></body></html>"
    )
