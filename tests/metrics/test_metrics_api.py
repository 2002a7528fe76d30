"""bayesdl.metrics states its whole public API (doctests and arguments: tests/test_docs.py)."""

import bayesdl.metrics


def test_all_is_complete_and_importable():
    public = {name for name in dir(bayesdl.metrics) if not name.startswith("_")}
    modules = {"calibration", "ood", "referral", "regression"}
    assert public - modules == set(bayesdl.metrics.__all__)
