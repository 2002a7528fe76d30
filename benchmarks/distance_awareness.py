"""Distance awareness: does each method's epistemic uncertainty rise away from the data?

For every registered method (each with the settings in ``MOONS`` / ``MNIST``; the rest
through the common interface) on two problems:

- **two moons** (the demo's: 200 training points, noise 0.2, its network 2-64-64-2 with
  ReLU; the methods that need dropout get p = 0.1 after the first hidden layer): the
  far field is the demo's grid (the data's range +- 1.5) at the points more than 1.0 from
  every training point, the in-data points are 1,000 held-out moons;
- **MNIST -> Fashion-MNIST**, scaled down to fit a loaded two-core machine: an MLP
  784-200-10 (dropout 0.5 before the output layer, as ``methods_mnist.py``), the first
  ``--mnist-train`` training images, ``--mnist-epochs`` epochs, the first ``--mnist-test``
  MNIST test images as in-data and as many Fashion-MNIST test images as the far field.
  HMC (full-batch NUTS) is left out on MNIST.

Reported per method: accuracy and NLL on the in-data points, and for the mutual
information (epistemic uncertainty) and the predictive entropy (total): the far-field
fraction (``bayesdl.metrics.far_field_fraction``: far-field points above the 95th
percentile of the in-data values) and the OOD AUROC (far field against in-data). SNGP's
lengthscale is chosen per problem on validation NLL (a split of the training data, never
the test data) from ``--sngp-lengthscales``.

Example (the committed results)::

    python benchmarks/distance_awareness.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from provenance import header, provenance
from torch import Tensor, nn

import bayesdl as bdl
from bayesdl.demo import moons_mlp
from bayesdl.models import mlp

SAMPLES = 50
MOONS: dict[str, dict[str, Any]] = {
    "map": {"fit": {"lr": 0.01}},
    "vi": {"ctor": {"estimator": "local"}, "fit": {"lr": 0.01}},
    "mc-dropout": {"fit": {"lr": 0.01}},
    "concrete-dropout": {"fit": {"lr": 0.01}},
    "l0": {"fit": {"lr": 0.01}},
    "laplace": {"fit": {"lr": 0.01}},
    "ensemble": {"fit": {"lr": 0.01}},
    "swag": {"fit": {"lr": 0.01}},
    "multiswag": {"fit": {"lr": 0.01}},
    "sgld": {"ctor": {"lr": 0.1}},
    "sghmc": {"ctor": {"lr": 0.01}},
    "hmc": {"ctor": {"num_samples": 100, "max_tree_depth": 6}, "fit": {"warmup": 100}},
    "sngp": {"fit": {"lr": 0.01}},
}
"""Constructor and ``fit`` arguments per method on two moons (``fit``'s epochs apart)."""
MNIST: dict[str, dict[str, Any]] = {
    "l0": {"ctor": {"l0_weight": 3.0}, "fit": {"lr": 1e-2}},
    "laplace": {"ctor": {"subset": "last_layer", "hessian": "kfac"}},
    "swag": {"ctor": {"rank": 20, "collect_unit": "step", "collect_every": 20}},
    "multiswag": {"ctor": {"members": 3, "rank": 20, "collect_unit": "step",
                           "collect_every": 20}},
    "sgld": {"ctor": {"lr": 0.1}},
    "sghmc": {"ctor": {"lr": 0.01}},
}  # fmt: skip
"""The same on MNIST (``methods_mnist.py``'s choices); methods not listed use defaults."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line.

    Args:
        argv: Arguments without the program name (``None``: ``sys.argv[1:]``).
    """
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", default=",".join(bdl.method_names()))
    p.add_argument("--problems", default="moons,mnist")
    p.add_argument("--moons-epochs", type=int, default=250, help="minibatches of 50: 4 steps")
    p.add_argument("--moons-resolution", type=int, default=60)
    p.add_argument("--mnist-train", type=int, default=10000)
    p.add_argument("--mnist-test", type=int, default=2000)
    p.add_argument("--mnist-epochs", type=int, default=3)
    p.add_argument("--sngp-lengthscales", default="0.5,1,2,4")
    p.add_argument("--sngp-features", type=int, default=1024, help="SNGP's random features")
    p.add_argument("--samples", type=int, default=SAMPLES)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="benchmarks/results")
    return p.parse_args(argv)


def _fit(name: str, model: nn.Module, train: tuple[Tensor, Tensor], settings: dict[str, Any],
         epochs: int, batch_size: int, seed: int, **ctor: Any) -> tuple[Any, float]:  # fmt: skip
    cls = bdl.get_method(name)
    method = cls(model, **{**settings.get("ctor", {}), **ctor})
    fit_kw = {"epochs": epochs, **settings.get("fit", {})}
    start = time.perf_counter()
    method.fit(train, batch_size=batch_size, progress=False,
               generator=torch.Generator().manual_seed(seed), **fit_kw)  # fmt: skip
    return method, time.perf_counter() - start


def _scores(method: Any, x: Tensor, samples: int, seed: int) -> Any:
    return method.predict(x, samples=samples, generator=torch.Generator().manual_seed(seed))


