"""How far is each approximation from the exact posterior? Every method against full-batch NUTS.

Izmailov et al.'s (2021) protocol at a size a 2-core CPU affords: a reference posterior by
full-batch NUTS (``bayesdl.diagnostics.nuts_reference``: several chains started at a MAP fit,
split R-hat and ESS on the test predictions, on the weights and on ``weight_invariants``
(the weights up to permutations of hidden units), and its cost), then every
registered method with its default constructor settings on the same data, network, prior
and likelihood, measured against the reference on the test inputs. The prior is every
method's default ``Normal(1)`` on the digits; on Boston it is ``Normal.fan_in(net)`` (Neal's
``N(0, 1/fan_in)`` weights, ``N(0, 1)`` biases; ``--boston-prior normal`` for ``Normal(1)``).
Its prior predictive sd on the standardised targets (sd 1) is 1.4, where ``Normal(1)``'s is
17.8 (``prior_predictive_boston.py``); with ``Normal(1)`` four NUTS chains of 2,000 draws
did not converge (weight-invariant R-hat 1.074, a dense mass matrix worse still), so the
switch was made after that run, for the prior's sake and the sampler's:

* (i) UCI Boston housing, 13-50-1 ReLU network, ``Gaussian(sigma=None)`` (learned noise;
  NUTS samples it), inputs and targets standardised on the training split, random 90/10
  splits (split i uses seed ``--seed + i``): W2 and ``KL(reference || method)`` of the
  moment-matched predictive Gaussians (standardised units), the total and epistemic
  predictive variance ratios, and test RMSE / NLL in original units;
* (ii) UCI digits (scikit-learn's 8x8 images, bayesdl's stratified 75/25 split), reduced
  by PCA (fitted on the training images, whitened) to ``--pca`` features, one hidden layer
  of ``--digits-hidden`` ReLU units, ``Categorical()``: agreement and total variation with
  the reference (Izmailov et al.'s measures), test accuracy and NLL.

Every method is trained with the same recipe (``--batch-size``, ``--epochs-*`` epochs) at its
own default learning rate and optimiser unless ``--lr`` is given (the rows committed before
the SG-MCMC defaults were retuned used Adam's 3e-3 for every method, which is not a sampler's
step size); the methods' own defaults are otherwise untouched, so a retuned default shows up
in a re-run. Methods that need dropout layers (``method_names(dropout=True)``) get the same
network with ``nn.Dropout(--dropout)`` before the output layer; initial weights are the same
for every method. Predictions use ``--samples`` posterior samples (methods with finitely
many draws use all of theirs).

Outputs in ``--out``: ``approximation_quality.json`` (every number, per split, with the
reference's convergence and cost, the command, git commit, library version and date),
``approximation_quality.md`` (the tables) and ``approximation_quality.png`` (distance to the
reference against test NLL, one point per method).

The committed results (each run's files copied from its ``--out``)::

    OMP_NUM_THREADS=1 python benchmarks/approximation_quality.py --problems digits --chains 4 --warmup 500 --draws 5000 --jobs 1 --out /tmp/aqd
    OMP_NUM_THREADS=1 python benchmarks/approximation_quality.py --problems boston --splits 2 --chains 4 --warmup 1000 --draws 3000 --max-tree-depth 8 --jobs 2 --out /tmp/aqb2

into ``results/approximation_quality_digits/`` (36 min on one core) and
``results/approximation_quality_boston/`` (74 min, a split per core).

Smoke run (seconds)::

    python benchmarks/approximation_quality.py --quick --out /tmp/aq
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch
from provenance import header, provenance, stamp
from torch import Tensor, nn

import bayesdl
from bayesdl import diagnostics, likelihoods

ROOT = Path(__file__).resolve().parent.parent
BOSTON_TEST_FRACTION = 0.1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--problems", default="boston,digits", help="comma-separated subset")
    p.add_argument("--splits", type=int, default=2, help="Boston train/test splits")
    p.add_argument("--seed", type=int, default=0, help="Boston split i uses seed SEED + i")
    p.add_argument("--methods", default="", help="comma-separated; default: every registered "
                   "method except hmc")  # fmt: skip
    p.add_argument("--boston-hidden", type=int, default=50)
    p.add_argument("--boston-prior", choices=("fan-in", "normal"), default="fan-in",
                   help="Boston's prior: Normal.fan_in(net) (Neal's) or Normal(1)")  # fmt: skip
    p.add_argument("--pca", type=int, default=20, help="PCA features of the digits")
    p.add_argument("--digits-hidden", type=int, default=10)
    p.add_argument("--dropout", type=float, default=0.1,
                   help="rate of the dropout layer of the dropout methods' network")  # fmt: skip
    p.add_argument("--epochs-boston", type=int, default=100)
    p.add_argument("--epochs-digits", type=int, default=50)
    p.add_argument("--lr", type=float, default=None,
                   help="learning rate of every method's fit (default: each method's own default, "
                        "as a user gets it); the reference's MAP start uses 3e-3 unless given")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--samples", type=int, default=100, help="posterior samples at prediction")
    p.add_argument("--chains", type=int, default=4, help="NUTS chains")
    p.add_argument("--warmup", type=int, default=100, help="NUTS warm-up iterations per chain")
    p.add_argument("--draws", type=int, default=100, help="NUTS draws kept per chain")
    p.add_argument("--max-tree-depth", type=int, default=6)
    p.add_argument("--init-epochs", type=int, default=100,
                   help="epochs of the MAP fit that starts the NUTS chains")  # fmt: skip
    p.add_argument("--jobs", type=int, default=3, help="problems/splits run in parallel")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--out", default="benchmarks/results/approximation_quality")
    p.add_argument("--quick", action="store_true", help="tiny smoke configuration")
    args = p.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    if args.quick:
        args.splits, args.boston_hidden, args.digits_hidden, args.pca = 1, 8, 4, 5
        args.epochs_boston = args.epochs_digits = args.init_epochs = 2
        args.chains, args.warmup, args.draws, args.max_tree_depth = 2, 5, 6, 3
        args.samples = 8
    return args


# -- data ------------------------------------------------------------------------------------
def boston_split(seed: int) -> dict[str, Any]:
    """Standardised train/test tensors of one random 90/10 split, and the target scale."""
    data = bayesdl.data.boston()
    perm = torch.randperm(len(data.x), generator=torch.Generator().manual_seed(seed))
    n_test = round(BOSTON_TEST_FRACTION * len(perm))
    test, train = perm[:n_test], perm[n_test:]
    x, y = data.x.float(), data.y.float()
    xm, xs = x[train].mean(0), x[train].std(0).clamp_min(1e-8)
    ym, ys = y[train].mean(0), y[train].std(0).clamp_min(1e-8)
    return {
        "x": (x[train] - xm) / xs, "y": (y[train] - ym) / ys,
        "x_test": (x[test] - xm) / xs, "y_test": (y[test] - ym) / ys, "y_scale": float(ys),
    }  # fmt: skip


def digits_pca(features: int) -> dict[str, Any]:
    """Digits flattened and reduced by a whitened PCA fitted on the training images."""
    from sklearn.decomposition import PCA

    train, test = bayesdl.data.digits("train"), bayesdl.data.digits("test")
    pca = PCA(features, whiten=True, random_state=0).fit(train.x.flatten(1).numpy())

    def reduce(x: Tensor) -> Tensor:
        return torch.as_tensor(pca.transform(x.flatten(1).numpy()), dtype=torch.float32)

    return {"x": reduce(train.x), "y": train.y, "x_test": reduce(test.x), "y_test": test.y,
            "explained_variance": float(pca.explained_variance_ratio_.sum())}  # fmt: skip


def network(d_in: int, hidden: int, d_out: int, dropout: float = 0.0) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(d_in, hidden), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers, nn.Linear(hidden, d_out))


# -- one problem: the reference, then every method --------------------------------------------
def _metrics(pred: Any, y: Tensor, y_scale: float) -> dict[str, float]:
    if isinstance(pred, bayesdl.CategoricalPredictive):
        return {"accuracy": bayesdl.metrics.accuracy(pred.probs, y),
                "nll": float(-pred.log_likelihood(y).mean())}  # fmt: skip
    rmse = float((pred.mean - y).square().mean().sqrt()) * y_scale
    return {"rmse": rmse, "nll": float(-pred.log_likelihood(y).mean()) + math.log(y_scale)}


def run_problem(problem: str, split: int, args: argparse.Namespace) -> dict[str, Any]:
    """Reference and every method on one problem (one Boston split, or the digits)."""
    torch.set_num_threads(args.threads)
    if problem == "boston":
        data, hidden, out = boston_split(args.seed + split), args.boston_hidden, 1
        epochs = args.epochs_boston

        def lik() -> likelihoods.Likelihood:
            return likelihoods.Gaussian(sigma=None)
    else:
        data, hidden, out = digits_pca(args.pca), args.digits_hidden, 10
        epochs = args.epochs_digits

        def lik() -> likelihoods.Likelihood:
            return likelihoods.Categorical()

    d_in, y_scale = data["x"].shape[1], data.get("y_scale", 1.0)

    def prior(net: nn.Module) -> bayesdl.priors.Prior | None:
        if problem == "boston" and args.boston_prior == "fan-in":
            return bayesdl.priors.Normal.fan_in(net)
        return None  # every method's default, Normal(1)

    seed = 1000 * split + (0 if problem == "boston" else 7)

    def model(dropout: float = 0.0) -> nn.Sequential:
        torch.manual_seed(seed)  # the same initial weights for every method
        return network(d_in, hidden, out, dropout)

    train, x_test, y_test = (data["x"], data["y"]), data["x_test"], data["y_test"]
    net = model()
    hmc, ref, report = diagnostics.nuts_reference(
        net, train, x_test, likelihood=lik(), prior=prior(net), chains=args.chains,
        draws=args.draws, warmup=args.warmup, max_tree_depth=args.max_tree_depth,
        init_epochs=args.init_epochs,
        lr=args.lr or 3e-3, batch_size=args.batch_size,
        generator=torch.Generator().manual_seed(seed),
    )  # fmt: skip
    result: dict[str, Any] = {
        "problem": problem, "split": split, "n_train": len(data["x"]),
        "n_test": len(x_test), "n_params": sum(p.numel() for p in model().parameters()),
        "reference": {**report.__dict__, **_metrics(ref, y_test, y_scale)},
        "methods": {},
    }  # fmt: skip
    if "explained_variance" in data:
        result["pca_explained_variance"] = data["explained_variance"]
    print(f"{problem} split {split}: reference {result['reference']}", flush=True)
    dropout_methods = set(bayesdl.method_names(dropout=True))
    for name in args.method_list:
        net = model(args.dropout if name in dropout_methods else 0.0)
        method = bayesdl.get_method(name)(net, likelihood=lik(), prior=prior(net))
        start = time.perf_counter()
        try:  # a method that fails at its defaults is a result, not the end of the run
            method.fit(train, epochs=epochs, lr=args.lr, batch_size=args.batch_size,
                       progress=False, generator=torch.Generator().manual_seed(seed + 1))  # fmt: skip
        except (FloatingPointError, RuntimeError) as err:
            result["methods"][name] = {"error": f"{type(err).__name__}: {err}"}
            print(f"{problem} split {split}: {name} failed: {err}", flush=True)
            continue
        fit_s = time.perf_counter() - start
        pred = method.predict(x_test, samples=args.samples,
                              generator=torch.Generator().manual_seed(seed + 2))  # fmt: skip
        row = diagnostics.compare(pred, ref) | _metrics(pred, y_test, y_scale)
        row |= {"fit_s": fit_s, "samples": pred.num_samples}
        result["methods"][name] = row
        print(f"{problem} split {split}: {name} {row}", flush=True)
    return result


# -- summary and outputs ------------------------------------------------------------------------
COLUMNS = {
    "boston": ["w2", "kl", "variance_ratio", "epistemic_variance_ratio", "rmse", "nll", "fit_s"],
    "digits": ["agreement", "total_variation", "accuracy", "nll", "fit_s"],
}
DISTANCE = {"boston": "w2", "digits": "total_variation"}


def _mean_se(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else math.nan
    return statistics.fmean(values), se


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per problem and method: mean and standard error over splits of every column."""
    out: dict[str, Any] = {}
    for problem in sorted({r["problem"] for r in runs}):
        mine = [r for r in runs if r["problem"] == problem]
        rows: dict[str, dict[str, Any]] = {}
        ref_cols = [c for c in COLUMNS[problem] if c in mine[0]["reference"]]
        rows["hmc (reference)"] = {
            c: _mean_se([r["reference"][c] for r in mine]) for c in ref_cols + ["wall_time_s"]
        }
        for name in mine[0]["methods"]:
            got = [r["methods"][name] for r in mine]
            rows[name] = {c: _mean_se([g.get(c, math.nan) for g in got])
                          for c in COLUMNS[problem]}  # fmt: skip
            rows[name]["failed"] = [g["error"] for g in got if "error" in g]
        out[problem] = rows
    return out


