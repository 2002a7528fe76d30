"""What knowledge in a prior is worth: MNIST 5-9 learned from N labels, with and without it.

The Gal et al. CNN (dropout off) is pretrained by MAP on every training image of digits 0-4.
Digits 5-9 (relabelled 0-4) are then learned from N class-balanced labels with

* ``scratch``: a zero-mean ``Normal(scale)`` prior and a fresh network;
* ``centered``: ``Centered.from_model(pretrained, scale, exclude=("10",))``, the prior at the
  pretrained weights (a zero-mean ``Normal(1)`` on the new head ``"10"``), the network
  starting there with a fresh head;
* ``finetune`` (MAP only): the non-Bayesian practice, MAP with a zero-mean ``Normal(scale)``
  (weight decay) starting from the pretrained weights with a fresh head;

for ``MeanFieldVI`` (all layers) and ``Laplace`` (last-layer KFAC, prior precision by the
evidence, on the MAP fit with that prior). Each prior's ``scale`` is chosen on a validation
split (labelled 5-9 images outside the N, never the test set) by validation NLL. Reported on
5-9 test images: accuracy, NLL, ECE and OOD AUROC (predictive entropy) against Fashion-MNIST.

Every fit takes the same number of optimiser steps (``--steps``; minibatches of
``min(batch, N)``), so small N is not under-trained.

Example (the committed results: the issue's N grid and three seeds, about 55 min on one
core)::

    OMP_NUM_THREADS=1 python benchmarks/prior_knowledge.py --n-labels 10,30,100,300,1000,3000 \
        --seeds 0,1,2 --out benchmarks/results

``--rewrite DIR`` rewrites the markdown and the figure from ``DIR/prior_knowledge.json``
without running anything.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from provenance import header, provenance, stamp
from torch import nn

import bayesdl as bdl
from bayesdl.evaluate import decision_metrics
from bayesdl.models import gal_cnn

HEAD = "10"  # the output layer of gal_cnn
ARMS = {  # arm -> (methods, prior scales tried on validation)
    "scratch": (("vi", "laplace"), (0.1, 1.0)),
    "centered": (("vi", "laplace"), (0.01, 0.1)),
    "finetune": (("map",), (0.1, 1.0)),
}


def _net(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return gal_cnn(num_classes=5, dropout=(0.0, 0.0))


def _fresh_head(net: nn.Sequential, seed: int) -> nn.Sequential:
    torch.manual_seed(10_000 + seed)
    net[int(HEAD)].reset_parameters()
    return net


def pretrain(x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int) -> nn.Sequential:
    """MAP (Normal(1) prior) on digits 0-4."""
    net = _net(seed)
    bdl.MAP(net).fit((x, y), epochs=epochs, batch_size=64, progress=False,
                     generator=torch.Generator().manual_seed(seed))  # fmt: skip
    return net


def balanced(y: torch.Tensor, n: int, classes: int, gen: torch.Generator) -> torch.Tensor:
    """Indices of ``n`` examples, ``n // classes`` per class (the rest to the first)."""
    per = [n // classes + (1 if c < n % classes else 0) for c in range(classes)]
    out = []
    for c in range(classes):
        idx = (y == c).nonzero().flatten()
        out.append(idx[torch.randperm(len(idx), generator=gen)[: per[c]]])
    return torch.cat(out)


def build(arm: str, method: str, scale: float, pretrained: nn.Module, seed: int) -> Any:
    """The method for one (arm, method, prior scale)."""
    if arm == "scratch":
        net, prior = _net(seed + 1), bdl.priors.Normal(scale)
    else:
        net = _fresh_head(copy.deepcopy(pretrained), seed)
        if arm == "centered":
            prior = bdl.priors.Centered.from_model(
                pretrained, {"": scale, HEAD: 1.0}, exclude=(HEAD,), like=net
            )
        else:
            prior = bdl.priors.Normal(scale)
    if method == "vi":
        return bdl.MeanFieldVI(net, prior=prior)
    if method == "laplace":
        return bdl.Laplace(net, prior=prior, subset="last_layer", hessian="kfac")
    return bdl.MAP(net, prior=prior)


def fit(m: Any, x: torch.Tensor, y: torch.Tensor, steps: int, batch: int, seed: int) -> float:
    """Train for ``steps`` optimiser steps; returns the wall time."""
    b = min(batch, len(x))
    epochs = max(1, math.ceil(steps * b / len(x)))
    start = time.perf_counter()
    print(f"  fit {type(m).__name__} on {len(x)} labels, {epochs} epochs", flush=True)
    m.fit((x, y), epochs=epochs, batch_size=b, lr=1e-3, progress=False,
          generator=torch.Generator().manual_seed(seed))  # fmt: skip
    return time.perf_counter() - start


def run(args: argparse.Namespace, data: dict[str, Any], out: Path, results: dict[str, Any]) -> None:
    """Every (seed, N, method, arm): pick the scale on validation, score the test set."""
    for seed in args.seeds:
        start = time.perf_counter()
        pretrained = pretrain(*data["pre"], args.pretrain_epochs, seed)
        results["pretrain_s"][str(seed)] = time.perf_counter() - start
        print(f"pretrained in {results['pretrain_s'][str(seed)]:.0f} s", flush=True)
        g = torch.Generator().manual_seed(seed)
        x5, y5 = data["new"]
        perm = torch.randperm(len(x5), generator=g)
        val_idx, pool_idx = perm[: args.val_size], perm[args.val_size :]
        x_val, y_val = x5[val_idx], y5[val_idx]
        for n in args.n_labels:
            idx = pool_idx[balanced(y5[pool_idx], n, 5, g)]
            x_tr, y_tr = x5[idx], y5[idx]
            for arm, (methods, scales) in ARMS.items():
                for method in methods:
                    key = f"{method}/{arm}/N={n}/seed={seed}"
                    if key in results["runs"]:
                        continue
                    t0 = time.perf_counter()
                    val = {}
                    best = None
                    for scale in scales:
                        m = build(arm, method, scale, pretrained, seed)
                        fit_s = fit(m, x_tr, y_tr, args.steps, args.batch_size, seed)
                        pv = m.predict(
                            x_val, args.samples, generator=torch.Generator().manual_seed(0)
                        )
                        val[str(scale)] = bdl.metrics.nll(pv.probs, y_val)
                        if best is None or val[str(scale)] < val[str(best[0])]:
                            best = (scale, m, fit_s)
                    scale, m, fit_s = best
                    gen = torch.Generator().manual_seed(1)
                    p_in = m.predict(data["test"][0], args.samples, generator=gen)
                    p_out = m.predict(data["ood"], args.samples, generator=gen)
                    row = decision_metrics(p_in, data["test"][1], p_out)
                    results["runs"][key] = {
                        "method": method, "arm": arm, "n": n, "seed": seed, "scale": scale,
                        "val_nll": val, "accuracy": row["accuracy"], "nll": row["nll"],
                        "ece": row["ece"], "ood_auroc": row["ood_auroc_entropy"],
                        "fit_s": fit_s, "wall_s": time.perf_counter() - t0,
                    }  # fmt: skip
                    r = results["runs"][key]
                    print(f"{key}: scale {scale} acc {r['accuracy']:.4f} nll {r['nll']:.3f} "
                          f"ece {r['ece']:.3f} auroc {r['ood_auroc']:.3f} ({r['wall_s']:.0f} s)",
                          flush=True)  # fmt: skip
                    write(results, out)


def table(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows (method, arm, N) averaged over seeds."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in results["runs"].values():
        groups.setdefault((r["method"], r["arm"], r["n"]), []).append(r)
    rows = []
    for (method, arm, n), rs in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])
    ):
        row = {"method": method, "arm": arm, "n": n, "seeds": len(rs),
               "scales": sorted({r["scale"] for r in rs})}  # fmt: skip
        for k in ("accuracy", "nll", "ece", "ood_auroc", "fit_s"):
            row[k] = sum(r[k] for r in rs) / len(rs)
        rows.append(row)
    return rows


