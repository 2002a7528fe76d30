import math

import pytest
import torch
from _policy import Z
from torch import nn

from bayesdl.models import gal_cnn


def test_glorot_init_is_the_keras_default_gal_et_al_trained_with():
    torch.manual_seed(0)
    layers = [m for m in gal_cnn(init="glorot") if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(layers) == 4
    for layer in layers:
        w = layer.weight.detach().double()
        receptive = w[0, 0].numel() if w.dim() > 2 else 1
        fan_in, fan_out = w.shape[1] * receptive, w.shape[0] * receptive
        bound = math.sqrt(6.0 / (fan_in + fan_out))  # U(-a, a): variance a^2 / 3
        assert float(w.abs().max()) <= bound
        se = math.sqrt(4 * bound**4 / 45 / w.numel())  # sd of w^2 is sqrt(4 a^4 / 45)
        assert abs(float((w**2).mean()) - bound**2 / 3) < Z * se, layer
        assert not layer.bias.any()
    dense = gal_cnn()[7].weight.detach().double()  # PyTorch's default: U(+-1/sqrt(fan_in))
    assert float(dense.abs().max()) <= 1 / math.sqrt(dense.shape[1])
    with pytest.raises(ValueError, match="unknown init 'he'"):
        gal_cnn(init="he")


def test_dropout_rates_are_set_and_checked():
    rates = [m.p for m in gal_cnn() if isinstance(m, nn.Dropout)]
    assert rates == [0.25, 0.5]  # Gal et al.'s
    rates = [m.p for m in gal_cnn(dropout=(0.1, 0.3)) if isinstance(m, nn.Dropout)]
    assert rates == [0.1, 0.3]
    for bad in [(1.0, 0.5), (0.25, -0.1), (0.1, 0.2, 0.3)]:
        with pytest.raises(ValueError, match="dropout must be two rates in"):
            gal_cnn(dropout=bad)
