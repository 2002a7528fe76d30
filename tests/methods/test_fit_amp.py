"""Mixed-precision training (``fit(amp=torch.bfloat16)``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import bayesdl as bdl

DIGITS = bdl.data.digits("train")


def _fit(amp: torch.dtype | None) -> tuple[float, list[float]]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    method = bdl.MAP(net)
    report = method.fit(DIGITS, epochs=15, lr=3e-3, batch_size=64, progress=False, amp=amp,
                        generator=torch.Generator().manual_seed(0))  # fmt: skip
    with torch.no_grad():
        acc = (net(DIGITS.x).argmax(-1) == DIGITS.y).float().mean().item()
    return acc, report.losses


def test_bfloat16_training_learns_as_well_as_float32():
    # Autocast caches low-precision copies of the weights until its region ends; were the
    # optimiser step inside that region, every forward pass would reuse the initial weights
    # and the network would stay at chance (10%).
    acc32, losses32 = _fit(None)
    acc16, losses16 = _fit(torch.bfloat16)
    assert acc32 > 0.95
    assert acc16 > acc32 - 0.02
    assert all(isinstance(v, float) for v in losses16)


def test_amp_accepts_only_bfloat16():
    with pytest.raises(ValueError, match="amp must be None or torch.bfloat16"):
        bdl.MAP(nn.Linear(64, 10)).fit(DIGITS, epochs=1, amp=torch.float16, progress=False)


@pytest.mark.filterwarnings("ignore::UserWarning")  # 2-epoch fits warn about their length
@pytest.mark.parametrize("name", bdl.method_names())
def test_every_method_passes_amp_on_to_its_training_steps(name):
    # Methods that override fit (ensembles, SWAG, SG-MCMC, HMC, Laplace) must hand amp to
    # the shared training loop; a forward hook sees whether autocast was on.
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Dropout(0.2),
                        nn.Linear(16, 10))  # fmt: skip
    seen: list[bool] = []
    net.register_forward_hook(lambda *_: seen.append(torch.is_autocast_enabled("cpu")))
    method = bdl.get_method(name)(net)
    data = (DIGITS.x[:96], DIGITS.y[:96])
    method.fit(data, epochs=2, batch_size=32, progress=False, amp=torch.bfloat16,
               generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert any(seen)
    probs = method.predict(DIGITS.x[:8], samples=4).probs
    assert probs.dtype == torch.float32 and torch.isfinite(probs).all()
