"""The web app's HTTP API through Flask's test client: storage, undo, the token, bad input."""

from __future__ import annotations

import csv
import io
import sqlite3
import threading
import time

import numpy as np
import pytest
import torch
from conftest import TOKEN

import bayesdl as bdl
from bayesdl.app import Store
from bayesdl.app.web import MAX_FILE_BYTES, MAX_UPLOAD_BYTES


def _batch(client):
    state = client.get("/api/state").get_json()
    return state, [it["item"] for it in state["items"]]


def _label_all(client, truth):
    _, items = _batch(client)
    for item in items:
        resp = client.post("/api/answer", json={"item": item, "label": int(truth[item])})
        assert resp.status_code == 200, resp.get_json()
    return items


def _rows(work):
    """The labels as SQLite holds them, read with the standard library only."""
    con = sqlite3.connect(work / "app.db")
    try:
        return con.execute("SELECT item, status, label FROM labels ORDER BY item").fetchall()
    finally:
        con.close()


def _png(side=8, value=128):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (side, side), value).save(buf, format="PNG")
    return buf.getvalue()


# -- the token -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path", ["/", "/referral", "/api/state", "/item/0.png", "/static/app.css",
             "/download/labels.csv", "/download/posterior.safetensors"],
)  # fmt: skip
def test_every_route_needs_the_token(make_app, path):
    _, app = make_app()
    client = app.test_client()
    assert client.get(path).status_code == 403
    assert client.get(path, headers={"X-Bayesdl-Token": "wrong" * 5}).status_code == 403
    client.set_cookie("bayesdl_token", "wrong-token-wrong-token")
    assert client.get(path).status_code == 403
    assert client.get(path, headers={"X-Bayesdl-Token": TOKEN}).status_code in (200, 400)


def test_posts_need_the_token_too(make_app):
    lab, app = make_app()
    item = lab.store.current_batch()[1][0]["item"]
    resp = app.test_client().post("/api/answer", json={"item": item, "label": 1})
    assert resp.status_code == 403 and "token" in resp.get_json()["error"]
    assert lab.store.answers() == []


def test_token_in_url_sets_a_strict_httponly_cookie_and_drops_it_from_the_url(make_app):
    _, app = make_app()
    client = app.test_client()
    resp = client.get(f"/referral?token={TOKEN}&x=1")
    assert resp.status_code == 303 and resp.headers["Location"] == "/referral?x=1"
    cookie = resp.headers["Set-Cookie"]
    assert (
        f"bayesdl_token={TOKEN}" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    )
    page = client.get("/")
    assert page.status_code == 200 and b"Held-out accuracy" in page.data


# -- labels -------------------------------------------------------------------------------------
def test_labels_are_stored_before_the_response(make_app, client_of, tmp_path):
    lab, app = make_app()
    client = client_of(app)
    state, items = _batch(client)
    assert len(items) == 10 and all(it["status"] is None for it in state["items"])
    client.post("/api/answer", json={"item": items[0], "label": 7})
    client.post("/api/answer", json={"item": items[1], "status": "skip"})
    client.post("/api/answer", json={"item": items[2], "status": "unsure", "label": 3})
    # a second answer to the same item replaces the first (no duplicate)
    state = client.post("/api/answer", json={"item": items[0], "label": 4}).get_json()
    expected = sorted([(items[0], "label", 4), (items[1], "skip", None),
                       (items[2], "unsure", None)])  # fmt: skip
    assert _rows(tmp_path / "work") == expected
    assert state["counts"]["labelled"] == 1 and state["counts"]["per_class"][4] == 1
    assert state["counts"]["skip"] == 1 and state["counts"]["unsure"] == 1
    csv_text = client.get("/download/labels.csv").data.decode()
    assert f"{items[0]},digits train #{items[0]},label,4,4," in csv_text


