"""MC dropout calibration on MNIST against training length (exploratory, one run).

Gal et al. CNN with MC dropout (default Normal(1) prior), Adam lr 1e-3, batch 128, bfloat16
training, trained in blocks of 5 epochs (each block a new ``fit`` call, so Adam restarts);
after each block: test accuracy, mean confidence, 15-bin ECE and NLL of the S = 20 model
average on the 10,000 MNIST test images. Output: ``results/mc_dropout_epochs.log``.

Run: ``python benchmarks/mc_dropout_epochs.py > benchmarks/results/mc_dropout_epochs.log``
(about 18 min on one core)."""

import time

import torch

import bayesdl as bdl
from bayesdl import metrics
from bayesdl.models import gal_cnn

torch.set_num_threads(1)
tr, te = bdl.data.mnist("train"), bdl.data.mnist("test")
torch.manual_seed(0)
net = gal_cnn(10, 1, 28).to(memory_format=torch.channels_last)
m = bdl.MCDropout(net)
print(m.prior.config(), flush=True)
g = torch.Generator().manual_seed(0)
for block in range(6):
    t = time.perf_counter()
    m.fit(tr, epochs=5, lr=1e-3, batch_size=128, progress=False, amp=torch.bfloat16, generator=g)
    p = m.predict(te.x, samples=20, generator=torch.Generator().manual_seed(1))
    probs = p.probs.double()
    conf = probs.max(-1).values.mean().item()
    acc = metrics.accuracy(probs, te.y)
    print(
        f"epochs {5 * (block + 1)}: acc {acc:.4f} conf {conf:.4f} ece {metrics.ece(probs, te.y):.4f} nll {metrics.nll(probs, te.y):.4f} ({time.perf_counter() - t:.0f}s)",
        flush=True,
    )
