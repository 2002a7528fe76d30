"""Every acquisition function on three pools: which beats random, and which should be the default?

Pools (one ``ActiveLearner`` run per (pool, acquisition, seed), MC dropout throughout):

* ``digits``: sklearn digits (1,347 pool / 450 test images), MLP 64-100-100-10 with dropout
  0.25 after each hidden layer, 20 class-balanced initial labels, +10 per step to 200, a fixed
  500 Adam steps (lr 1e-3, batch 64) per retraining from scratch, the whole pool scored,
  S = 20 (issue 24's protocol);
* ``mnist`` / ``fashion-mnist``: Gal et al.'s CNN (``models.gal_cnn``, Glorot init, decay 3.5
  on the first dense layer), 50 epochs with a 100-step floor per retraining, bfloat16
  training, 20 balanced initial labels, +10 per step, a random 2,000 of the pool scored per
  step, S = 20, and the first ``--test-size`` test images; the budget and seeds are flags.

Acquisitions (``--acquisitions``), written ``name`` or ``name@draws``: ``random``,
``entropy``, ``bald@shared`` (every pool point sees the same S dropout masks, the old
default), ``bald`` (each point its own masks: ``draws="independent"``, the loop's default
for per-point scores), ``power-bald``, ``softmax-bald``, ``softrank-bald`` (stochastic,
beta = 1), ``batchbald`` and ``epig`` (100 targets drawn from the pool; both read the joint
predictive, so they use shared draws).

``NAME+published`` (MNIST only) retrains with Kirsch et al.'s published BatchBALD schedule
instead (``ActiveLearner(schedule="batchbald")``: fixed-length epochs of 5,056 samples, early
stopping on 1,024 labelled points of MNIST's validation split, 100 MC samples for scoring),
to ``--published-budget`` labels, so that ``batchbald+published`` is comparable with their
curve (95% in the low 200s).

Per run: test accuracy after every step. Per acquisition: the area under the curve (the
mean test accuracy over the steps, i.e. over 20..budget labels), labels to reach each
``--targets`` accuracy, accuracy at the budget, and, paired by seed against ``random``, the
mean AUC difference and the seeds where the acquisition is not below random.

One invocation runs one pool and writes ``OUT/acquisition_pools_<pool>.json`` (with
``--tag T``: ``acquisition_pools_<pool>_T.json``, for invocations run side by side);
``--summary-only`` reads every such file in OUT (a pool's files merged; AUC differences
against random are taken over the labels both runs reached) and writes ``acquisition_pools.md`` and
``acquisition_pools.png`` (the curves, mean over seeds). The committed results were made
with::

    OMP_NUM_THREADS=1 python benchmarks/acquisition_pools.py --pool digits --seeds 6 --acquisitions random,bald@shared,bald,power-bald,epig,batchbald --no-progress --out benchmarks/results
    OMP_NUM_THREADS=1 python benchmarks/acquisition_pools.py --pool mnist --seeds 1 --budget 1000 --acquisitions bald,random --no-progress --out /tmp/al24r
    OMP_NUM_THREADS=1 python benchmarks/acquisition_pools.py --pool mnist --seeds 3 --budget 1000 --acquisitions power-bald,bald,random --no-progress --out /tmp/al24m
    OMP_NUM_THREADS=1 python benchmarks/acquisition_pools.py --pool mnist --seeds 1 --acquisitions batchbald+published --published-budget 300 --tag published --no-progress --out /tmp/al24m
    OMP_NUM_THREADS=1 python benchmarks/acquisition_pools.py --pool fashion-mnist --seeds 3 --budget 500 --acquisitions random,bald,power-bald --no-progress --out /tmp/al24f
    OMP_NUM_THREADS=1 python benchmarks/acquisition_pools.py --pool digits --seeds 6 --acquisitions entropy --tag entropy --no-progress --out /tmp/al24b
    OMP_NUM_THREADS=1 python benchmarks/acquisition_pools.py --pool fashion-mnist --seeds 3 --budget 500 --acquisitions entropy,bald@shared,epig,batchbald --tag more --no-progress --out /tmp/al24b
    OMP_NUM_THREADS=1 python benchmarks/acquisition_pools.py --pool mnist --seeds 1 --budget 500 --acquisitions entropy,bald@shared,epig,batchbald --tag short --no-progress --out /tmp/al24b
    python benchmarks/acquisition_pools.py --summary-only --out benchmarks/results

the first digits run on a 2-core machine shared with six other jobs (load average ~15; the
entropy runs, on quiet cores, took 17 s against its ~140 s), the image pools one run per
core on the 2 cores (MNIST's secondary acquisitions to 500 labels at one seed: the
1,000-label grid costs 24 min per run), the JSON files copied here (the MNIST BALD run was
made by an earlier invocation with ``--acquisitions bald`` at commit c34af76 and reused; the
Fashion-MNIST seed-0 runs by ``--seeds 1`` and reused by ``--seeds 3``; the MNIST file was
copied while its ``--seeds 3`` invocation had finished seed 0 only; each JSON records its
last command).
The markdown says how many seeds each row has. Add ``entropy``, ``softmax-bald``,
``softrank-bald`` with ``--acquisitions``; a rerun with the same ``--out`` skips the
(acquisition, seed) pairs done.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from provenance import header, provenance
from torch import nn

from bayesdl import data as bdata
from bayesdl.active import ActiveLearner
from bayesdl.active.experiment import labels_to_reach
from bayesdl.active.schedule import BATCHBALD_SCHEDULE
from bayesdl.models import gal_cnn

PUBLISHED = "+published"
ALL = "random,bald@shared,bald,power-bald,epig,batchbald,entropy,softmax-bald,softrank-bald"
POOLS = ("digits", "mnist", "fashion-mnist")
TARGETS = {"digits": "0.85,0.9", "mnist": "0.9,0.95", "fashion-mnist": "0.65,0.7"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pool", choices=POOLS, default="digits")
    p.add_argument("--acquisitions", default=ALL)
    p.add_argument("--seeds", type=int, default=6, help="runs per acquisition (seeds 0..n-1)")
    p.add_argument("--initial", type=int, default=20)
    p.add_argument("--step", type=int, default=10)
    p.add_argument("--budget", type=int, default=200)
    p.add_argument("--published-budget", type=int, default=300,
                   help="labels of the NAME+published runs")  # fmt: skip
    p.add_argument("--mc-samples", type=int, default=20)
    p.add_argument("--train-steps", type=int, default=500, help="digits: steps per retraining")
    p.add_argument("--test-size", type=int, default=2000, help="image pools: test images used")
    p.add_argument("--targets", default=None, help="accuracies for labels-to-target")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--tag", default="", help="write acquisition_pools_<pool>_<tag>.json")
    p.add_argument("--summary-only", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def digits_mlp() -> nn.Module:
    """Issue 24's MLP: 64-100-100-10, dropout 0.25 after each hidden layer."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, 100), nn.ReLU(), nn.Dropout(0.25),
        nn.Linear(100, 100), nn.ReLU(), nn.Dropout(0.25), nn.Linear(100, 10),
    )  # fmt: skip