def _fmt(mean: float, se: float) -> str:
    if math.isnan(mean):
        return "-"
    digits = 3 if abs(mean) < 10 else 1
    return f"{mean:.{digits}f}" + ("" if math.isnan(se) else f" ± {se:.{digits}f}")


def markdown(results: dict[str, Any]) -> str:
    lines = [
        header(results["provenance"]),
        "",
        "# How far is each approximation from the exact posterior?",
        "",
        f"Runtime {results['runtime_s'] / 60:.1f} min with {results['args']['jobs']} "
        f"process(es) of {results['args']['threads']} thread(s).",
        "",
    ]
    titles = {
        "boston": "UCI Boston, 13-{h}-1 network, prior {bp}, {s} split(s): W2 and "
        "KL(reference || method) "
        "between moment-matched predictive Gaussians (standardised targets), predictive "
        "variance / reference's (total and epistemic), test RMSE and NLL (original units).",
        "digits": "Digits, PCA to {p} features, {p}-{dh}-10 network: agreement and total "
        "variation with the reference (Izmailov et al., 2021), test accuracy and NLL.",
    }
    a = results["args"]
    for problem, rows in results["summary"].items():
        cols = COLUMNS[problem]
        boston_prior = a.get("boston_prior", "normal")  # results made before the flag
        title = titles[problem].format(
            h=a["boston_hidden"], s=a["splits"], p=a["pca"], dh=a["digits_hidden"],
            bp="Normal.fan_in (Neal's)" if boston_prior == "fan-in" else "Normal(1)",
        )  # fmt: skip
        lines += [f"## {problem}", "", title + " Mean ± standard error over splits.", ""]
        lines.append("| method | " + " | ".join(cols) + " |")
        lines.append("|---" * (len(cols) + 1) + "|")
        failures = []
        for name, row in rows.items():
            cells = [_fmt(*row[c]) if c in row else "-" for c in cols]
            if name == "hmc (reference)":
                cells[-1] = _fmt(*row["wall_time_s"])
            if row.get("failed"):
                failures.append(f"{name} failed on {len(row['failed'])} split(s) "
                                f"({row['failed'][0]})")  # fmt: skip
                name += f" ({len(row['failed'])} failed)"
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        if failures:
            lines += ["", "Failures at the defaults (the row averages the other splits): "
                      + "; ".join(failures) + "."]  # fmt: skip
        lines += ["", "Reference (NUTS) convergence and cost, per split:", ""]
        lines.append("| split | chains x draws (warm-up) | R-hat predictions max / median | "
                     "ESS predictions min / median | R-hat weight invariants max | ESS weight "
                     "invariants min | R-hat weights max | ESS weights min | divergences | "
                     "seconds |")  # fmt: skip
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        for run in results["runs"]:
            if run["problem"] != problem:
                continue
            r = run["reference"]
            lines.append(
                f"| {run['split']} | {r['chains']} x {r['draws']} ({r['warmup']}) | "
                f"{r['max_r_hat_predictions']:.3f} / {r['median_r_hat_predictions']:.3f} | "
                f"{r['min_ess_predictions']:.0f} / {r['median_ess_predictions']:.0f} | "
                f"{_fmt(r.get('max_r_hat_weight_invariants', math.nan), math.nan)} | "
                f"{r.get('min_ess_weight_invariants', math.nan):.0f} | "
                f"{r['max_r_hat_weights']:.2f} | {r['min_ess_weights']:.1f} | "
                f"{r['divergences']} | {r['wall_time_s']:.0f} |"
            )
        lines.append("")
    return "\n".join(lines)


