"""predict(draws="independent"): each input its own posterior draws, checked statistically.

Truth here is distributional: with independent draws every input's predictive must be
distributed exactly as with shared draws (two-sample tests), while two inputs' draws must be
uncorrelated (with shared draws two copies of one input are identical, so the test can fail).
Tolerances follow tests/_policy.py (z = 4 Monte Carlo standard errors; KS p-value above
the matching two-sided rate).
"""

import math

import pytest
import torch
from _policy import Z
from _toy import toy_data, toy_net
from scipy import stats
from torch.testing import assert_close

import bayesdl as bdl
from bayesdl.active import bald

METHODS = bdl.method_names()
P_MIN = math.erfc(Z / math.sqrt(2))  # the two-sided false-alarm rate of z = 4


def _net():
    return toy_net()


def _data(n=64):
    return toy_data(n)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


KWARGS = {"swag": {"collect_unit": "step"}, "multiswag": {"collect_unit": "step"}}
"""Enough snapshots in 2 epochs for a non-degenerate SWAG covariance."""


def _fitted(name):
    x, y = _data()
    method = bdl.get_method(name)(_net(), **KWARGS.get(name, {}))
    method.fit((x, y), epochs=2, batch_size=16, progress=False, generator=_gen())
    return method


@pytest.mark.parametrize("name", METHODS)
def test_independent_draws_have_the_shared_marginals_and_are_uncorrelated(name):
    method = _fitted(name)
    x = _data()[0][:1].repeat(2, 1)  # two copies of one input
    s = 600
    shared = method.predict(x, samples=s, generator=_gen(1)).sample_probs[..., 0].double()
    indep = method.predict(x, samples=s, generator=_gen(2), draws="independent")
    indep = indep.sample_probs[..., 0].double()
    assert indep.shape == shared.shape
    if method.max_samples is not None:  # a finite bank keeps its draws
        assert_close(indep, method.predict(x, samples=s, generator=_gen(2)).sample_probs[..., 0]
                     .double())  # fmt: skip
        return
    assert_close(shared[:, 0], shared[:, 1])  # shared: the copies see the same draws
    for n in range(2):  # each input: the same distribution as with shared draws
        assert stats.ks_2samp(indep[:, n].numpy(), shared[:, n].numpy()).pvalue > P_MIN
    r = torch.corrcoef(indep.T)[0, 1]  # independent: uncorrelated across inputs
    assert abs(r) < Z / math.sqrt(s), r


def test_bald_with_independent_draws_equals_bald_with_shared_draws_in_expectation():
    method = _fitted("mc-dropout")
    x = _data()[0][:6]
    reps, s = 300, 10
    shared = torch.stack([bald(method.predict(x, s, generator=_gen(r))) for r in range(reps)])
    indep = torch.stack([
        bald(method.predict(x, s, generator=_gen(10_000 + r), draws="independent"))
        for r in range(reps)
    ]).double()  # fmt: skip
    shared = shared.double()
    se = (shared.var(0) / reps + indep.var(0) / reps).sqrt()
    assert ((shared.mean(0) - indep.mean(0)).abs() <= Z * se).all(), (shared.mean(0), indep.mean(0))


@pytest.mark.parametrize("name", ["mc-dropout", "vi"])
def test_independent_draws_differ_across_input_blocks(name):
    """Blocks of a chunked call get fresh draws (shared draws repeat them in every block)."""
    method = _fitted(name)
    x = _data()[0][:1].repeat(4, 1)
    out = method.predict(x, samples=5, chunk_size=2, generator=_gen(), draws="independent")
    assert out.samples.shape == (5, 4, 3)
    for i in range(1, 4):
        assert not torch.equal(out.samples[:, 0], out.samples[:, i])
    again = method.predict(x, samples=5, chunk_size=2, generator=_gen(), draws="independent")
    assert_close(out.samples, again.samples, rtol=0, atol=0)  # reproducible


def test_mc_dropout_independent_masks_cover_every_dropout_path():
    """Conv + Dropout2d + Dropout -> Flatten -> Linear (the folded path when shared)."""
    from bayesdl.models import gal_cnn

    torch.manual_seed(0)
    method = bdl.MCDropout(gal_cnn(image_size=12))
    x = torch.randn(1, 1, 12, 12).repeat(2, 1, 1, 1)
    s = 400
    shared = method.predict(x, s, generator=_gen(1)).sample_probs[..., 0].double()
    indep = method.predict(x, s, generator=_gen(2), draws="independent").sample_probs[..., 0]
    indep = indep.double()
    assert stats.ks_2samp(indep[:, 0].numpy(), shared[:, 0].numpy()).pvalue > P_MIN
    assert abs(torch.corrcoef(indep.T)[0, 1]) < Z / math.sqrt(s)


def test_bad_draws_is_a_one_line_error():
    with pytest.raises(ValueError, match="draws must be 'shared' or 'independent'"):
        bdl.MCDropout(_net()).predict(_data()[0][:3], 4, draws="per-input")
