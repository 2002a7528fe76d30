"""UCI Boston housing regression (Hernandez-Lobato & Adams, 2015 protocol) with bayesdl.

Protocol, as in Gal & Ghahramani (2016) and Lakshminarayanan et al. (2017): 20 random 90/10
train/test splits (split i drawn with seed ``--seed + i``); one hidden layer of 50 ReLU
units; inputs and targets standardised with the statistics of the data each network is
trained on; metrics in original units: test RMSE of the predictive mean and the test
log-likelihood per point of the Bayesian model average (``log p_std(y_std) - log y_std``),
reported as mean +- standard error (sd / sqrt(splits)) over the splits.

The configurations, each built as ``bayesdl.get_method(name)(model, likelihood=...,
prior=..., **CTOR)``: ``map``, ``vi`` (mean-field VI) and ``mc-dropout`` (``nn.Dropout``
before the output layer), with learned homoscedastic noise (``Gaussian(sigma=None)``) or,
``-hetero``, with ``HeteroscedasticGaussian()`` (the net outputs mean and log-variance);
``laplace`` (full GGN over all weights, homoscedastic only); and ``ensemble`` (5 MAP
networks, Lakshminarayanan et al. without their adversarial training), with either noise
model; and ``hmc`` (NUTS over all 751 weights and the log noise sd, homoscedastic,
started at a MAP fit), or ``hmc-fixed-noise`` with the noise held at that MAP fit's value,
or ``hmc-hier`` with Neal's hierarchical prior instead of a fixed Normal: one Gamma(1, 1)
precision per parameter tensor, integrated out (``priors.GammaPrecision``), so each
layer's weight scale is inferred with the weights.

Hyperparameters are chosen per split on a validation set (20% of the training part; the
test part is never looked at): every setting of the method's grid (``GRIDS``: Normal prior
scale, and the dropout rate for MC dropout) is trained on the other 80% in stages of
``--epochs`` (each stage one ``fit`` call, so Adam restarts at stage boundaries), and
scored by validation log-likelihood after each stage. A deep ensemble's ``fit`` retrains
its members from scratch, so each of its stages is a fresh fit of that many epochs (same
seeds). The best (setting, epochs) is then refit on the whole training part with the same
stages and evaluated once on the test part. HMC has nothing to choose (one prior, one
MAP-initialisation length ``--hmc-epochs``), so it skips validation and is fitted once on
the whole training part.

Outputs in ``--out``: ``uci_boston.json`` (``methods`` -> config -> rmse/ll mean and se,
plus per-split values, chosen hyperparameters, config, runtime) and ``uci_boston.md`` (the
table beside published numbers, which the script also prints).

Example (the committed results; 2-core machine, one torch thread)::

    python benchmarks/uci_boston.py --configs map,map-hetero,vi,vi-hetero,mc-dropout,mc-dropout-hetero --out benchmarks/results
    python benchmarks/uci_boston.py --append --configs laplace --out benchmarks/results
    python benchmarks/uci_boston.py --append --configs ensemble,ensemble-hetero --out benchmarks/results
    python benchmarks/uci_boston.py --append --configs hmc --jobs 2 --hmc-chains 2 --hmc-samples 100 --hmc-warmup 200 --out benchmarks/results
    python benchmarks/uci_boston.py --append --configs mc-dropout,laplace --epochs 10,20,40,80,160,320,640,1280,2560 --rates 0.005,0.01,0.05,0.1,0.2 --suffix @2560ep --jobs 2 --out benchmarks/results

Smoke run (seconds)::

    python benchmarks/uci_boston.py --quick --out /tmp/uci
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import torch
from provenance import header, provenance, stamp
from torch import Tensor, nn
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

import bayesdl
from bayesdl import likelihoods, priors
from bayesdl.metrics import rmse

HIDDEN = 50
TEST_FRACTION = 0.1
VALID_FRACTION = 0.2

#: Configuration key -> (registered method name, heteroscedastic likelihood).
CONFIGS: dict[str, tuple[str, bool]] = {
    "map": ("map", False),
    "map-hetero": ("map", True),
    "vi": ("vi", False),
    "vi-hetero": ("vi", True),
    "mc-dropout": ("mc-dropout", False),
    "mc-dropout-hetero": ("mc-dropout", True),
    "laplace": ("laplace", False),
    "ensemble": ("ensemble", False),
    "ensemble-hetero": ("ensemble", True),
    "hmc": ("hmc", False),
    "hmc-fixed-noise": ("hmc", False),
    "hmc-hier": ("hmc", False),
}

#: Constructor arguments of one configuration (beyond ``CTOR`` of its method).
CONFIG_CTOR: dict[str, dict[str, Any]] = {"hmc-fixed-noise": {"sample_noise": False}}

#: Methods whose ``fit`` starts from scratch (a deep ensemble re-initialises and retrains
#: every member): their stages are fresh fits of that many epochs, not continuations.
RESTARTS = {"ensemble", "hmc"}

#: Constructor arguments beyond likelihood and prior. Laplace: the whole 13-50-1 network
#: (751 weights) with the exact GGN; prior precision by the marginal likelihood (default).
#: It has no heteroscedastic variant (its GGN is defined for Categorical and Gaussian).
#: Deep ensembles: 5 members (Lakshminarayanan et al.), each a MAP network with its own
#: initialisation, shuffling and (learned) noise; the prediction is their uniform mixture.
#: HMC: NUTS (Pyro) with trees of depth <= 8, ``--hmc-chains`` chains of
#: ``--hmc-samples`` kept draws (set in ``main``).
CTOR: dict[str, dict[str, Any]] = {
    "laplace": {"subset": "all", "hessian": "full"},
    "ensemble": {"members": 5},
    "hmc": {"max_tree_depth": 8},
}

#: Validation grid per method (or per configuration, which wins): Normal prior scale
#: (standardised units) or the Gamma hyperprior of ``priors.GammaPrecision``. MC dropout's
#: grid is its dropout rates (``--rates``), each with prior scale 1.
GRIDS: dict[str, list[dict[str, float]]] = {
    "map": [{"prior_scale": s} for s in (0.1, 0.3, 1.0)],
    "vi": [{"prior_scale": s} for s in (0.3, 1.0)],
    "laplace": [{"prior_scale": s} for s in (0.3, 1.0)],  # the MAP fit's prior
    "ensemble": [{"prior_scale": s} for s in (0.3, 1.0)],  # MAP's usual choices
    "hmc": [{"prior_scale": 1.0}],
    "hmc-hier": [{"gamma_shape": 1.0, "gamma_rate": 1.0}],
}

#: Published test RMSE / log-likelihood on Boston (means over 20 splits of HL&A's data).
PUBLISHED: dict[str, dict[str, Any]] = {
    "VI": {"rmse": 4.32, "ll": -2.90, "source": "Graves (2011), in Hernandez-Lobato & Adams (2015)"},
    "PBP": {"rmse": 3.01, "ll": -2.57, "source": "Hernandez-Lobato & Adams (2015)"},
    "MC dropout": {"rmse": 2.97, "ll": -2.46, "source": "Gal & Ghahramani (2016)"},
    "tuned MC dropout": {"rmse": 2.90, "ll": -2.40, "source": "unverified source (Gal's DropoutUncertaintyExps README, 10x epochs: 2.80 / -2.39)"},
    "deep ensembles": {"rmse": 3.28, "ll": -2.41, "source": "Lakshminarayanan et al. (2017)"},
}  # fmt: skip

#: Target for the best bayesdl configuration.
TARGET = {"rmse": 2.85, "ll": -2.38}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--splits", type=int, default=20, help="number of train/test splits")
    p.add_argument("--seed", type=int, default=0, help="split i uses seed SEED + i")
    p.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset")
    p.add_argument("--epochs", default="10,20,40,80,160,320",
                   help="cumulative epoch counts at which validation scores are taken")  # fmt: skip
    p.add_argument("--restart-epochs", default="10,20,40,80,160",
                   help="epoch counts tried for methods that retrain from scratch (ensembles)")  # fmt: skip
    p.add_argument(
        "--hmc-epochs",
        type=int,
        default=200,
        help="epochs of the MAP fit that initialises HMC (and learns the noise)",
    )
    p.add_argument("--hmc-warmup", type=int, default=300, help="NUTS warm-up iterations per chain")
    p.add_argument("--hmc-samples", type=int, default=200, help="NUTS draws kept per chain")
    p.add_argument("--hmc-chains", type=int, default=1, help="NUTS chains")
    p.add_argument("--rates", default="0.005,0.01,0.05,0.1",
                   help="dropout rates of the MC dropout grid (each with prior scale 1)")  # fmt: skip
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--samples", type=int, default=1000, help="posterior samples at prediction")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--jobs", type=int, default=1, help="splits run in parallel (processes)")
    p.add_argument("--out", default="benchmarks/results", help="output directory")
    p.add_argument("--quick", action="store_true", help="tiny smoke configuration")
    p.add_argument(
        "--append",
        action="store_true",
        help="add --configs to the results already in --out (same splits)",
    )
    p.add_argument("--suffix", default="",
                   help="appended to the row names of this invocation, e.g. @2560ep")  # fmt: skip
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for the results' provenance
    return args


def _seed(*parts: Any) -> int:
    """A reproducible seed from a tuple of labels (independent of PYTHONHASHSEED)."""
    return zlib.crc32(repr(parts).encode())


def split_indices(n: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """Random (sub-train, validation, test) indices: test 10%, validation 20% of the rest."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_test = round(TEST_FRACTION * n)
    test, train = perm[:n_test], perm[n_test:]
    n_valid = round(VALID_FRACTION * train.numel())
    return train[n_valid:], train[:n_valid], test


