"""The loop's posterior draws for scoring, and BatchBALD's published retraining schedule."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import bayesdl as bdl
from bayesdl.active import BATCHBALD_SCHEDULE, ActiveLearner, BatchBALDSchedule, FixedLengthBatches
from bayesdl.methods.base import BaseMethod

TRAIN, TEST = bdl.data.digits("train"), bdl.data.digits("test")


def _net() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 10)
    )


def _learner(**kw) -> ActiveLearner:
    settings = dict(
        initial=10, step=5, budget=15, pool_subset=100, mc_samples=4, train_steps=5,
        progress=False, seed=0,
    )  # fmt: skip
    settings.update(kw)
    return ActiveLearner(_net, TRAIN, TEST, **settings)


@pytest.mark.parametrize(
    ("acquisition", "draws", "expected"),
    [
        ("bald", "auto", "independent"),
        ("power-bald", "auto", "independent"),
        ("batchbald", "auto", "shared"),
        ("epig", "auto", "shared"),
        ("bald", "shared", "shared"),
    ],
)
def test_the_pool_is_scored_with_the_preferred_draws(acquisition, draws, expected, monkeypatch):
    seen = []
    original = BaseMethod.predict

    def spy(self, x, samples=100, **kw):
        seen.append(kw.get("draws", "shared"))
        return original(self, x, samples, **kw)

    monkeypatch.setattr(BaseMethod, "predict", spy)
    learner = _learner(acquisition=acquisition, draws=draws)
    assert learner.config()["draws"] == expected
    learner.run()
    assert expected in seen  # the pool scoring
    assert seen.count(expected if expected == "independent" else "shared") >= 1
    if expected == "independent":  # test-set predictions stay shared
        assert seen.count("shared") == len(seen) - seen.count("independent") >= 1


def test_fixed_length_batches_follow_the_random_fixed_length_sampler():
    x = torch.arange(3.0).unsqueeze(1)
    y = torch.arange(3)
    batches = FixedLengthBatches(x, y, batch_size=4, length=10)
    assert batches.n_data == 3 and len(batches) == 3  # the prior scales with the 3 points
    got = torch.cat([yb for _, yb in batches.epoch(torch.Generator().manual_seed(0))])
    expected = torch.randperm(10, generator=torch.Generator().manual_seed(0)) % 3
    assert got.tolist() == expected.tolist()
    counts = torch.bincount(got, minlength=3)
    assert counts.sum() == 10 and counts.min() >= 3 and counts.max() <= 4
    whole = FixedLengthBatches(x, y, batch_size=2, length=2)  # never fewer than N samples
    assert sorted(torch.cat([b for _, b in whole.epoch(None)]).tolist()) == [0, 1, 2]
    with pytest.raises(ValueError, match="length"):
        FixedLengthBatches(x, y, 4, 0)


def test_batchbald_schedule_trains_with_early_stopping_on_val_data(monkeypatch):
    calls = []
    original = BaseMethod.fit

    def spy(self, data, **kw):
        report = original(self, data, **kw)
        calls.append((data, kw, report))
        return report

    monkeypatch.setattr(BaseMethod, "fit", spy)
    # Kirsch et al.'s code (laaos_results/paper/mnist_*_k100_b10_*.py): these values
    assert (BATCHBALD_SCHEDULE.epoch_samples, BATCHBALD_SCHEDULE.max_epochs) == (5056, 30)
    assert (BATCHBALD_SCHEDULE.patience, BATCHBALD_SCHEDULE.batch_size) == (3, 64)
    assert (BATCHBALD_SCHEDULE.val_size, BATCHBALD_SCHEDULE.mc_samples) == (1024, 100)
    # a shorter epoch keeps the test fast; everything else as published
    monkeypatch.setattr("bayesdl.active.loop.BATCHBALD_SCHEDULE", BatchBALDSchedule(640))
    val = (TRAIN.x[-64:], TRAIN.y[-64:])
    learner = _learner(budget=10, schedule="batchbald", val_data=val)
    learner.run()
    ((data, kw, report),) = calls
    assert isinstance(data, FixedLengthBatches)
    assert data.n_data == 10 and len(data) == 10  # 640 samples in minibatches of 64
    assert kw["epochs"] == 30 and kw["patience"] == 3
    assert 1 <= len(report.val_nll) <= 30
    if len(report.val_nll) < 30:  # stopped early: 3 epochs after the best one
        assert report.best_epoch == len(report.val_nll) - 4
    assert learner.config()["schedule"] == "batchbald"


def test_bad_draws_and_schedule_settings():
    with pytest.raises(ValueError, match="draws must be"):
        _learner(draws="per-input")
    with pytest.raises(ValueError, match="schedule must be"):
        _learner(schedule="kirsch")
    with pytest.raises(ValueError, match="needs val_data"):
        _learner(schedule="batchbald")
    with pytest.raises(ValueError, match="needs val_data"):
        _learner(val_data=(TRAIN.x[:5], TRAIN.y[:5]))
