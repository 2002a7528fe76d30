"""Fixtures of the web app's tests: digits, a work directory, a client holding the token."""

from __future__ import annotations

import pytest

pytest.importorskip("flask")
pytest.importorskip("waitress")
pytest.importorskip("PIL")
pytest.importorskip("sklearn")  # the digits

TOKEN = "test-token-0123456789abcdef"


@pytest.fixture(scope="session")
def digits_source():
    from bayesdl.app import load_source

    return load_source("digits")


@pytest.fixture(scope="session")
def digits_truth():
    import bayesdl as bdl

    return bdl.data.digits("train").y


@pytest.fixture
def make_app(tmp_path, digits_source):
    """``make_app(**labeller_options) -> (labeller, flask_app)`` on a fresh work directory.

    Short refits (30 gradient steps, 8 MC samples) keep the tests fast.
    """
    from bayesdl.app import Labeller, create_app

    made = []

    def make(work=None, **kw):
        options = {"train_steps": 30, "mc_samples": 8, **kw}
        lab = Labeller(digits_source, work or tmp_path / "work", **options)
        made.append(lab)
        return lab, create_app(lab, TOKEN)

    yield make
    for lab in made:
        lab.wait(timeout=120)


@pytest.fixture
def client_of():
    """``client_of(app)``: a test client that has visited the tokened URL (holds the cookie)."""

    def make(app):
        client = app.test_client()
        resp = client.get(f"/?token={TOKEN}")
        assert resp.status_code == 303
        return client

    return make