class Standardiser:
    """Mean/std standardisation of inputs and targets fitted on one training set.

    Args:
        x: Training inputs, shape (N, D).
        y: Training targets, shape (N, 1).
    """

    def __init__(self, x: Tensor, y: Tensor) -> None:
        self.x_mean, self.x_std = x.mean(0), x.std(0).clamp_min(1e-8)
        self.y_mean, self.y_std = y.mean(0), y.std(0).clamp_min(1e-8)

    def x(self, x: Tensor) -> Tensor:
        """Standardised inputs."""
        return (x - self.x_mean) / self.x_std

    def y(self, y: Tensor) -> Tensor:
        """Standardised targets."""
        return (y - self.y_mean) / self.y_std


def build_model(method: str, hetero: bool, p: float = 0.0) -> nn.Sequential:
    """13-50-1 ReLU network (2 outputs if ``hetero``), with Dropout(p) for MC dropout."""
    layers: list[nn.Module] = [nn.Linear(13, HIDDEN), nn.ReLU()]
    if method == "mc-dropout":
        layers.append(nn.Dropout(p))
    layers.append(nn.Linear(HIDDEN, 2 if hetero else 1))
    return nn.Sequential(*layers)


def _loader(x: Tensor, y: Tensor, batch_size: int, generator: torch.Generator) -> DataLoader:
    """Shuffled minibatches indexed in one go (a per-example DataLoader is slower here)."""
    data = TensorDataset(x, y)
    sampler = BatchSampler(RandomSampler(data, generator=generator), batch_size, False)
    return DataLoader(data, batch_size=None, sampler=sampler)


