"""Laplace over a tied (shared) parameter: once in the posterior, curvature of every use.

A tiny language-model-like network whose output layer shares the input embedding's matrix
(as GPT-2's ``lm_head`` does). The GGN of the shared matrix is checked against a brute-force
GGN built from Jacobians of the network written as a function of the one matrix, so both
uses (the embedding lookup and the output layer) are differentiated.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.autograd.functional import jacobian

import bayesdl as bdl

V, D, T = 6, 3, 4  # vocabulary, width, tokens per example


class TiedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(V, D)
        self.head = nn.Linear(D, V)
        self.head.weight = self.emb.weight  # tied, as a language model's output layer

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.emb(ids).mean(1)))


def _setup():
    torch.manual_seed(0)
    net = TiedNet().double()
    ids = torch.randint(0, V, (12, T))
    y = torch.randint(0, V, (12,))
    return net, ids, y


def _brute_ggn(net: TiedNet, ids: torch.Tensor, both_uses: bool = True) -> torch.Tensor:
    """sum_n J_n^T (diag(p) - p p^T) J_n over theta = [W (V*D), b (V)] by autograd Jacobians."""
    w0, b0 = net.emb.weight.detach(), net.head.bias.detach()

    def f(theta: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
        w, b = theta[: V * D].view(V, D), theta[V * D :]
        h = torch.tanh((w if both_uses else w0)[row].mean(0))
        return h @ w.T + b

    theta = torch.cat([w0.flatten(), b0])
    ggn = torch.zeros(theta.numel(), theta.numel(), dtype=theta.dtype)
    for row in ids:
        j = jacobian(lambda t: f(t, row), theta)  # noqa: B023
        p = f(theta, row).softmax(-1)
        ggn += j.T @ (torch.diag(p) - torch.outer(p, p)) @ j
    return ggn


@pytest.mark.parametrize("hessian", ["full", "diag"])
@pytest.mark.parametrize("subset", ["last_layer", ["head"]])
def test_tied_parameter_once_with_the_curvature_of_both_uses(hessian, subset):
    net, ids, y = _setup()
    la = bdl.Laplace(net, subset=subset, hessian=hessian, prior_precision=1.0)
    la.fit_posterior((ids, y), batch_size=5, progress=False)
    assert la.names == ["emb.weight", "head.bias"]  # the shared matrix once
    assert la.num_params == V * D + V
    assert set(la.sample_params(2)) == {"emb.weight", "head.bias"}
    truth = _brute_ggn(net, ids) + torch.eye(V * D + V, dtype=torch.float64)
    got = la.posterior_precision()
    if hessian == "diag":
        truth, got = truth.diagonal(), got.diagonal()
    torch.testing.assert_close(got, truth)
    # the embedding's use matters: the output layer's curvature alone is another matrix
    head_only = _brute_ggn(net, ids, both_uses=False) + torch.eye(V * D + V, dtype=torch.float64)
    if hessian == "diag":
        head_only = head_only.diagonal()
    assert (head_only - truth).abs().max() > 1e-3


def test_tied_parameter_predictions_move_both_uses():
    """pred_type='nn' draws run the network with each sampled matrix in both places."""
    net, ids, y = _setup()
    la = bdl.Laplace(net, subset="last_layer", hessian="diag", prior_precision=1.0, pred_type="nn")
    la.fit_posterior((ids, y), batch_size=12, progress=False)
    pred = la.predict(ids[:3], samples=4, generator=torch.Generator().manual_seed(1))
    draws = la.sample_params(4, generator=torch.Generator().manual_seed(1))
    for s in range(4):
        w, b = draws["emb.weight"][s], draws["head.bias"][s]
        logits = torch.tanh(w[ids[:3]].mean(1)) @ w.T + b
        torch.testing.assert_close(pred.samples[s], logits.log_softmax(-1))  # log-probabilities


def test_kfac_refuses_a_tied_parameter():
    net, _, _ = _setup()
    with pytest.raises(ValueError, match=r"hessian='kfac' cannot cover the tied parameter 'emb.weight'") as e:
        bdl.Laplace(net, subset="last_layer", hessian="kfac")
    assert "\n" not in str(e.value)