def markdown(results: dict[str, Any]) -> str:
    """The results table, one row per (method, arm, N)."""
    a = results["args"]
    lines = [
        f"MNIST digits 5-9 from N class-balanced labels after MAP pretraining on digits 0-4 "
        f"({a['pretrain_epochs']} epoch(s), {results['n_pretrain']} images); Gal CNN without "
        f"dropout; {a['steps']} Adam steps (lr 1e-3, minibatch min({a['batch_size']}, N)) per "
        f"fit; prior scale chosen by validation NLL on {a['val_size']} labelled 5-9 images; "
        f"test: the first {a['test_size']} 5-9 test images; OOD: {a['ood_size']} "
        f"Fashion-MNIST test images (AUROC of predictive entropy); S = {a['samples']}; "
        f"seeds {a['seeds']}. Rows are means over the seeds (the JSON has every run).",
        "",
        "| method | prior | N | chosen scale | accuracy | NLL | ECE | OOD AUROC | fit (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table(results):
        lines.append(
            f"| {r['method']} | {r['arm']} | {r['n']} | {', '.join(map(str, r['scales']))} | "
            f"{r['accuracy']:.4f} | {r['nll']:.4f} | {r['ece']:.4f} | {r['ood_auroc']:.4f} | "
            f"{r['fit_s']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    """Accuracy, NLL, ECE and OOD AUROC against N, one line per (method, prior)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = table(results)
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    for ax, (k, label) in zip(axes, (("accuracy", "test accuracy"), ("nll", "test NLL"),
                                     ("ece", "ECE"), ("ood_auroc", "OOD AUROC (entropy)")),
                              strict=True):  # fmt: skip
        for method, arm in sorted({(r["method"], r["arm"]) for r in rows}):
            rs = [r for r in rows if r["method"] == method and r["arm"] == arm]
            style = "-" if arm == "centered" else ("--" if arm == "scratch" else ":")
            ax.plot([r["n"] for r in rs], [r[k] for r in rs], style, marker="o",
                    label=f"{method}, {arm}")  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel("labels N (digits 5-9)")
        ax.set_title(label)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(results: dict[str, Any], out: Path) -> None:
    """JSON, markdown and PNG (rewritten after every run)."""
    (out / "prior_knowledge.json").write_text(json.dumps(results, indent=1))
    (out / "prior_knowledge.md").write_text(
        header(results["provenance"]) + "\n\n" + markdown(results)
    )
    plot(results, out / "prior_knowledge.png")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-labels", default="10,100,1000", help="comma-separated N")
    p.add_argument("--seeds", default="0", help="comma-separated seeds")
    p.add_argument("--pretrain-epochs", type=int, default=1)
    p.add_argument("--pretrain-size", type=int, default=None, help="smoke runs: fewer images")
    p.add_argument("--steps", type=int, default=150, help="optimiser steps per fit")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--val-size", type=int, default=200)
    p.add_argument("--test-size", type=int, default=1000)
    p.add_argument("--ood-size", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--rewrite", default=None, help="only rewrite DIR's markdown and figure")
    args = p.parse_args(argv)
    if args.rewrite:  # the tables and the figure from a finished run's JSON
        results = json.loads((Path(args.rewrite) / "prior_knowledge.json").read_text())
        write(results, Path(args.rewrite))
        return results
    args.n_labels = [int(v) for v in args.n_labels.split(",")]
    args.seeds = [int(v) for v in args.seeds.split(",")]
    torch.set_num_threads(args.threads)
    train, test = bdl.data.mnist("train"), bdl.data.mnist("test")
    old, new = train.y < 5, train.y >= 5
    x_pre, y_pre = train.x[old], train.y[old]
    if args.pretrain_size:
        x_pre, y_pre = x_pre[: args.pretrain_size], y_pre[: args.pretrain_size]
    t_new = test.y >= 5
    data = {
        "pre": (x_pre, y_pre),
        "new": (train.x[new], train.y[new] - 5),
        "test": (test.x[t_new][: args.test_size], test.y[t_new][: args.test_size] - 5),
        "ood": bdl.data.fashion_mnist("test").x[: args.ood_size],
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "args": vars(args), "n_pretrain": len(x_pre), "arms": {k: list(map(list, v)) for k, v in ARMS.items()},
        "pretrain_s": {}, "runs": {},
    }  # fmt: skip
    stamp(results, provenance(__file__, argv))
    start = time.perf_counter()
    run(args, data, out, results)
    results["runtime_s"] = time.perf_counter() - start
    write(results, out)
    print(markdown(results))
    return results


if __name__ == "__main__":
    main()
