"""MC dropout calibration and OOD detection on MNIST against the dropout rates (exploratory).

Gal et al. CNN with MC dropout (default Normal(1) prior) and its two dropout rates replaced
(after the convolutions, before the output layer), trained 5 epochs as ``bayesdl evaluate``
does (Adam lr 1e-3, batch 128, float32; seeds from ``SEEDS``, default 0); then the ``bayesdl evaluate`` metrics of
the S = 20 model average (``decision_metrics``: ECE, OOD AUROC against Fashion-MNIST, ...)
and the NLL on MNIST's 10,000 validation images. One JSON line per pair of rates and seed.

Run (the committed log: seed 0, then seeds 1 and 2 appended)::

    python benchmarks/mc_dropout_rates.py 0.1,0.25 > benchmarks/results/mc_dropout_rates.log
    SEEDS=1,2 python benchmarks/mc_dropout_rates.py 0.1,0.25 >> benchmarks/results/mc_dropout_rates.log

(about 3.5 min per run on two cores)."""

import json
import os
import sys
import time

import torch

import bayesdl as bdl
from bayesdl import metrics
from bayesdl.evaluate import decision_metrics
from bayesdl.models import gal_cnn

CONV_DROPOUT, DENSE_DROPOUT = 5, 9  # indices of gal_cnn's two nn.Dropout layers

train, valid, test = bdl.data.mnist("train"), bdl.data.mnist("valid"), bdl.data.mnist("test")
ood = bdl.data.fashion_mnist("test").x[: len(test)]
SEEDS = [int(s) for s in os.environ.get("SEEDS", "0").split(",")]
for pair, seed in [(pair, seed) for pair in sys.argv[1:] or ["0.25,0.5"] for seed in SEEDS]:
    p_conv, p_dense = (float(p) for p in pair.split(","))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # seed 0: the initial weights of bayesdl evaluate
        net = gal_cnn()
    net[CONV_DROPOUT].p, net[DENSE_DROPOUT].p = p_conv, p_dense
    method = bdl.MCDropout(net)
    start = time.perf_counter()
    method.fit(train, epochs=5, lr=1e-3, batch_size=128, progress=False,
               generator=torch.Generator().manual_seed(seed))  # fmt: skip
    fit_s = time.perf_counter() - start

    pred = {k: method.predict(x, samples=20, generator=torch.Generator().manual_seed(seed))
            for k, x in {"test": test.x, "ood": ood, "valid": valid.x}.items()}  # fmt: skip
    row = decision_metrics(pred["test"], test.y, pred["ood"])
    row["valid_nll"] = metrics.nll(pred["valid"].probs.double(), valid.y)
    print(
        json.dumps({"dropout": [p_conv, p_dense], "seed": seed, **row, "fit_s": fit_s}), flush=True
    )
