"""The labelled/unlabelled pool."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bayesdl.active import Pool


def test_label_keeps_order_and_updates_sets():
    pool = Pool(8, labelled=[5])
    pool.label(torch.tensor([2, 7]))
    pool.label(np.array([0]))
    assert pool.labelled.tolist() == [5, 2, 7, 0]
    assert pool.unlabelled.tolist() == [1, 3, 4, 6]
    assert pool.labelled.dtype == pool.unlabelled.dtype == torch.long
    assert pool.num_labelled == 4 and pool.num_unlabelled == 4 and len(pool) == 8
    assert pool.labelled_mask.tolist() == [i in (0, 2, 5, 7) for i in range(8)]


@pytest.mark.parametrize(
    "indices,message",
    [
        ([8], "out of range"),
        ([-1], "out of range"),
        ([3], "already labelled"),
        ([4, 4], "repeat"),
        ([[1, 2]], "1-d"),
    ],
)
def test_label_checks_leave_the_pool_unchanged(indices, message):
    pool = Pool(8, labelled=[3])
    with pytest.raises(ValueError, match=message):
        pool.label(indices)
    assert pool.labelled.tolist() == [3]


def test_label_rejects_float_indices():
    with pytest.raises(TypeError, match="integers"):
        Pool(4).label(torch.tensor([1.0]))
    with pytest.raises(ValueError, match="positive integer"):
        Pool(0)


def test_unlabelled_subset_is_reproducible_sorted_and_unlabelled():
    pool = Pool(100, labelled=range(0, 100, 3))
    a = pool.unlabelled_subset(20, torch.Generator().manual_seed(1))
    b = pool.unlabelled_subset(20, torch.Generator().manual_seed(1))
    c = pool.unlabelled_subset(20, torch.Generator().manual_seed(2))
    assert a.tolist() == b.tolist() != c.tolist()
    assert a.tolist() == sorted(set(a.tolist())) and len(a) == 20
    assert not pool.labelled_mask[a].any()
    assert pool.unlabelled_subset(None).tolist() == pool.unlabelled.tolist()
    assert pool.unlabelled_subset(1000).tolist() == pool.unlabelled.tolist()
    with pytest.raises(ValueError, match="size"):
        pool.unlabelled_subset(0)
    with pytest.raises(ValueError, match="every item"):
        Pool(2, labelled=[0, 1]).unlabelled_subset(1)


def test_balanced_initial():
    labels = torch.arange(60) % 3  # 20 per class
    pool = Pool(60, labelled=[0])
    g = torch.Generator().manual_seed(0)
    idx = pool.balanced_initial(labels, per_class=4, generator=g)
    assert torch.bincount(labels[idx]).tolist() == [4, 4, 4]
    assert 0 not in idx.tolist() and len(set(idx.tolist())) == 12
    idx = pool.balanced_initial(labels, total=8, generator=g)  # 8 = 2 * 3 + 2
    assert sorted(torch.bincount(labels[idx]).tolist()) == [2, 3, 3]
    again = pool.balanced_initial(labels, total=8, generator=torch.Generator().manual_seed(5))
    assert (
        again.tolist()
        == pool.balanced_initial(
            labels, total=8, generator=torch.Generator().manual_seed(5)
        ).tolist()
    )


def test_balanced_initial_errors():
    labels = torch.tensor([0, 0, 0, 1])
    pool = Pool(4)
    with pytest.raises(ValueError, match="class 1 has 1"):
        pool.balanced_initial(labels, per_class=2)
    with pytest.raises(ValueError, match="exactly one"):
        pool.balanced_initial(labels, per_class=1, total=2)
    with pytest.raises(ValueError, match="exactly one"):
        pool.balanced_initial(labels)
    with pytest.raises(ValueError, match="shape"):
        pool.balanced_initial(labels[:3], total=2)
    with pytest.raises(ValueError, match="total must be a positive"):
        pool.balanced_initial(labels, total=0)


def test_state_round_trip():
    pool = Pool(10, labelled=[4, 1, 9])
    again = Pool.from_state(pool.state_dict())
    assert again.labelled.tolist() == [4, 1, 9] and again.n == 10