def _measure(method: Any, x_in: Tensor, y_in: Tensor, x_far: Tensor, samples: int,
             seed: int) -> tuple[dict[str, float], Any]:  # fmt: skip
    p_in, p_far = _scores(method, x_in, samples, seed), _scores(method, x_far, samples, seed)
    row = {
        "accuracy": bdl.metrics.accuracy(p_in.probs, y_in),
        "nll": bdl.metrics.nll(p_in.probs, y_in),
    }
    for key, score in (
        ("mi", lambda p: p.mutual_information()),
        ("entropy", lambda p: p.entropy()),
    ):
        s_in, s_far = score(p_in).float(), score(p_far).float()
        row[f"far_fraction_{key}"] = bdl.metrics.far_field_fraction(s_in, s_far)
        row[f"auroc_{key}"] = bdl.metrics.ood_auroc(s_in, s_far)
    return row, p_far


def _choose_lengthscale(make: Any, train: tuple[Tensor, Tensor], settings: dict[str, Any],
                        epochs: int, batch_size: int, seed: int,
                        grid: list[float], features: int) -> tuple[float, dict[str, float]]:  # fmt: skip
    """SNGP's lengthscale with the lowest NLL on the last 20% of the training data."""
    x, y = train
    n_fit = int(0.8 * len(x))
    nlls = {}
    for ls in grid:
        method, _ = _fit("sngp", make(False), (x[:n_fit], y[:n_fit]), settings, epochs,
                         batch_size, seed, lengthscale=ls, random_features=features)  # fmt: skip
        probs = _scores(method, x[n_fit:], 20, seed).probs
        nlls[str(ls)] = bdl.metrics.nll(probs, y[n_fit:])
    best = min(grid, key=lambda ls: nlls[str(ls)])
    return best, nlls


def _problem(name: str, args: argparse.Namespace, methods: list[str]) -> dict[str, Any]:
    seed = args.seed
    if name == "moons":
        train = bdl.data.two_moons(200, noise=0.2, seed=seed)
        test = bdl.data.two_moons(1000, noise=0.2, seed=seed + 1)
        lo, hi = train.x.min(0).values - 1.5, train.x.max(0).values + 1.5
        r = args.moons_resolution
        gx, gy = torch.meshgrid(torch.linspace(float(lo[0]), float(hi[0]), r),
                                torch.linspace(float(lo[1]), float(hi[1]), r),
                                indexing="xy")  # fmt: skip
        grid = torch.stack([gx.flatten(), gy.flatten()], 1)
        far = torch.cdist(grid, train.x).min(1).values > 1.0
        x_far = grid[far]
        x_tr, y_tr, x_in, y_in = train.x, train.y, test.x, test.y
        settings, epochs, batch = MOONS, args.moons_epochs, 50

        def make(dropout: bool) -> nn.Module:
            return moons_mlp(0.1 if dropout else 0.0)

        extra: dict[str, Any] = {"grid": grid, "far": far, "gx": gx, "gy": gy,
                                 "train": (x_tr, y_tr)}  # fmt: skip
    else:
        mn_train, mn_test = bdl.data.mnist("train"), bdl.data.mnist("test")
        fm_test = bdl.data.fashion_mnist("test")
        x_tr, y_tr = mn_train.x[: args.mnist_train], mn_train.y[: args.mnist_train]
        x_in, y_in = mn_test.x[: args.mnist_test], mn_test.y[: args.mnist_test]
        x_far = fm_test.x[: args.mnist_test]
        settings, epochs, batch = MNIST, args.mnist_epochs, 128
        methods = [m for m in methods if not bdl.get_method(m).full_batch]

        def make(dropout: bool) -> nn.Module:
            return mlp(784, 10, hidden=(200,), dropout=0.5)

        extra = {}
    results: dict[str, Any] = {"methods": {}, "n_train": len(x_tr), "n_in": len(x_in),
                               "n_far": len(x_far), "epochs": epochs, "batch_size": batch}  # fmt: skip
    maps: dict[str, Tensor] = {}
    for m in methods:
        kw: dict[str, Any] = {}
        if m == "sngp":
            kw["random_features"] = args.sngp_features
            grid_ls = [float(v) for v in args.sngp_lengthscales.split(",")]
            torch.manual_seed(seed)
            ls, nlls = _choose_lengthscale(make, (x_tr, y_tr), settings.get(m, {}), epochs,
                                           batch, seed, grid_ls, args.sngp_features)  # fmt: skip
            kw["lengthscale"] = ls
            results["sngp_lengthscale"] = {"chosen": ls, "validation_nll": nlls}
        torch.manual_seed(seed)
        model = make(bdl.get_method(m).needs_dropout)
        print(f"[{name}] fitting {m}", flush=True)
        method, fit_s = _fit(m, model, (x_tr, y_tr), settings.get(m, {}), epochs, batch, seed,
                             **kw)  # fmt: skip
        row, p_far = _measure(method, x_in, y_in, x_far, args.samples, seed)
        row["fit_time_s"] = fit_s
        results["methods"][m] = row
        print(f"[{name}] {m}: {json.dumps(row)}", flush=True)
        if name == "moons":
            maps[m] = _scores(method, extra["grid"], args.samples, seed).mutual_information()
    if name == "moons":
        results["_maps"] = (maps, extra)
    return results


