"""MC dropout's two dropout rates chosen on MNIST's validation split; then its calibration
and OOD detection on the test sets.

For each pair of rates (after the convolutions, before the output layer: ``gal_cnn``'s
``dropout``) in the grid ``--conv`` x ``--dense`` and each seed of ``--seeds``, trains the
Gal et al. CNN with MC dropout as ``bayesdl evaluate`` does (5 epochs, Adam lr 1e-3, batch
128, float32, the default Normal(1) prior; the seed fixes the initial weights, the shuffling
and the posterior samples) and appends one JSON line to ``--log``: the NLL of the S = 20
model average on MNIST's 10,000 validation images and every ``decision_metrics`` entry on
the 10,000 test images (OOD: the 10,000 Fashion-MNIST test images). Pairs and seeds already
in the log are not rerun.

The choice of rates looks at validation NLLs only, never at a test metric, in two stages
(``choose``): every pair's seed 0 ranks the grid; the best ``--finalists`` pairs are then
compared by their mean validation NLL over the seeds all of them have (run them with
``--seeds 1,2``). The summary (printed and written next to the log as ``.md``) gives the
finalists' test metrics as mean +- sd over their seeds, beside Gal et al.'s rates (0.25, 0.5).

Run (the committed ``results/mc_dropout_rates.log`` and ``.md``: seed 0 of the grid, which
put conv 0.25 at its edge, so the grid was extended to conv 0.35 and 0.5 for the dense rates
that did best; then seeds 1 and 2 of the three finalists; the log's first three lines,
(0.1, 0.25) with seeds 0-2 on two threads, come from an earlier exploratory run)::

    python benchmarks/mc_dropout_rates.py --conv 0.05,0.1,0.25 --dense 0.1,0.25,0.5 --threads 1
    python benchmarks/mc_dropout_rates.py --conv 0.35,0.5 --dense 0.1,0.25 --threads 1
    python benchmarks/mc_dropout_rates.py --conv 0.25 --dense 0.25 --seeds 1,2 --threads 1
    python benchmarks/mc_dropout_rates.py --conv 0.05 --dense 0.1 --seeds 1,2 --threads 1
    python benchmarks/mc_dropout_rates.py --conv 0.5 --dense 0.1 --seeds 1,2 --threads 1

(about 3.5 min per run on two cores; 4 min on one thread with two runs side by side).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from provenance import log_header, provenance

import bayesdl as bdl
from bayesdl import metrics
from bayesdl.evaluate import decision_metrics
from bayesdl.models import gal_cnn
from bayesdl.predictive import CategoricalPredictive
from bayesdl.runtime import seeded_global_rng

GAL = (0.25, 0.5)
SHOWN = ["accuracy", "nll", "ece", "adaptive_ece", "brier", "ood_auroc_entropy", "ood_auroc_mi"]


def load_data() -> dict[str, bdl.data.Data]:
    """MNIST's three splits and the Fashion-MNIST test images (as ``"ood"``), loaded once."""
    data = {split: bdl.data.mnist(split) for split in ("train", "valid", "test")}
    return data | {"ood": bdl.data.fashion_mnist("test")}


def build(p_conv: float, p_dense: float, seed: int) -> bdl.MCDropout:
    """The untrained MC dropout CNN with ``bayesdl evaluate``'s initial weights for ``seed``."""
    with seeded_global_rng(seed):
        return bdl.MCDropout(gal_cnn(dropout=(p_conv, p_dense)))


def fit(
    train: bdl.data.Data, p_conv: float, p_dense: float, seed: int
) -> tuple[bdl.MCDropout, float]:
    """Train one MC dropout CNN as ``bayesdl evaluate`` does; returns it and the seconds taken."""
    method = build(p_conv, p_dense, seed)
    start = time.perf_counter()
    method.fit(train, epochs=5, lr=1e-3, batch_size=128, progress=False,
               generator=torch.Generator().manual_seed(seed))  # fmt: skip
    return method, time.perf_counter() - start


def predict_all(
    method: bdl.MCDropout, data: dict[str, bdl.data.Data], seed: int
) -> dict[str, CategoricalPredictive]:
    """S = 20 model averages on the validation, test and OOD images (OOD cut to the test size)."""
    xs = {
        "test": data["test"].x,
        "ood": data["ood"].x[: len(data["test"])],
        "valid": data["valid"].x,
    }
    return {k: method.predict(x, samples=20, generator=torch.Generator().manual_seed(seed))
            for k, x in xs.items()}  # fmt: skip


def measure(
    pred: dict[str, CategoricalPredictive], data: dict[str, bdl.data.Data]
) -> dict[str, float]:
    """``decision_metrics`` on the test images and the NLL on the validation images."""
    row = decision_metrics(pred["test"], data["test"].y, pred["ood"])
    return row | {"valid_nll": metrics.nll(pred["valid"].probs.double(), data["valid"].y)}


def run(data: dict[str, bdl.data.Data], p_conv: float, p_dense: float, seed: int) -> dict[str, Any]:
    """Train one MC dropout CNN and measure it (one line of the log)."""
    method, fit_s = fit(data["train"], p_conv, p_dense, seed)
    row = measure(predict_all(method, data, seed), data)
    return {"dropout": [p_conv, p_dense], "seed": seed, **row, "fit_s": fit_s,
            "threads": torch.get_num_threads()}  # fmt: skip


Pair = tuple[float, float]