def budget(args: argparse.Namespace, acq: str) -> int:
    """Labels at which a run of ``acq`` stops."""
    return args.published_budget if acq.endswith(PUBLISHED) else args.budget


def learner(args: argparse.Namespace, acq: str, seed: int) -> ActiveLearner:
    """The ``ActiveLearner`` of one run; ``acq`` is ``name``, ``name@draws`` or
    ``name+published`` (BatchBALD's published retraining schedule, MNIST only)."""
    published = acq.endswith(PUBLISHED)
    name, _, draws = acq.removesuffix(PUBLISHED).partition("@")
    if published and args.pool != "mnist":
        raise ValueError(f"{acq}: the published schedule needs MNIST's validation split; "
                         f"--pool {args.pool} has none.")  # fmt: skip
    common = dict(
        acquisition=name, draws=draws or "auto", initial=args.initial, step=args.step,
        budget=budget(args, acq), mc_samples=args.mc_samples, seed=seed,
        progress=not args.no_progress,
    )  # fmt: skip
    if name == "epig":
        common["acquisition_kwargs"] = {"num_targets": 100}
    if args.pool == "digits":
        train, test = bdata.digits("train"), bdata.digits("test")
        return ActiveLearner(digits_mlp, train, test, pool_subset=None,
                             train_steps=args.train_steps, **common)  # fmt: skip
    load = bdata.mnist if args.pool == "mnist" else bdata.fashion_mnist
    train, test = load("train"), load("test")
    test = test.subset(torch.arange(min(args.test_size, len(test))))

    def factory() -> nn.Module:
        return gal_cnn(10, 1, 28, init="glorot").to(memory_format=torch.channels_last)

    if published:
        val, n_val = bdata.mnist("valid"), BATCHBALD_SCHEDULE.val_size
        common["mc_samples"] = BATCHBALD_SCHEDULE.mc_samples
        retrain = dict(schedule="batchbald", val_data=(val.x[:n_val], val.y[:n_val]))
    else:
        retrain = dict(train_steps=100, train_epochs=50)
    return ActiveLearner(
        factory, train, test, weight_decay={"7": 3.5}, pool_subset=2000, amp=torch.bfloat16,
        **retrain, **common,
    )  # fmt: skip