def evaluate(
    method: Any, std: Standardiser, x: Tensor, y: Tensor, samples: int, seed: int
) -> dict[str, float]:
    """Test RMSE and mean log-likelihood per point, both in original units.

    Args:
        method: A fitted bayesdl method.
        std: The standardisation its training data used.
        x: Inputs in original units, shape (N, 13).
        y: Targets in original units, shape (N, 1).
        samples: Posterior samples S of the model average.
        seed: Seed of the posterior draws.
    """
    pred = method.predict(std.x(x), samples=samples, generator=torch.Generator().manual_seed(seed))
    ll = pred.log_likelihood(std.y(y)).mean().item() - math.log(std.y_std.item())  # (N,) -> mean
    mean = pred.mean * std.y_std + std.y_mean
    return {"rmse": rmse(mean, y), "ll": ll}


def train_staged(
    config: str,
    setting: dict[str, float],
    x: Tensor,
    y: Tensor,
    stages: list[int],
    args: argparse.Namespace,
    seed: int,
    x_eval: Tensor,
    y_eval: Tensor,
) -> list[dict[str, float]]:
    """Fit one configuration in stages and score it on (x_eval, y_eval) after each stage.

    Args:
        config: Key of ``CONFIGS``.
        setting: Grid point (``prior_scale`` or ``gamma_shape`` and ``gamma_rate``; for MC
            dropout also ``p``).
        x, y: Training data in original units, shapes (N, 13) and (N, 1).
        stages: Increasing cumulative epoch counts; training stops at the last.
        args: Parsed options (lr, batch size, samples).
        seed: Seed of the initialisation, shuffling, and training/prediction noise.
        x_eval, y_eval: Evaluation data in original units.

    Returns:
        One ``{"epochs", "rmse", "ll"}`` record per stage.
    """
    name, hetero = CONFIGS[config]
    std = Standardiser(x, y)

    def build() -> tuple[Any, DataLoader, torch.Generator]:
        torch.manual_seed(seed)  # initialisation and nn.Dropout (which takes no generator)
        gen = torch.Generator().manual_seed(seed)
        model = build_model(name, hetero, setting.get("p", 0.0))
        lik = likelihoods.HeteroscedasticGaussian() if hetero else likelihoods.Gaussian(sigma=None)
        ctor = CTOR.get(name, {}) | CONFIG_CTOR.get(config, {})
        if name == "hmc":
            ctor = ctor | {"num_samples": args.hmc_samples, "num_chains": args.hmc_chains}
        if "gamma_shape" in setting:
            prior: priors.Prior = priors.GammaPrecision(
                setting["gamma_shape"], setting["gamma_rate"]
            )
        else:
            prior = priors.Normal(setting["prior_scale"])
        method = bayesdl.get_method(name)(model, likelihood=lik, prior=prior, **ctor)
        return method, _loader(std.x(x), std.y(y), args.batch_size, gen), gen

    method, loader, gen = build()
    records, done = [], 0
    for epochs in stages:
        if name in RESTARTS:
            method, loader, gen = build()
            done = 0
        extra = {"warmup": args.hmc_warmup} if name == "hmc" else {}
        method.fit(loader, epochs=epochs - done, lr=args.lr, progress=False, generator=gen,
                   **extra)  # fmt: skip
        done = epochs
        scores = evaluate(method, std, x_eval, y_eval, args.samples, seed + epochs)
        records.append({"epochs": epochs, **scores})
    return records