def figure(results: dict[str, Any], path: Path) -> None:
    from matplotlib.figure import Figure

    problems = list(results["summary"])
    fig = Figure(figsize=(5.5 * len(problems), 4.5), layout="constrained")
    axes = fig.subplots(1, len(problems), squeeze=False)[0]
    for ax, problem in zip(axes, problems, strict=True):
        rows = results["summary"][problem]
        key = DISTANCE[problem]
        for name, row in rows.items():
            if name == "hmc (reference)":
                ax.axhline(row["nll"][0], color="grey", ls=":", lw=1)
                ax.annotate("NUTS", (0, row["nll"][0]), textcoords="offset points",
                            xytext=(2, 3), fontsize=8, color="grey")  # fmt: skip
                continue
            (x, xe), (y, ye) = row[key], row["nll"]
            if math.isnan(x) or math.isnan(y):
                continue
            ax.errorbar(x, y, xerr=None if math.isnan(xe) else xe,
                        yerr=None if math.isnan(ye) else ye, fmt="o", ms=5)  # fmt: skip
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=8)
        ax.set_xlabel({"w2": "W2 to the NUTS predictive (standardised)",
                       "total_variation": "total variation to the NUTS predictive"}[key])  # fmt: skip
        ax.set_ylabel("test NLL")
        ax.set_xlim(left=0)
        ax.set_title(problem)
        ax.grid(alpha=0.25)
    fig.savefig(path, dpi=150)


