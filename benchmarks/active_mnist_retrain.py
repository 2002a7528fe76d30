"""Is the active-learning retraining (weight decay c, 50 epochs) right for BALD's sets?

Takes the labelled sets that committed runs acquired (``labelled_indices`` in labelling
order, so the first n are the set the run held at n labels), retrains the Gal CNN on the
first n as ``benchmarks/active_mnist.py`` with ``--train-epochs 50`` does (batch 64,
100-step floor, bfloat16), but with other weight decays ``c`` (``c / N * ||w||^2`` on the
dense layer) and other epoch counts (``--epochs``: without the floor), and scores each
model on MNIST's *validation* images (never the test set): accuracy and NLL of the S = 20
model average. One JSON line per (run, n, c, epochs) in ``--out``; ``--summary-only``
writes the table (mean over the runs) as markdown.

Example (the committed ``results/active_mnist_retrain.*``)::

    python benchmarks/active_mnist_retrain.py --acquisitions bald:0,bald:1,bald:2,random:0,random:1 --valid-size 5000 --threads 2
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from provenance import log_header, provenance

from bayesdl import data as bdata
from bayesdl import metrics
from bayesdl.active.experiment import _DENSE
from bayesdl.active.loop import _decay_prior, retrain_epochs
from bayesdl.methods import MCDropout
from bayesdl.models import gal_cnn


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", default="benchmarks/results/active_mnist_gal_code/active_mnist.json")
    p.add_argument("--acquisitions", default="bald:0,bald:1,bald:2,random:0,random:1,random:2",
                   help="acquisition:repeat of the runs whose sets are retrained")  # fmt: skip
    p.add_argument("--sizes", default="100,300,1000")
    p.add_argument("--decays", default="0.35,1,3.5,10,35", help="c at 50 epochs")
    p.add_argument("--epochs", default="10,25,100", help="further epoch counts at c = 3.5")
    p.add_argument("--valid-size", type=int, default=10000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="benchmarks/results/active_mnist_retrain.jsonl")
    p.add_argument("--summary-only", action="store_true")
    return p.parse_args(argv)


BATCH = 64  # active_mnist.py's minibatch


def protocol_epochs(n: int) -> int:
    """Epochs of active_mnist.py's retraining on n labels with ``--train-epochs 50``."""
    return retrain_epochs(n, BATCH, train_steps=100, train_epochs=50)


def retrain(x, y, c: float, epochs: int, seed: int) -> MCDropout:
    """The Gal CNN trained as active_mnist.py trains it (bf16), ``epochs`` epochs."""
    torch.manual_seed(seed)
    net = gal_cnn(10, 1, 28, init="glorot").to(memory_format=torch.channels_last)
    method = MCDropout(net, prior=_decay_prior({_DENSE: c}))
    g = torch.Generator().manual_seed(seed)
    method.fit((x, y), epochs=epochs, lr=1e-3, batch_size=BATCH, progress=False, generator=g,
               amp=torch.bfloat16)  # fmt: skip
    return method


def load_data() -> tuple[bdata.Data, bdata.Data]:
    """MNIST's training images (the pool the runs labelled) and its validation images."""
    return bdata.mnist("train"), bdata.mnist("valid")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = Path(args.out)
    record = provenance(__file__, argv)
    if not args.summary_only:
        torch.set_num_threads(args.threads)
        train, valid = load_data()
        vx, vy = valid.x[: args.valid_size], valid.y[: args.valid_size]
        runs = json.loads(Path(args.runs).read_text())["runs"]
        wanted = [tuple(a.split(":")) for a in args.acquisitions.split(",")]
        done = set()
        if out.exists():
            done = {(r["acquisition"], r["repeat"], r["n"], r["c"], r["epochs"])
                    for r in map(json.loads, out.read_text().splitlines())}  # fmt: skip
        grid = [(float(c), None) for c in args.decays.split(",")]  # None: the protocol's
        grid += [(3.5, int(e)) for e in args.epochs.split(",")]
        for acq, rep in wanted:
            run = next(r for r in runs if r["acquisition"] == acq and r["repeat"] == int(rep))
            for n in map(int, args.sizes.split(",")):
                idx = torch.tensor(run["labelled_indices"][:n])
                x, y = train.x[idx], train.y[idx]
                batches = math.ceil(n / BATCH)
                for c, epochs in grid:
                    epochs = epochs or protocol_epochs(n)
                    if (acq, int(rep), n, c, epochs) in done:
                        continue
                    start = time.perf_counter()
                    method = retrain(x, y, c, epochs, seed=int(rep))
                    g = torch.Generator().manual_seed(1)
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        probs = method.predict(vx, samples=20, generator=g).probs.double()
                    probs = probs / probs.sum(-1, keepdim=True)
                    row = {"acquisition": acq, "repeat": int(rep), "n": n, "c": c,
                           "epochs": epochs, "steps": epochs * batches,
                           "valid_accuracy": metrics.accuracy(probs, vy),
                           "valid_nll": metrics.nll(probs, vy),
                           "seconds": time.perf_counter() - start,
                           "provenance": record}  # fmt: skip
                    print(json.dumps(row), flush=True)
                    with open(out, "a") as f:
                        f.write(json.dumps(row) + "\n")
    write_summary(out, record)


def _label(c: float, epochs: int, n: int) -> str:
    return f"c = {c:g}, " + ("50 epochs" if epochs == protocol_epochs(n) else f"{epochs} epochs")


def write_summary(path: Path, record: dict | None = None) -> None:
    """Validation NLL (accuracy) per configuration, and the ranking on BALD's sets; ``record``
    (this invocation's provenance) heads the table with the commands behind the log."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for r in rows:
        r["config"] = _label(r["c"], r["epochs"], r["n"])
    configs = list(dict.fromkeys(r["config"] for r in rows))
    cells = sorted({(r["acquisition"], r["n"]) for r in rows})
    lines = [log_header(record, rows), ""] if record else []
    lines += [
        f"Gal CNN retrained on the first n labels that committed runs acquired (`{path.name}`)"
        "; S = 20 model average on MNIST validation images: NLL (accuracy %), mean over the "
        "runs. '50 epochs' is the protocol's (at least 100 steps); other epoch counts have no "
        "floor.",
        "",
        "| set | n | runs | " + " | ".join(configs) + " |",
        "|---|---|---|" + "---|" * len(configs),
    ]
    for acq, n in cells:
        sel = [r for r in rows if (r["acquisition"], r["n"]) == (acq, n)]
        out = []
        for cfg in configs:
            got = [r for r in sel if r["config"] == cfg]
            nll = np.mean([r["valid_nll"] for r in got])
            acc = np.mean([r["valid_accuracy"] for r in got]) * 100
            out.append(f"{nll:.4f} ({acc:.2f})")
        lines.append(f"| {acq} | {n} | {len(sel) // len(configs)} | " + " | ".join(out) + " |")
    bald = [r for r in rows if r["acquisition"] == "bald"]
    rank = sorted(
        (np.mean([r["valid_nll"] for r in bald if r["config"] == cfg]), cfg) for cfg in configs
    )
    lines += ["", "Mean validation NLL over BALD's sets (every n), lowest first:", ""]
    lines += [f"{i + 1}. {cfg}: {nll:.4f}" for i, (nll, cfg) in enumerate(rank)]
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