def _plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    moons = results["problems"].get("moons")
    rows = []
    if moons is not None:
        maps, extra = moons.pop("_maps")
        rows.append("maps")
    names = list(next(iter(results["problems"].values()))["methods"])
    ncol = min(len(names), 7)
    nmap = (len(names) + ncol - 1) // ncol if moons is not None else 0
    fig = plt.figure(figsize=(2.4 * ncol, 2.4 * nmap + 3.2))
    gs = fig.add_gridspec(nmap + 1, ncol, height_ratios=[1] * nmap + [1.3])
    if moons is not None:
        x_tr, y_tr = extra["train"]
        for i, m in enumerate(maps):
            ax = fig.add_subplot(gs[i // ncol, i % ncol])
            z = maps[m].reshape(extra["gx"].shape)
            ax.contourf(extra["gx"], extra["gy"], z, levels=20, cmap="viridis")
            ax.scatter(x_tr[:, 0], x_tr[:, 1], c=y_tr, s=3, cmap="coolwarm")
            frac = moons["methods"][m]["far_fraction_mi"]
            ax.set_title(f"{m}: far {frac:.2f}", fontsize=8)
            ax.set_xticks([]), ax.set_yticks([])
    ax = fig.add_subplot(gs[nmap, :])
    width = 0.8 / max(1, len(results["problems"]))
    for k, (prob, res) in enumerate(results["problems"].items()):
        ms = [m for m in names if m in res["methods"]]
        xs = [names.index(m) + k * width for m in ms]
        ax.bar(xs, [res["methods"][m]["far_fraction_mi"] for m in ms], width, label=prob)
    ax.set_xticks([i + width / 2 for i in range(len(names))], names, rotation=30, fontsize=8)
    ax.set_ylabel("far-field fraction (MI)")
    ax.axhline(0.05, color="grey", lw=0.8, ls="--")
    ax.legend(fontsize=8)
    fig.suptitle("Mutual information on two moons (top) and far-field fraction (bottom)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _markdown(results: dict[str, Any]) -> str:
    lines = [header(results["provenance"]), "", "# Distance awareness", "",
             f"Scale: {json.dumps(results['scale'])}; {results['samples']} samples per "
             "prediction; one seed. Far fraction: far-field points above the 95th "
             "percentile of the in-data value (0.05 = no distance awareness); AUROC: far "
             "field against in-data.", ""]  # fmt: skip
    for prob, res in results["problems"].items():
        lines += [f"## {prob} (train {res['n_train']}, in-data {res['n_in']}, far field "
                  f"{res['n_far']}, {res['epochs']} epochs)", ""]  # fmt: skip
        if "sngp_lengthscale" in res:
            lines += [f"SNGP lengthscale chosen on validation NLL: {res['sngp_lengthscale']}", ""]
        lines += ["| method | accuracy | NLL | far fraction (MI) | AUROC (MI) | "
                  "far fraction (entropy) | AUROC (entropy) | fit s |",
                  "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for m, r in res["methods"].items():
            lines.append(
                f"| {m} | {r['accuracy']:.4f} | {r['nll']:.4f} | {r['far_fraction_mi']:.3f} | "
                f"{r['auroc_mi']:.3f} | {r['far_fraction_entropy']:.3f} | "
                f"{r['auroc_entropy']:.3f} | {r['fit_time_s']:.1f} |"
            )
        lines.append("")
    lines.append(f"Total wall time: {results['wall_time_s']:.0f} s.")
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace, argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and write ``distance_awareness.{json,md,png}`` to ``args.out``.

    Args:
        args: Parsed command line (``parse_args``).
        argv: The arguments it was parsed from (recorded in the provenance).
    """
    torch.set_num_threads(args.threads)
    record = provenance(__file__, argv)  # before any results file is rewritten
    start = time.perf_counter()
    methods = [m for m in args.methods.split(",") if m]
    results: dict[str, Any] = {"problems": {}, "samples": args.samples, "scale": {
        "moons_epochs": args.moons_epochs, "moons_resolution": args.moons_resolution,
        "mnist_train": args.mnist_train, "mnist_test": args.mnist_test,
        "mnist_epochs": args.mnist_epochs, "seed": args.seed, "threads": args.threads,
        "sngp_features": args.sngp_features,
    }}  # fmt: skip
    for prob in args.problems.split(","):
        results["problems"][prob] = _problem(prob, args, methods)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _plot(results, out / "distance_awareness.png")
    results["wall_time_s"] = time.perf_counter() - start
    results["provenance"] = record
    (out / "distance_awareness.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "distance_awareness.md").write_text(_markdown(results))
    return results


if __name__ == "__main__":
    import sys

    main(parse_args(), sys.argv[1:])
