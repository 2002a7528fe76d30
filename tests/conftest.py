"""Fixtures shared by the whole test suite."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Run each test on one intra-op thread.

    The tiny networks of the tests gain nothing from threads, and on a loaded 2-core machine
    two spinning threads make a gradient step tens of times slower.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