def read_log(log: Path) -> list[dict[str, Any]]:
    """The JSON lines of ``log`` (none if it does not exist)."""
    return [json.loads(s) for s in log.read_text().splitlines()] if log.exists() else []


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample sd of ``values`` (sd 0 for a single value)."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _runs(lines: list[dict[str, Any]]) -> dict[Pair, dict[int, dict[str, Any]]]:
    """Log lines by pair, then by seed (lines from before seeds were logged are seed 0)."""
    runs: dict[Pair, dict[int, dict[str, Any]]] = {}
    for line in lines:
        runs.setdefault(tuple(line["dropout"]), {})[line.get("seed", 0)] = line
    return runs


def _ranked(runs: dict[Pair, dict[int, dict[str, Any]]]) -> list[Pair]:
    """Stage 1: the pairs with a seed-0 run, by that run's validation NLL."""
    return sorted((pair for pair in runs if 0 in runs[pair]), key=lambda p: runs[p][0]["valid_nll"])


def choose(lines: list[dict[str, Any]], finalists: int = 3) -> tuple[Pair, list[int]]:
    """The pair with the lowest validation NLL, in two stages; never looks at a test metric.

    Stage 1 ranks every pair by the validation NLL of seed 0. Stage 2 takes the best
    ``finalists`` of them and compares their mean validation NLL over the seeds all of them
    were run with (only seed 0 until more seeds are run for the finalists), because one
    seed's NLL varies between seeds about as much as it does between pairs.

    Returns:
        The chosen pair and the seeds its choice averaged over.
    """
    runs = _runs(lines)
    final = _ranked(runs)[:finalists]
    if not final:
        raise ValueError("no pair has a seed-0 run yet; run the grid with --seeds 0 first.")
    seeds = sorted(set.intersection(*(set(runs[pair]) for pair in final)))

    def mean_nll(pair: Pair) -> float:
        return statistics.mean(runs[pair][s]["valid_nll"] for s in seeds)

    return min(final, key=mean_nll), seeds


def summary(lines: list[dict[str, Any]], finalists: int = 3) -> str:
    """Markdown: the grid by validation NLL (seed 0), the finalists' mean validation NLL, the
    choice (``choose``), and the test metrics over seeds of the finalists and Gal et al.'s pair."""
    runs = _runs(lines)
    ranked = _ranked(runs)
    chosen, seeds = choose(lines, finalists)
    out = ["Stage 1: seed 0 of every pair, sorted by the validation NLL (no test metric is used):",
           "", "| dropout (conv, dense) | valid NLL | " + " | ".join(SHOWN) + " |",
           "|---" * (len(SHOWN) + 2) + "|"]  # fmt: skip
    for pair in ranked:
        r = runs[pair][0]
        out.append(f"| {pair} | {r['valid_nll']:.4f} | "
                   + " | ".join(f"{r[k]:.4f}" for k in SHOWN) + " |")  # fmt: skip
    out += ["", f"Stage 2: the best {finalists} by seed 0, mean validation NLL over seeds "
            f"{','.join(map(str, seeds))}. Chosen on validation: {chosen}.", "",
            "Test metrics, mean +- sd over each pair's seeds:", "",
            "| dropout (conv, dense) | valid NLL (stage 2) | seeds | " + " | ".join(SHOWN) + " |",
            "|---" * (len(SHOWN) + 3) + "|"]  # fmt: skip
    for pair in dict.fromkeys([chosen, *ranked[:finalists], GAL]):
        by_seed = runs.get(pair, {})
        if not by_seed:
            continue
        cells = [f"{m:.4f} +- {sd:.4f}" for m, sd in
                 (mean_sd([r[k] for r in by_seed.values()]) for k in SHOWN)]  # fmt: skip
        stage2 = (f"{statistics.mean(by_seed[s]['valid_nll'] for s in seeds):.4f}"
                  if pair in ranked[:finalists] else "-")  # fmt: skip
        tags = (" chosen" if pair == chosen else "") + (" (Gal et al.)" if pair == GAL else "")
        out.append(f"| {pair}{tags} | {stage2} | {','.join(str(s) for s in sorted(by_seed))} | "
                   + " | ".join(cells) + " |")  # fmt: skip
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--conv", default="0.05,0.1,0.25", help="rates after the convolutions")
    p.add_argument("--dense", default="0.1,0.25,0.5", help="rates before the output layer")
    p.add_argument("--seeds", default="0")
    p.add_argument("--finalists", type=int, default=3, help="pairs compared over seeds")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--log", default="benchmarks/results/mc_dropout_rates.log")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    log = Path(args.log)
    record = provenance(__file__, argv)
    done = {(tuple(r["dropout"]), r.get("seed", 0)) for r in read_log(log)}
    data: dict[str, bdl.data.Data] = {}
    for p_conv in (float(v) for v in args.conv.split(",")):
        for p_dense in (float(v) for v in args.dense.split(",")):
            for seed in (int(s) for s in args.seeds.split(",")):
                if ((p_conv, p_dense), seed) in done:
                    continue
                data = data or load_data()
                line = run(data, p_conv, p_dense, seed) | {"provenance": record}
                with open(log, "a") as f:
                    f.write(json.dumps(line) + "\n")
                print(json.dumps(line), flush=True)
    lines = read_log(log)
    text = summary(lines, args.finalists)
    log.with_suffix(".md").write_text(log_header(record, lines) + "\n\n" + text)
    print(text)


if __name__ == "__main__":
    main()