def run_split(
    split: int, data: tuple[Tensor, Tensor], configs: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    """Select hyperparameters on validation, refit on the training part, test once."""
    x, y = data
    sub, valid, test = split_indices(x.shape[0], args.seed + split)
    train = torch.cat([sub, valid])
    out: dict[str, Any] = {}
    for config in configs:
        start = time.perf_counter()
        grid = args.grids.get(config) or args.grids[CONFIGS[config][0]]
        restarts = CONFIGS[config][0] in RESTARTS
        stages = args.restart_stages if restarts else args.stages
        if CONFIGS[config][0] == "hmc":
            stages = [args.hmc_epochs]
        best: tuple[float | None, dict[str, float], int] | None = None
        if len(grid) == 1 and len(stages) == 1:  # nothing to choose: no validation fits
            best = (None, grid[0], stages[0])
        validation = []
        for k, setting in enumerate(grid if best is None else []):
            seed = _seed(args.seed, split, config, "valid", k)
            recs = train_staged(config, setting, x[sub], y[sub], stages, args, seed,
                                x[valid], y[valid])  # fmt: skip
            validation.append({"setting": setting, "scores": recs})
            for r in recs:
                if math.isfinite(r["ll"]) and (best is None or r["ll"] > best[0]):
                    best = (r["ll"], setting, r["epochs"])
        if best is None:
            raise RuntimeError(f"split {split}, {config}: no finite validation log-likelihood.")
        valid_ll, setting, epochs = best
        seed = _seed(args.seed, split, config, "test")
        chosen_stages = [epochs] if restarts else [s for s in stages if s <= epochs]
        test_scores = train_staged(config, setting, x[train], y[train], chosen_stages, args,
                                   seed, x[test], y[test])[-1]  # fmt: skip
        out[config] = {
            "rmse": test_scores["rmse"],
            "ll": test_scores["ll"],
            "chosen": {**setting, "epochs": epochs},
            "valid_ll": valid_ll,
            "validation": validation,
            "time_s": time.perf_counter() - start,
        }
    return out


def _mean_se(values: list[float]) -> dict[str, float]:
    sd = statistics.stdev(values) if len(values) > 1 else float("nan")
    return {"mean": statistics.fmean(values), "se": sd / math.sqrt(len(values))}


def summarize(splits: list[dict[str, Any]], configs: list[str]) -> dict[str, Any]:
    """Mean and standard error over splits of RMSE and LL, per configuration."""
    return {c: {m: _mean_se([s[c][m] for s in splits]) for m in ("rmse", "ll")} for c in configs}


def _chosen_summary(splits: list[dict[str, Any]], config: str) -> str:
    """How often each (setting, epochs) was chosen, e.g. ``p=0.05 s=1 e=80: 7``."""
    counts: dict[str, int] = {}
    for s in splits:
        ch = s[config]["chosen"]
        key = " ".join(
            f"{'s' if k == 'prior_scale' else 'e' if k == 'epochs' else k}={v:g}"
            for k, v in ch.items()
        )
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{k}: {n}" for k, n in sorted(counts.items(), key=lambda t: -t[1]))


def markdown(results: dict[str, Any]) -> str:
    """Table of every configuration beside the published numbers, plus chosen settings."""
    n = results["config"]["splits"]
    lines = [
        f"Boston housing, {n} random 90/10 splits, mean +- standard error over splits "
        "(published: HL&A's 20 fixed splits, means only).",
        "",
        "| method | source | test RMSE | test LL |",
        "|---|---|---|---|",
    ]
    for c, m in results["methods"].items():
        r, ll = m["rmse"], m["ll"]
        lines.append(
            f"| {c} | bayesdl | {r['mean']:.2f} +- {r['se']:.2f} | {ll['mean']:.2f} +- {ll['se']:.2f} |"
        )
    for name, p in PUBLISHED.items():
        lines.append(f"| {name} | {p['source']} | {p['rmse']:.2f} | {p['ll']:.2f} |")
    t = results["target"]
    lines += [
        "",
        f"Target for the best configuration: RMSE <= {TARGET['rmse']} and LL >= {TARGET['ll']}. "
        f"Best RMSE: {t['best_rmse_config']} ({t['best_rmse']:.2f}); best LL: "
        f"{t['best_ll_config']} ({t['best_ll']:.2f}); met: {'yes' if t['met'] else 'no'}.",
        "",
        "Chosen on validation (s = prior scale, p = dropout rate, e = epochs; count of splits):",
        "",
    ]
    lines += [f"- {c}: {_chosen_summary(results['splits'], c)}" for c in results["methods"]]
    cfg = results["config"]
    lines += [
        "",
        f"Adam lr {cfg['lr']}, batch {cfg['batch_size']}, epoch stages {cfg['epochs']}, "
        f"S = {cfg['samples']} posterior samples, {cfg['threads']} torch thread(s); "
        f"runtime {results['runtime_s'] / 60:.1f} min.",
    ]
    for c in results.get("appended", []):
        if c.get("suffix"):
            dropout = any(CONFIGS[x][0] == "mc-dropout" for x in c["configs"])
            rates = [g["p"] for g in c["grids"]["mc-dropout"]]
            lines.append(
                f"Rows ending in {c['suffix']}: epoch stages {c['epochs']}"
                + (f", MC dropout rates {rates}" if dropout else "")
                + " (appended invocation)."
            )
    restarts = [
        c["restart_epochs"] for c in [cfg, *results.get("appended", [])] if "restart_epochs" in c
    ]
    if restarts:
        lines.append(f"Deep ensembles: fresh fits of {restarts[-1]} epochs (5 members each).")
    hmc = [c["hmc"] for c in [cfg, *results.get("appended", [])] if "hmc" in c]
    if hmc and any(c.startswith("hmc") for c in results["methods"]):
        h = hmc[-1]
        lines.append(
            f"HMC: {h['chains']} chain(s) x {h['samples']} NUTS draws after {h['warmup']} "
            f"warm-up iterations, trees of depth <= {h['max_tree_depth']}, started at a "
            f"{h['epochs']}-epoch MAP fit; no validation (nothing to choose)."
        )
    return "\n".join(lines) + "\n"


def _target(methods: dict[str, Any]) -> dict[str, Any]:
    best_rmse = min(methods, key=lambda c: methods[c]["rmse"]["mean"])
    best_ll = max(methods, key=lambda c: methods[c]["ll"]["mean"])
    met = [
        c
        for c, m in methods.items()
        if m["rmse"]["mean"] <= TARGET["rmse"] and m["ll"]["mean"] >= TARGET["ll"]
    ]
    return {
        **TARGET,
        "best_rmse_config": best_rmse,
        "best_rmse": methods[best_rmse]["rmse"]["mean"],
        "best_ll_config": best_ll,
        "best_ll": methods[best_ll]["ll"]["mean"],
        "met": bool(met),
        "met_by": met,
    }


def main(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark; write ``uci_boston.json`` and ``uci_boston.md`` to ``args.out``."""
    start = time.perf_counter()
    load_start = list(os.getloadavg())
    torch.set_num_threads(args.threads)
    configs = [c for c in args.configs.split(",") if c]
    unknown = sorted(set(configs) - set(CONFIGS))
    if unknown:
        raise ValueError(f"unknown configs {unknown}; choose from {list(CONFIGS)}.")
    args.stages = [int(e) for e in args.epochs.split(",") if e]
    args.restart_stages = [int(e) for e in args.restart_epochs.split(",") if e]
    rates = [float(r) for r in args.rates.split(",") if r]
    args.grids = GRIDS | {"mc-dropout": [{"p": r, "prior_scale": 1.0} for r in rates]}
    if args.quick:
        args.splits, args.stages, args.samples = min(args.splits, 2), [3, 6], 20
        args.restart_stages = [3, 6]
        args.grids = {k: v[:2] for k, v in args.grids.items()}
        args.hmc_epochs, args.hmc_warmup, args.hmc_samples = 3, 10, 10
    data = bayesdl.data.boston()
    done: dict[int, dict[str, Any]] = {}
    with ProcessPoolExecutor(args.jobs, initializer=torch.set_num_threads,
                             initargs=(args.threads,)) as pool:  # fmt: skip
        futures = {
            pool.submit(run_split, i, (data.x, data.y), configs, args): i
            for i in range(args.splits)
        }
        for future in as_completed(futures):
            i, result = futures[future], future.result()
            done[i] = result
            line = ", ".join(f"{c} {result[c]['rmse']:.2f}/{result[c]['ll']:.2f}" for c in configs)
            print(f"split {i} ({time.perf_counter() - start:.0f} s): {line}", flush=True)
    splits = [{c + args.suffix: r for c, r in done[i].items()} for i in range(args.splits)]
    methods = summarize(splits, [c + args.suffix for c in configs])
    config = {
        "splits": args.splits, "seed": args.seed, "epochs": args.stages,
        "restart_epochs": args.restart_stages, "lr": args.lr,
        "batch_size": args.batch_size, "samples": args.samples, "threads": args.threads,
        "jobs": args.jobs, "suffix": args.suffix,
        "quick": args.quick, "hidden": HIDDEN, "test_fraction": TEST_FRACTION,
        "valid_fraction": VALID_FRACTION, "grids": args.grids, "optimizer": "Adam",
        "configs": configs,
        "torch": torch.__version__, "bayesdl": bayesdl.__version__,
        "platform": platform.platform(), "load_avg_start": load_start,
        "load_avg_end": list(os.getloadavg()),
    }  # fmt: skip
    if any(CONFIGS[c][0] == "hmc" for c in configs):  # the table notes the settings HMC ran with
        config["hmc"] = {"epochs": args.hmc_epochs, "warmup": args.hmc_warmup,
                         "samples": args.hmc_samples, "chains": args.hmc_chains, **CTOR["hmc"]}  # fmt: skip
    results = {
        "methods": methods,
        "target": _target(methods),
        "published": PUBLISHED,
        "config": config,
        "runtime_s": time.perf_counter() - start,
        "splits": splits,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.append and (out / "uci_boston.json").exists():  # add configs to an earlier run
        earlier = json.loads((out / "uci_boston.json").read_text())
        for old_split, new_split in zip(earlier["splits"], splits, strict=True):
            old_split |= new_split
        earlier["methods"] |= methods
        earlier["target"] = _target(earlier["methods"])
        earlier["runtime_s"] += results["runtime_s"]
        earlier.setdefault("appended", []).append(config)
        results = earlier
    record = provenance(__file__, getattr(args, "argv", None))
    stamp(results, record, results.get("provenance"))  # an appended file keeps the earlier ones
    (out / "uci_boston.json").write_text(json.dumps(results, indent=1))
    table = markdown(results)
    (out / "uci_boston.md").write_text(header(results["provenance"]) + "\n\n" + table)
    print(table)
    return results


if __name__ == "__main__":
    main(parse_args())
