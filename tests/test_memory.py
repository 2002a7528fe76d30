"""``memory_estimate`` against the measured peak, and ``max_memory=`` budgets."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

import bayesdl as bdl

# One fresh process per case: peak RSS (VmHWM) during fit_posterior minus RSS before it, with
# glibc returning freed large blocks to the system (MALLOC_MMAP_THRESHOLD_), so resident
# memory follows the live tensors. The state buffers are made resident first: the
# estimate's ``fit`` is the transient on top of them.
PROBE = textwrap.dedent("""
    import resource, sys, torch, bayesdl as bdl
    torch.set_num_threads(1)
    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    torch.manual_seed(0)
    if sys.argv[1] == "full":
        net = torch.nn.Sequential(torch.nn.Linear(20, 300), torch.nn.Tanh(), torch.nn.Linear(300, 10))
        la = bdl.Laplace(net, subset="last_layer", hessian="full", prior_precision=1.0)
        x, y = torch.randn(64, 20), torch.randint(0, 10, (64,))
    elif sys.argv[1] in ("bert-kfac", "bert-diag"):  # autograd intermediates dominate
        from peft import LoraConfig, get_peft_model
        from transformers import BertConfig, BertForSequenceClassification
        cfg = BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=256, num_labels=2, max_position_embeddings=256,
                         attn_implementation="eager", hidden_dropout_prob=0.0,
                         attention_probs_dropout_prob=0.0)
        net = get_peft_model(BertForSequenceClassification(cfg),
                             LoraConfig(r=4, target_modules=["query", "value"]))
        net = bdl.hf.adapt(net.eval(), output="logits")
        kfac = sys.argv[1] == "bert-kfac"
        la = bdl.Laplace(net, subset="lora", hessian="kfac" if kfac else "diag",
                         prior_precision=1.0, chunk_size=None if kfac else 4)
        n, t = (8, 192) if kfac else (8, 160)
        x = {"input_ids": torch.randint(0, 100, (n, t)), "attention_mask": torch.ones(n, t, dtype=torch.long)}
        y = torch.randint(0, 2, (n,))
    else:
        net = torch.nn.Sequential(torch.nn.Linear(20, 1500), torch.nn.Tanh(),
                                  torch.nn.Linear(1500, 1500), torch.nn.Tanh(), torch.nn.Linear(1500, 4))
        la = bdl.Laplace(net, subset=["2"], hessian="kfac", prior_precision=1.0)
        x, y = torch.randn(32, 20), torch.randint(0, 4, (32,))
    n = y.shape[0]
    est = la.memory_estimate(batch_size=n // 2, example=x)
    first = {k: v[:4] for k, v in x.items()} if isinstance(x, dict) else x[:4]
    if isinstance(x, dict):  # first calls of the code paths and libraries, on 4 examples
        la.fit_posterior((first, y[:4]), batch_size=2, progress=False)
    else:  # on a tiny problem
        small = torch.nn.Sequential(torch.nn.Linear(20, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
        for h in ("full", "kfac"):
            bdl.Laplace(small, subset="all", hessian=h, prior_precision=1.0).fit_posterior(
                (first, torch.randint(0, 3, (4,))), batch_size=2, progress=False)
    for t in la.buffers():
        t.fill_(1.0)
    before = rss()
    with open("/proc/self/clear_refs", "w") as f:  # the peak so far is not the fit's
        f.write("5")
    la.fit_posterior((x, y), batch_size=n // 2, progress=False)  # two minibatches
    with open("/proc/self/status") as f:  # this process's own high-water mark
        hwm = next(line for line in f if line.startswith("VmHWM"))
    peak = int(hwm.split()[1]) * 1024
    print(est.fit, peak - before)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and glibc")
@pytest.mark.parametrize("case", ["full", "kfac", "bert-kfac", "bert-diag"])
def test_laplace_estimate_within_20_percent_of_measured_peak(case, tmp_path):
    """Curvature-bound MLPs ("full", "kfac") and a LoRA BERT whose peak is autograd's
    intermediates (attention scores, the gradients of every output column) and the
    Jacobians, which the estimate traces."""
    if case.startswith("bert"):
        pytest.importorskip("transformers")
        pytest.importorskip("peft")
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    src = str(Path(bdl.__file__).resolve().parents[1])
    # every block above 4 KiB is its own mapping, returned to the system when freed, so the
    # resident memory follows the live tensors rather than the allocator's cache
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "4096", "PYTHONPATH": src}
    done = subprocess.run([sys.executable, str(script), case], capture_output=True, text=True,
                          env=env, timeout=600, check=True)  # fmt: skip
    estimate, measured = map(int, done.stdout.split()[-2:])
    print(case, estimate, measured)
    assert measured > (3 if case == "bert-diag" else 20) * 2**20  # well above the noise
    assert abs(estimate - measured) <= 0.2 * measured, (estimate, measured)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 50), nn.Tanh(), nn.Linear(50, 3))


def test_estimate_parts_from_shapes():
    la = bdl.Laplace(_net(), subset="all", hessian="full", prior_precision=1.0)
    p = la.num_params
    est = la.memory_estimate(batch_size=8, samples=10)
    assert est.model == 4 * p and est.state >= 4 * (p * p + p)
    assert est.parts["fit/curvature"] >= 4 * 4 * p * p  # sum + eigh's copy and workspace
    assert est.parts["predict/outputs"] == 10 * 8 * 3 * 4
    assert est.fit_total == est.model + est.state + est.fit


def test_max_memory_errors_name_the_number_and_the_knobs():
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    la = bdl.Laplace(_net(), subset="all", hessian="full", prior_precision=1.0)
    with pytest.raises(ValueError, match=r"Laplace.fit needs about .* over max_memory=.*subset=") as e:
        la.fit((x, y), progress=False, max_memory=1000)
    assert "\n" not in str(e.value)
    la.fit((x, y), progress=False, max_memory=2**30)
    with pytest.raises(ValueError, match="too small for even one posterior sample"):
        la.predict(x, samples=5, max_memory=10)
    with pytest.raises(ValueError, match="max_memory must be a positive number"):
        la.fit((x, y), progress=False, max_memory=-1)
    big = la.memory_estimate(16, 10_000, example=x).predict_total
    one = la.memory_estimate(16, 1, example=x).predict_total
    with pytest.raises(ValueError, match=r"Laplace.predict needs about"):
        la.predict(x, samples=10_000, max_memory=(big + one) // 2)
    assert la.predict(x, samples=5, max_memory=2**30).samples.shape == (5, 16, 3)


def test_training_methods_count_gradients_and_adam():
    vi = bdl.MeanFieldVI(_net())
    est = vi.memory_estimate(batch_size=8, samples=4, example=torch.randn(2, 4))
    trainable = sum(p.numel() for p in vi.parameters()) * 4
    assert est.parts["fit/grads"] == trainable and est.parts["fit/optimizer"] == 2 * trainable
    assert est.activations_known and est.parts["fit/activations"] > 0