def auc(accuracy: list[float]) -> float:
    """Mean test accuracy over the steps (equal label increments: the normalised area)."""
    return float(np.mean(accuracy))


def run_pool(args: argparse.Namespace, argv: list[str] | None) -> Path:
    out = Path(args.out) / f"acquisition_pools_{args.pool}{'_' + args.tag if args.tag else ''}.json"
    done: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    runs = done.get("runs", [])
    have = {(r["acquisition"], r["seed"]) for r in runs}
    settings = {k: v for k, v in vars(args).items() if k not in ("summary_only", "no_progress")}
    record = {"provenance": provenance(__file__, argv), "settings": settings, "runs": runs}
    for seed in range(args.seeds):  # seed-major: an interrupted run has every acquisition
        for acq in args.acquisitions.split(","):
            if (acq, seed) in have:
                continue
            start = time.perf_counter()
            hist = learner(args, acq, seed).run()
            runs.append({
                "acquisition": acq, "seed": seed, "budget": budget(args, acq),
                "labels": hist.labels,
                "accuracy": hist.accuracy, "wall_time_s": time.perf_counter() - start,
            })  # fmt: skip
            print(f"{args.pool} {acq} seed {seed}: acc {hist.accuracy[-1]:.4f} "
                  f"auc {auc(hist.accuracy):.4f} {runs[-1]['wall_time_s']:.0f}s", flush=True)  # fmt: skip
            out.write_text(json.dumps(record, indent=1))
    out.write_text(json.dumps(record, indent=1))
    return out


def paired_auc_difference(run: dict, baseline: dict) -> float:
    """AUC of ``run`` minus ``baseline``'s over the label counts both reached."""
    k = min(len(run["labels"]), len(baseline["labels"]))
    if run["labels"][:k] != baseline["labels"][:k]:
        raise ValueError(f"{run['acquisition']} and {baseline['acquisition']} were scored at "
                         "different label counts; they cannot be paired.")  # fmt: skip
    return auc(run["accuracy"][:k]) - auc(baseline["accuracy"][:k])


def load_pool(root: Path, pool: str) -> dict[str, Any] | None:
    """A pool's record: ``acquisition_pools_<pool>.json`` (else the first tagged file) with
    the runs of every ``acquisition_pools_<pool>_<tag>.json`` added (their commands under
    ``"merged"``); ``None`` without any."""
    main = root / f"acquisition_pools_{pool}.json"
    paths = [main] * main.exists() + sorted(root.glob(f"acquisition_pools_{pool}_*.json"))
    if not paths:
        return None
    record = json.loads(paths[0].read_text())
    record["merged"] = []
    for path in paths[1:]:
        extra = json.loads(path.read_text())
        record["runs"] += extra["runs"]
        record["merged"].append(extra["provenance"]["command"])
    pairs = [(r["acquisition"], r["seed"]) for r in record["runs"]]
    if len(set(pairs)) < len(pairs):
        twice = sorted({p for p in pairs if pairs.count(p) > 1})
        raise ValueError(f"{pool}: runs {twice} appear in more than one file of {root}.")
    return record


def summarize_pool(pool: str, record: dict[str, Any], targets: list[float]) -> list[dict]:
    """One row per acquisition: AUC, labels to each target, final accuracy, paired vs random."""
    runs = record["runs"]
    by_acq: dict[str, dict[int, dict]] = {}
    for r in runs:
        by_acq.setdefault(r["acquisition"], {})[r["seed"]] = r
    rand = by_acq.get("random", {})
    rows = []
    for acq, seeds in by_acq.items():
        aucs = [auc(r["accuracy"]) for r in seeds.values()]
        row = {
            "pool": pool, "acquisition": acq, "seeds": len(seeds),
            "auc": float(np.mean(aucs)), "auc_sd": float(np.std(aucs)),
            "final_labels": max(r["labels"][-1] for r in seeds.values()),
            "final_accuracy": float(np.mean([r["accuracy"][-1] for r in seeds.values()])),
            "wall_time_s": float(np.mean([r["wall_time_s"] for r in seeds.values()])),
        }  # fmt: skip
        for t in targets:
            hits = [labels_to_reach(r["labels"], r["accuracy"], t) for r in seeds.values()]
            found = [h for h in hits if h is not None]
            row[f"labels_to_{t:g}"] = float(np.mean(found)) if found else None
            row[f"reached_{t:g}"] = len(found)
        paired = [paired_auc_difference(r, rand[s]) for s, r in seeds.items() if s in rand]
        if paired and acq != "random":
            row["auc_minus_random"] = float(np.mean(paired))
            row["auc_minus_random_se"] = float(np.std(paired, ddof=1) / np.sqrt(len(paired))) \
                if len(paired) > 1 else None  # fmt: skip
            row["seeds_not_below_random"] = f"{sum(d >= 0 for d in paired)}/{len(paired)}"
        rows.append(row)
    return rows