def test_undo_removes_the_answer(make_app, client_of, tmp_path):
    _, app = make_app()
    client = client_of(app)
    _, items = _batch(client)
    client.post("/api/answer", json={"item": items[0], "label": 2})
    client.post("/api/answer", json={"item": items[1], "label": 5})
    state = client.post("/api/undo", json={"item": items[0]}).get_json()
    assert state["undone"] == items[0]
    assert _rows(tmp_path / "work") == [(items[1], "label", 5)]
    assert [it["status"] for it in state["items"][:2]] == [None, "label"]
    assert client.post("/api/undo", json={"item": items[0]}).get_json()["undone"] is None
    # without an item: the latest answer
    assert client.post("/api/undo", json={}).get_json()["undone"] == items[1]
    assert _rows(tmp_path / "work") == []


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"label": 10}, "0..9"),
        ({"label": -1}, "0..9"),
        ({"label": "3"}, "class index"),
        ({"label": 2.0}, "class index"),
        ({"label": True}, "class index"),
        ({"status": "maybe"}, "status must be one of"),
        ({"item": 10**6, "label": 1}, "not been offered"),
        ({"item": "0", "label": 1}, "integer pool index"),
    ],
)
def test_bad_labels_are_refused_with_a_one_line_error(make_app, client_of, tmp_path, body, words):
    _, app = make_app()
    client = client_of(app)
    _, items = _batch(client)
    resp = client.post("/api/answer", json={"item": items[0], **body})
    assert resp.status_code == 400
    error = resp.get_json()["error"]
    assert words in error and "\n" not in error and "Traceback" not in error
    assert _rows(tmp_path / "work") == []


def test_a_body_that_is_not_json_is_refused(make_app, client_of):
    _, app = make_app()
    client = client_of(app)
    resp = client.post("/api/answer", data="item=1&label=2")
    assert resp.status_code == 400 and "JSON" in resp.get_json()["error"]
    resp = client.post("/api/answer", data="[1, 2]", content_type="application/json")
    assert resp.status_code == 400 and "JSON object" in resp.get_json()["error"]


def test_two_tabs_neither_lose_nor_duplicate_labels(make_app, client_of, tmp_path, digits_truth):
    _, app = make_app(batch_size=20)
    tabs = [client_of(app), client_of(app)]
    _, items = _batch(tabs[0])
    # both tabs answer every item of the batch at once (the same items, the same truth)
    errors = []

    def work(client, order):
        for item in order:
            resp = client.post("/api/answer", json={"item": item, "label": int(digits_truth[item])})
            if resp.status_code != 200:
                errors.append(resp.get_json())

    threads = [threading.Thread(target=work, args=(tabs[0], items)),
               threading.Thread(target=work, args=(tabs[1], items[::-1]))]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = _rows(tmp_path / "work")
    assert [r[0] for r in rows] == sorted(items)
    assert all(label == int(digits_truth[item]) for item, _, label in rows)
    con = sqlite3.connect(tmp_path / "work" / "app.db")
    events = con.execute("SELECT count(*) FROM events WHERE kind = 'answer'").fetchone()[0]
    con.close()
    assert events == 2 * len(items)  # every acknowledged answer was recorded


# -- files: traversal and uploads ------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    ["/static/../app.db", "/static/..%2f..%2fapp.db", "/static/%2e%2e/%2e%2e/app.db",
     "/download/..%2Fapp.db", "/download/../../app.db", "/download/app.db",
     "/item/..%2F..%2Fapp.db.png", "/item/-1.png", "/item/99999.png", "/case/1.png",
     "/static//etc/passwd", "/download//etc/passwd"],
)  # fmt: skip
def test_path_traversal_is_refused(make_app, client_of, tmp_path, path):
    _, app = make_app()
    client = client_of(app)
    resp = client.get(path, follow_redirects=True)  # "//" is merged, then refused
    assert resp.status_code == 404
    assert b"SQLite format" not in resp.data and b"root:" not in resp.data


def test_oversize_uploads_are_refused(make_app, client_of):
    lab, app = make_app()
    client = client_of(app)
    big = b"\x89PNG" + b"0" * (MAX_UPLOAD_BYTES + 10)
    resp = client.post("/api/cases", data={"files": (io.BytesIO(big), "big.png")})
    assert resp.status_code == 413 and "too large" in resp.get_json()["error"]
    one = b"\x89PNG" + b"0" * (MAX_FILE_BYTES + 10)
    resp = client.post("/api/cases", data={"files": (io.BytesIO(one), "one.png")})
    assert resp.status_code == 400 and "larger than" in resp.get_json()["error"]
    assert lab.store.cases() == []


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [("notes.txt", b"hello", "only .png"),
     ("fake.png", b"not an image at all", "not a readable PNG or JPEG"),
     ("x.png", b"GIF89a" + b"\0" * 40, "PNG or JPEG")],
)  # fmt: skip
def test_uploads_are_type_checked(make_app, client_of, name, content, words):
    lab, app = make_app()
    client = client_of(app)
    resp = client.post("/api/cases", data={"files": (io.BytesIO(content), name)})
    assert resp.status_code == 400 and words in resp.get_json()["error"]
    assert lab.store.cases() == [] and not list(lab.cases_dir.iterdir())