def main(args: argparse.Namespace) -> dict[str, Any]:
    names = [n for n in bayesdl.method_names() if n != "hmc"]
    args.method_list = [m for m in args.methods.split(",") if m] or names
    unknown = [m for m in args.method_list if m not in names]
    if unknown:
        raise SystemExit(f"unknown --methods {unknown}; choose from {names}.")
    problems = [p for p in args.problems.split(",") if p]
    if not set(problems) <= {"boston", "digits"}:
        raise SystemExit(f"--problems must be a subset of boston,digits, got {problems}.")
    tasks = [("digits", 0)] if "digits" in problems else []
    tasks += [("boston", i) for i in range(args.splits)] if "boston" in problems else []
    record, start = provenance(__file__, args.argv), time.perf_counter()  # before the run
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            futures = [pool.submit(run_problem, p, s, args) for p, s in tasks]
            runs = [f.result() for f in futures]
    else:
        runs = [run_problem(p, s, args) for p, s in tasks]
    results = {
        "load_avg": os.getloadavg(),
        "runtime_s": time.perf_counter() - start,
        "args": {k: v for k, v in vars(args).items()},
        "summary": summarise(runs), "runs": runs,
    }  # fmt: skip
    stamp(results, record)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "approximation_quality.json").write_text(json.dumps(results, indent=1, default=str))
    text = markdown(results)
    (out / "approximation_quality.md").write_text(text + "\n")
    figure(results, out / "approximation_quality.png")
    print(text)
    return results


if __name__ == "__main__":
    main(parse_args())