def summarize(args: argparse.Namespace, argv: list[str] | None) -> None:
    root = Path(args.out)
    lines = [header(provenance(__file__, argv)), ""]
    curves = {}
    for pool in POOLS:
        record = load_pool(root, pool)
        if record is None:
            continue
        s = record["settings"]
        targets = [float(t) for t in (s.get("targets") or TARGETS[pool]).split(",")]
        rows = summarize_pool(pool, record, targets)
        lines += [
            f"## {pool}", "",
            f"Settings: {s['seeds']} seed(s) asked (the seeds column: how many ran), "
            f"{s['initial']} initial labels, +{s['step']} per "
            f"step to {s['budget']}, S = {s['mc_samples']}"
            + (f", {s['train_steps']} steps per retraining, whole pool scored" if pool == "digits"
               else f", Gal CNN 50 epochs (100-step floor, bf16), 2,000 pool points scored, "
                    f"first {s['test_size']} test images")
            + f". Command: `{record['provenance']['command']}`"
            + "".join(f"; runs added from `{c}`" for c in record["merged"]) + ".",
            *([f"Rows ending in `{PUBLISHED}` retrain with BatchBALD's published schedule."]
              if any(r["acquisition"].endswith(PUBLISHED) for r in rows) else []),
            *([f"Rows with a label count in brackets ran to another budget than {s['budget']} "
               "(acc. at budget: at their own, in brackets); their AUC is over their own "
               "labels and not comparable with the other rows', their difference with random "
               "is over the labels both reached."]
              if any(r["final_labels"] != s["budget"] for r in rows) else []),
            "",
            "| acquisition | seeds | AUC (mean acc.) | AUC - random (paired, +- se) | not below "
            "random | acc. at budget | " + " | ".join(f"labels to {t:.0%}" for t in targets)
            + " | wall s / run |",
            "|---|---|---|---|---|---|" + "---|" * len(targets) + "---|",
        ]  # fmt: skip
        for r in sorted(rows, key=lambda r: -r["auc"]):
            diff = r.get("auc_minus_random")
            se = r.get("auc_minus_random_se")
            diff_s = "" if diff is None else f"{diff * 100:+.2f}" + (
                f" +- {se * 100:.2f}" if se is not None else "")  # fmt: skip
            reach = []
            for t in targets:
                v, n = r[f"labels_to_{t:g}"], r[f"reached_{t:g}"]
                reach.append("not reached" if v is None else f"{v:.0f} ({n}/{r['seeds']})")
            lines.append(
                f"| {r['acquisition']} | {r['seeds']} | {r['auc'] * 100:.2f} +- "
                f"{r['auc_sd'] * 100:.2f} | {diff_s} | {r.get('seeds_not_below_random', '')} | "
                f"{r['final_accuracy'] * 100:.2f}"
                + (f" ({r['final_labels']})" if r["final_labels"] != s["budget"] else "")
                + " | " + " | ".join(reach)
                + f" | {r['wall_time_s']:.0f} |"
            )  # fmt: skip
        lines.append("")
        curves[pool] = record["runs"]
    if not curves:
        raise SystemExit(f"no acquisition_pools_<pool>.json in {root}; run a pool first.")
    (root / "acquisition_pools.md").write_text("\n".join(lines))
    plot(curves, root / "acquisition_pools.png")


def plot(curves: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, max(1, len(curves)), figsize=(6 * max(1, len(curves)), 4.5))
    axes = np.atleast_1d(axes)
    for ax, (pool, runs) in zip(axes, curves.items(), strict=True):
        for acq in dict.fromkeys(r["acquisition"] for r in runs):
            mine = [r for r in runs if r["acquisition"] == acq]
            acc = np.array([r["accuracy"] for r in mine]) * 100
            labels = mine[0]["labels"]
            mean = acc.mean(0)
            (line,) = ax.plot(labels, mean, label=f"{acq} ({len(mine)})",
                              ls="--" if acq == "random" else "-")  # fmt: skip
            if len(mine) > 1:
                sd = acc.std(0)
                ax.fill_between(labels, mean - sd, mean + sd, color=line.get_color(), alpha=0.1)
        ax.set_title(pool)
        ax.set_xlabel("labelled points")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if not args.summary_only:
        run_pool(args, argv)
    summarize(args, argv)


if __name__ == "__main__":
    main()