def test_a_gif_renamed_png_is_refused(make_app, client_of):
    from PIL import Image

    lab, app = make_app()
    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, format="GIF")
    resp = client_of(app).post("/api/cases", data={"files": (io.BytesIO(buf.getvalue()), "a.png")})
    assert resp.status_code == 400 and "got GIF" in resp.get_json()["error"]


def test_valid_images_become_cases(make_app, client_of):
    lab, app = make_app()
    client = client_of(app)
    files = [(io.BytesIO(_png(8, 0)), "black.png"), (io.BytesIO(_png(40, 255)), "white.png")]
    state = client.post("/api/cases", data={"files": files}).get_json()
    assert [c["name"] for c in state["cases"]] == ["black.png", "white.png"]
    x = lab.case_input(lab.store.cases()[1]["file"])
    torch.testing.assert_close(x, torch.ones(1, 8, 8))  # resized to the digits' 8x8, in [0, 1]
    assert client.get("/case/1.png").data.startswith(b"\x89PNG")


# -- refit, restart, export ------------------------------------------------------------------
def test_a_full_batch_refits_and_offers_a_new_batch(make_app, client_of, digits_truth, tmp_path):
    lab, app = make_app()
    client = client_of(app)
    first = _label_all(client, digits_truth)
    lab.wait(timeout=120)
    state, items = _batch(client)
    assert state["refit"]["error"] is None and not state["refitting"]
    assert state["batch"] == 2 and len(items) == 10 and not set(items) & set(first)
    assert len(state["curve"]) == 1 and state["curve"][0]["n"] == 10
    assert 0.0 <= state["curve"][0]["accuracy"] <= 1.0
    for it in state["items"]:
        assert sum(it["probs"]) == pytest.approx(1.0, abs=1e-3)
        # total = aleatoric + epistemic (entropy decomposition), each >= 0
        assert it["total"] == pytest.approx(it["aleatoric"] + it["epistemic"], abs=1e-5)
        assert it["epistemic"] >= -1e-6 and it["aleatoric"] >= 0
    # BALD picks the highest mutual information first
    epi = [it["epistemic"] for it in state["items"]]
    assert epi == sorted(epi, reverse=True)

    # the exported posterior is a bdl.save file that bdl.load rebuilds
    resp = client.get("/download/posterior.safetensors")
    assert resp.status_code == 200
    path = tmp_path / "posterior.safetensors"
    path.write_bytes(resp.data)
    loaded = bdl.load(path, lab.data.network())
    for name, value in lab.method.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value)

    # a new server on the same work directory: same labels, batch, model and curve
    lab2, app2 = make_app(tmp_path / "work")
    state2, items2 = _batch(client_of(app2))
    assert items2 == items and state2["curve"] == state["curve"]
    assert lab2.store.labelled() == lab.store.labelled()
    for name, value in lab.method.state_dict().items():
        torch.testing.assert_close(lab2.method.state_dict()[name], value)


def test_the_page_stays_responsive_during_a_refit(make_app, client_of, digits_truth):
    lab, app = make_app(train_steps=600)
    client = client_of(app)
    _label_all(client, digits_truth)
    seen, slowest = [], 0.0
    while lab.refitting():
        start = time.perf_counter()
        state = client.get("/api/state").get_json()
        slowest = max(slowest, time.perf_counter() - start)
        if state["refitting"]:
            seen.append((state["refit"]["phase"], state["refit"]["fraction"]))
        time.sleep(0.05)
    assert any(phase == "training" and 0 < f < 0.8 for phase, f in seen), seen
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions)  # progress only moves forward
    assert slowest < 2.0, f"a request took {slowest:.2f} s during the refit"


def test_exporting_before_any_model_explains_why(make_app, client_of):
    _, app = make_app()
    resp = client_of(app).get("/download/posterior.safetensors")
    assert resp.status_code == 400 and b"label the first batch" in resp.data
    assert resp.mimetype == "text/html" and b"Traceback" not in resp.data


def test_the_cli_binds_to_loopback_by_default():
    from bayesdl.cli import build_parser

    args = build_parser().parse_args(["label", "--data", "digits", "--out", "w"])
    assert (args.host, args.port, args.method, args.acquisition) == (
        "127.0.0.1", 8000, "mc-dropout", "bald")  # fmt: skip


