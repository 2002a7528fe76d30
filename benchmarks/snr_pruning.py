"""Signal-to-noise pruning of a Bayes-by-Backprop MLP on MNIST (Blundell et al., 2015, Sec. 5.1).

Blundell et al. train a 784-1200-1200-10 ReLU MLP with a scale-mixture prior and report
about 1.24% test error, and about 1.29% after removing 95% of the weights with the lowest
signal-to-noise ratio ``|mu| / sigma``. This script trains a smaller MLP (``--hidden``,
default 400) for ``--epochs`` on this shared two-core machine and measures test error at
each ``--fractions`` of weights removed by ``bayesdl.prune(vi, fraction, by=...)``, by SNR
and by plain magnitude ``|mu|`` at the same fractions: the model average over ``--samples``
posterior draws and the posterior-mean network. Biases are never pruned.

Setting: ``MeanFieldVI`` with the local reparameterisation estimator, a scale-mixture prior
(pi = 0.5, sigma1 = 1, sigma2 = e^-6; one of Blundell et al.'s grid points), Adam at
``--lr``, batch 128, MNIST's 50,000 training images; test error on the 10,000 test images.

Writes ``snr_pruning.json`` (config, rows, runtimes, provenance), ``snr_pruning.md`` and
``snr_pruning.png`` (test error against fraction removed) to ``--out``.

Run (the committed results)::

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/snr_pruning.py --hidden 400 --epochs 10 \
        --threads 1 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from provenance import header, provenance, stamp
from torch import nn

import bayesdl as bdl

PAPER = {0.0: 1.24, 0.95: 1.29}  # Blundell et al. 2015, Table 2 (percent test error, 1200 units)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hidden", type=int, default=400, help="units per hidden layer")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--samples", type=int, default=10, help="posterior draws of the average")
    p.add_argument("--fractions", default="0,0.5,0.75,0.9,0.95,0.98")
    p.add_argument("--train-size", type=int, default=None, help="first N training images")
    p.add_argument("--test-size", type=int, default=None, help="first N test images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    args.argv = argv
    return args


def build(hidden: int, seed: int) -> bdl.MeanFieldVI:
    """The MLP 784-hidden-hidden-10 under Blundell et al.'s scale-mixture prior."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(),
                        nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 10))  # fmt: skip
    prior = bdl.priors.ScaleMixture(pi=0.5, sigma1=1.0, sigma2=math.exp(-6))
    return bdl.MeanFieldVI(net, prior=prior, estimator="local")


def errors(method: bdl.MeanFieldVI, x: torch.Tensor, y: torch.Tensor, samples: int,
           seed: int) -> dict[str, float]:  # fmt: skip
    """Test error (%) of the model average and of the posterior-mean network."""
    pred = method.predict(x, samples, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        mean_net = method.model(x).argmax(-1)
    return {
        "error_average": 100 * float((pred.predicted() != y).double().mean()),
        "error_mean_net": 100 * float((mean_net != y).double().mean()),
    }


def main(args: argparse.Namespace) -> dict[str, Any]:
    """Train, prune at every fraction both ways, write the results."""
    torch.set_num_threads(args.threads)
    record = provenance(__file__, args.argv)
    train, test = bdl.data.mnist("train"), bdl.data.mnist("test")
    xtr, ytr = train.x[: args.train_size], train.y[: args.train_size]
    xte, yte = test.x[: args.test_size], test.y[: args.test_size]
    fractions = [float(f) for f in args.fractions.split(",")]
    vi = build(args.hidden, args.seed)
    start = time.perf_counter()
    report = vi.fit((xtr, ytr), epochs=args.epochs, lr=args.lr, batch_size=128,
                    progress=not args.no_progress,
                    generator=torch.Generator().manual_seed(args.seed))  # fmt: skip
    fit_s = time.perf_counter() - start
    rows = []
    start = time.perf_counter()
    for by in ("snr", "magnitude"):
        for fraction in fractions:
            pruned, pruning = bdl.prune(vi, fraction, by=by)
            removed = sum(pruning.removed.values()) / sum(pruning.total.values())
            rows.append({"by": by, "fraction": fraction, "removed": removed,
                         **errors(pruned, xte, yte, args.samples, args.seed)})  # fmt: skip
            print(rows[-1], flush=True)
    eval_s = time.perf_counter() - start
    config = {k: v for k, v in vars(args).items() if k not in ("argv", "out", "no_progress")}
    results = stamp({
        "config": config, "train_images": len(xtr), "test_images": len(xte),
        "weights": sum(pruning.total.values()), "final_objective": report.losses[-1],
        "rows": rows, "fit_s": fit_s, "prune_and_eval_s": eval_s, "paper": PAPER,
    }, record)  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "snr_pruning.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "snr_pruning.md").write_text(markdown(results, record))
    plot(results, args.out / "snr_pruning.png")
    return results


def markdown(results: dict[str, Any], record: dict[str, Any]) -> str:
    """The table of test errors against fraction removed, SNR beside magnitude."""
    c = results["config"]
    by = {(r["by"], r["fraction"]): r for r in results["rows"]}
    fractions = sorted({r["fraction"] for r in results["rows"]})
    out = [header(record), "",
           f"MeanFieldVI MLP 784-{c['hidden']}-{c['hidden']}-10 ({results['weights']:,} weights), "
           f"{c['epochs']} epochs on {results['train_images']:,} MNIST images, test error (%) on "
           f"{results['test_images']:,}: model average over {c['samples']} draws / posterior-"
           f"mean network. Fit {results['fit_s']:.0f} s, pruning and evaluation "
           f"{results['prune_and_eval_s']:.0f} s ({c['threads']} thread(s), shared machine). "
           "Blundell et al. (1200 units): 1.24% at 0%, 1.29% at 95% removed by SNR.", "",
           "| removed | by SNR (average / mean net) | by magnitude (average / mean net) |",
           "|---|---|---|"]  # fmt: skip
    for f in fractions:
        cells = [f"{by[(b, f)]['error_average']:.2f} / {by[(b, f)]['error_mean_net']:.2f}"
                 for b in ("snr", "magnitude")]  # fmt: skip
        out.append(f"| {100 * f:g}% | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    """Test error of the model average against fraction removed, both criteria."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for b, label in (("snr", "by SNR |mu|/sigma"), ("magnitude", "by magnitude |mu|")):
        rows = [r for r in results["rows"] if r["by"] == b]
        ax.plot([100 * r["fraction"] for r in rows], [r["error_average"] for r in rows],
                "o-", label=label)  # fmt: skip
    ax.scatter([100 * f for f in PAPER], list(PAPER.values()), marker="x", color="k",
               label="Blundell et al. (1200 units)")  # fmt: skip
    ax.set(xlabel="weights removed (%)", ylabel="test error (%)", yscale="log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main(parse_args())
