"""Every registered method survives ``copy.deepcopy`` and ``torch.save``/``torch.load``
(``weights_only=False``): the copy predicts exactly what the original does under the same
generator. (``bdl.save`` is the safe format; these are for users' own pipelines.)"""

import copy
import io

import pytest
import torch
from _toy import toy_data, toy_net
from torch import nn
from torch.testing import assert_close

import bayesdl as bdl


def _net():
    return toy_net()


def _data(n=48):
    return toy_data(n)


def _gen():
    return torch.Generator().manual_seed(3)


def _torch_round_trip(method):
    buffer = io.BytesIO()
    torch.save(method, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


@pytest.mark.parametrize("name", bdl.method_names())
def test_deepcopy_and_torch_save_keep_predictions(name):
    x, y = _data()
    method = bdl.get_method(name)(_net())
    method.fit((x, y), epochs=1, batch_size=16, progress=False, generator=_gen())
    expected = method.predict(x[:7], samples=5, generator=_gen()).samples
    for copied in (copy.deepcopy(method), _torch_round_trip(method)):
        assert copied is not method and copied.model is not method.model
        got = copied.predict(x[:7], samples=5, generator=_gen()).samples
        assert_close(got, expected, rtol=0, atol=0)


class _HeadNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(0.5), nn.Linear(8, 3))

    def forward(self, x):
        return self.head(self.body(x))


def test_a_named_head_split_survives_pickling():
    x, _ = _data()
    method = bdl.MCDropout(_HeadNet(), head="head")
    expected = method.predict(x[:5], samples=4, generator=_gen()).samples
    copied = _torch_round_trip(copy.deepcopy(method))
    assert_close(copied.predict(x[:5], samples=4, generator=_gen()).samples, expected)