@pytest.mark.parametrize(
    ("options", "words"),
    [({"seed": -1}, "seed must be"), ({"batch_size": 0}, "batch_size must be"),
     ({"method": "laplace"}, "unknown method"), ({"acquisition": "psychic"}, "unknown acquisition"),
     ({"mc_samples": 2.5}, "mc_samples must be")],
)  # fmt: skip
def test_bad_settings_are_refused(make_app, options, words):
    with pytest.raises(ValueError, match=words):
        make_app(**options)


def test_other_settings_on_the_same_work_directory_are_refused(make_app, tmp_path):
    make_app()
    with pytest.raises(ValueError, match="acquisition: 'bald' \\(now 'entropy'\\)"):
        make_app(tmp_path / "work", acquisition="entropy")


def test_restart_during_an_unfinished_refit_runs_it_again(
    make_app, client_of, digits_truth, tmp_path
):
    lab, app = make_app()
    _label_all(client_of(app), digits_truth)
    lab.wait(timeout=120)
    # as if killed after the last answer, before the refit committed: drop the refit's rows
    con = sqlite3.connect(tmp_path / "work" / "app.db")
    con.execute("DELETE FROM batch_items WHERE batch = 2")
    con.execute("DELETE FROM batches WHERE id = 2")
    con.execute("DELETE FROM fits")
    con.commit()
    con.close()
    lab2, app2 = make_app(tmp_path / "work")
    assert lab2.refitting() or lab2.store.num_batches() == 2
    lab2.wait(timeout=120)
    assert lab2.store.num_batches() == 2 and len(lab2.store.fits()) == 1


# -- referral ----------------------------------------------------------------------------------
def _brute_force_k(probs, y, score, target):
    """Fewest most-uncertain examples to refer so the rest reach ``target`` (a plain loop)."""
    order = np.argsort(-score, kind="stable")
    correct = (probs.argmax(1) == y)[order]
    n = len(y)
    for k in range(n):
        if correct[k:].mean() >= target - 1e-12:
            return k
    return None


def test_referral_threshold_matches_brute_force(make_app, client_of, digits_truth):
    lab, app = make_app(train_steps=60)
    client = client_of(app)
    assert client.get("/api/referral/plan?target=0.9").status_code == 400  # no model yet
    for _ in range(2):
        _label_all(client, digits_truth)
        lab.wait(timeout=120)
    client.post("/api/cases/sample", json={"count": 40})
    pred = lab._heldout_pred()  # noqa: SLF001 - the test reads the same predictions
    probs = pred.probs.double()
    probs = (probs / probs.sum(-1, keepdim=True)).numpy()
    y = lab.data.heldout_y.numpy()
    for score, values in (("total", pred.entropy()), ("epistemic", pred.mutual_information())):
        s = values.double().numpy()
        for target in (0.6, 0.8, 0.95):
            plan = client.get(f"/api/referral/plan?target={target}&score={score}").get_json()
            k = _brute_force_k(probs, y, s, target)
            assert plan["achievable"] is (k is not None)
            if k is not None:
                assert plan["k"] == k and plan["expected_fraction"] == pytest.approx(k / len(y))
                kept = np.argsort(-s, kind="stable")[k:]
                assert plan["accuracy_kept"] == pytest.approx((probs.argmax(1) == y)[kept].mean())
    plan = client.get("/api/referral/plan?target=0.8").get_json()
    out = client.post("/api/referral/commit", json={"target": 0.8}).get_json()
    cases = out["cases"]
    assert len(cases) == 40 and out["cases_referred"] == plan["cases_referred"]
    for c in cases:
        assert c["referred"] == int(
            plan["threshold"] is not None and c["score"] >= plan["threshold"]
        )
    referred = [c for c in cases if c["referred"]]
    assert 0 < len(referred) == plan["cases_referred"] < len(cases)
    cid = referred[0]["id"]
    assert client.post("/api/referral/decide", json={"case": cid, "label": 12}).status_code == 400
    state = client.post("/api/referral/decide", json={"case": cid, "label": 3}).get_json()
    assert [c["decision"] for c in state["cases"] if c["id"] == cid] == [3]
    rows = list(csv.reader(io.StringIO(client.get("/download/decisions.csv").data.decode())))
    assert [r[5] for r in rows if r[0] == str(cid)] == ["3"]
    assert Store(lab.work / "app.db").cases()[cid - 1]["decision"] == 3


@pytest.mark.parametrize("query", ["target=1.5", "target=0", "target=abc", "score=loud"])
def test_bad_referral_settings_are_refused(make_app, client_of, query):
    _, app = make_app()
    resp = client_of(app).get(f"/api/referral/plan?{query}")
    assert resp.status_code == 400 and resp.get_json()["error"]
