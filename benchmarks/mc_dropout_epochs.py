"""MC dropout's training length chosen on MNIST's validation NLL; its calibration and OOD
detection on the test sets at every length.

``bayesdl evaluate`` trains 5 epochs. MC dropout's model average is underconfident on MNIST
(temperature scaling picks T < 1) and grows more confident as training goes on, so the
training length is a hyperparameter of its calibration, to be chosen like the dropout rates
(``mc_dropout_rates.py``): on held-out data, never on the test set.

For each seed in ``--seeds``, builds the Gal et al. CNN with the dropout rates ``--rates``
and ``bayesdl evaluate``'s initial weights for that seed, and trains it as ``evaluate`` does
(Adam lr 1e-3, batch 128, float32, the default Normal(1) prior) in blocks up to each epoch
count of ``--epochs``; one Adam runs through all blocks, so the first block is exactly
``evaluate``'s training and later ones continue it (each block's dropout masks come from a
fork of the global RNG seeded from the shuffling generator, so a block of 5 epochs after 10
is a statistically, not bitwise, equal continuation of one 15-epoch ``fit``). After every
block: the S = 20 model average on MNIST's 10,000 validation images (NLL; and a temperature
fitted there) and every ``decision_metrics`` entry on the 10,000 test images (OOD: the
10,000 Fashion-MNIST test images), raw and temperature-scaled. One JSON line per block in
``--out/mc_dropout_epochs.jsonl``; seeds already complete there are not rerun.

The choice (``choose``), fixed before the run: the epoch count with the lowest validation
NLL averaged over the seeds that have every count. The summary (``.md``) gives the test
metrics of every count as mean +- sd over seeds, marks the choice, and states whether it
meets the issue's MNIST targets (ECE <= 0.005, OOD AUROC by entropy >= 0.98); the ``.png``
plots validation NLL, test ECE and OOD AUROC against epochs.

Run (the committed results: the rates chosen by ``mc_dropout_rates.py``, seeds 0-2; two
processes of one thread share the log, then the summary)::

    python benchmarks/mc_dropout_epochs.py --seeds 0,2 --threads 1 &
    python benchmarks/mc_dropout_epochs.py --seeds 1 --threads 1
    python benchmarks/mc_dropout_epochs.py --summary-only
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from evaluate_mnist import TARGETS, target_verdict
from mc_dropout_rates import build, load_data, mean_sd, measure, predict_all, read_log
from provenance import log_header, provenance

import bayesdl as bdl
from bayesdl.calibrate import TemperatureScaling
from bayesdl.evaluate import decision_metrics

SHOWN = ["valid_nll", "accuracy", "nll", "ece", "adaptive_ece", "ood_auroc_entropy",
         "ood_auroc_mi", "ece_T", "temperature"]  # fmt: skip
Pair = tuple[float, float]


def train_blocks(
    train: bdl.data.Data, rates: Pair, seed: int, grid: list[int]
) -> Iterator[tuple[int, bdl.MCDropout, float]]:
    """Train one CNN up to each epoch count in ``grid``; yields (epochs, method, fit seconds)."""
    method = build(*rates, seed)
    shuffle = torch.Generator().manual_seed(seed)
    adam: list[torch.optim.Optimizer] = []

    def one_adam(params: list[torch.Tensor], lr: float) -> torch.optim.Optimizer:
        if not adam:
            adam.append(torch.optim.Adam(params, lr=lr))
        return adam[0]

    done, fit_s = 0, 0.0
    for epochs in grid:
        start = time.perf_counter()
        method.fit(train, epochs=epochs - done, lr=1e-3, batch_size=128, progress=False,
                   generator=shuffle, optimizer=one_adam)  # fmt: skip
        fit_s += time.perf_counter() - start
        done = epochs
        yield epochs, method, fit_s


def block_metrics(
    method: bdl.MCDropout, data: dict[str, bdl.data.Data], seed: int
) -> dict[str, float]:
    """``measure`` of the model average, plus the test metrics after temperature scaling."""
    pred = predict_all(method, data, seed)
    row = measure(pred, data)
    scaler = TemperatureScaling().fit(pred["valid"], data["valid"].y)
    scaled = decision_metrics(scaler(pred["test"]), data["test"].y, scaler(pred["ood"]))
    return (
        row
        | {f"{k}_T": scaled[k] for k in ("ece", "nll", "ood_auroc_entropy")}
        | {"temperature": float(scaler.temperature or 0.0)}
    )


def _complete(lines: list[dict[str, Any]]) -> dict[int, dict[int, dict[str, Any]]]:
    """Lines by epochs, then seed, keeping only the seeds that have every epoch count."""
    by_seed: dict[int, dict[int, dict[str, Any]]] = {}
    for line in lines:
        by_seed.setdefault(line["seed"], {})[line["epochs"]] = line
    grid = sorted({line["epochs"] for line in lines})
    seeds = [s for s, rows in by_seed.items() if sorted(rows) == grid]
    return {e: {s: by_seed[s][e] for s in sorted(seeds)} for e in grid}


def choose(lines: list[dict[str, Any]]) -> int:
    """The epoch count with the lowest mean validation NLL; never looks at a test metric."""
    table = _complete(lines)
    if not table or not next(iter(table.values())):
        raise ValueError("no seed has run every epoch count yet.")
    return min(table, key=lambda e: statistics.mean(r["valid_nll"] for r in table[e].values()))


def summary(lines: list[dict[str, Any]]) -> str:
    """Markdown: every epoch count's metrics over seeds, the choice and the targets' verdict."""
    table, chosen = _complete(lines), choose(lines)
    seeds = list(next(iter(table.values())))
    rates = tuple(lines[0]["dropout"])
    out = [f"MC dropout, dropout rates {rates}, on MNIST (OOD: Fashion-MNIST), trained as "
           f"`bayesdl evaluate` for each number of epochs; mean +- sd over seeds "
           f"{','.join(map(str, seeds))}. `_T`: after temperature scaling fitted on the "
           f"validation images. Chosen by the mean validation NLL: **{chosen} epochs**.", "",
           "| epochs | " + " | ".join(SHOWN) + " | fit (s) |", "|---" * (len(SHOWN) + 2) + "|"]  # fmt: skip
    for epochs, rows in table.items():
        cells = [f"{m:.4f} +- {sd:.4f}" for m, sd in
                 (mean_sd([r[k] for r in rows.values()]) for k in SHOWN)]  # fmt: skip
        fit_s = statistics.mean(r["fit_s"] for r in rows.values())
        tag = " (chosen)" if epochs == chosen else ""
        out.append(f"| {epochs}{tag} | " + " | ".join(cells) + f" | {fit_s:.0f} |")
    out.append("")
    for suffix, label in (("", "raw"), ("_T", "temperature-scaled")):
        means = {k: statistics.mean(r[k + suffix] for r in table[chosen].values()) for k in TARGETS}
        out.append(f"At the chosen {chosen} epochs, {label}: {target_verdict(means)}.")
    threads = sorted({r["threads"] for r in lines})
    out += ["", f"Fit times are cumulative, with {'/'.join(map(str, threads))} torch thread(s)."]
    return "\n".join(out) + "\n"


def plot(lines: list[dict[str, Any]], path: Path) -> None:
    """Validation NLL, test ECE (raw and scaled) and OOD AUROC against epochs, mean +- sd."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table, chosen = _complete(lines), choose(lines)
    grid = list(table)
    panels = [(["valid_nll"], "validation NLL", None), (["ece", "ece_T"], "test ECE", 0.005),
              (["ood_auroc_entropy"], "OOD AUROC (entropy)", 0.98)]  # fmt: skip
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, (keys, title, target) in zip(axes, panels, strict=True):
        for key in keys:
            stats = [mean_sd([r[key] for r in table[e].values()]) for e in grid]
            ax.errorbar(grid, [m for m, _ in stats], yerr=[sd for _, sd in stats], marker="o",
                        capsize=3, label="temperature-scaled" if key.endswith("_T") else "raw")  # fmt: skip
        if target is not None:
            ax.axhline(target, color="grey", ls="--", lw=1, label=f"target {target}")
        ax.axvline(chosen, color="tab:green", ls=":", lw=1, label=f"chosen: {chosen}")
        ax.set(xlabel="epochs", title=title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rates", default="0.5,0.1", help="dropout rates conv,dense")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", default="5,10,15,20,25,30", help="epoch counts measured")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--summary-only", action="store_true", help="only summarise the log")
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rates = tuple(float(v) for v in args.rates.split(","))
    grid = sorted(int(e) for e in args.epochs.split(","))
    out = Path(args.out)
    log = out / "mc_dropout_epochs.jsonl"
    record = provenance(__file__, argv)
    if not args.summary_only:
        earlier = read_log(log)
        if earlier and (
            tuple(earlier[0]["dropout"]) != rates or not {r["epochs"] for r in earlier} <= set(grid)
        ):
            raise ValueError(f"{log} holds another --rates or --epochs; pick another --out.")
        done = set(_complete(earlier).get(grid[-1], {}))
        data: dict[str, bdl.data.Data] = {}
        out.mkdir(parents=True, exist_ok=True)
        for seed in (int(s) for s in args.seeds.split(",")):
            if seed in done:
                continue
            data = data or load_data()
            for epochs, method, fit_s in train_blocks(data["train"], rates, seed, grid):
                line = {"dropout": list(rates), "seed": seed, "epochs": epochs,
                        **block_metrics(method, data, seed), "fit_s": fit_s,
                        "threads": torch.get_num_threads(), "provenance": record}  # fmt: skip
                with open(log, "a") as f:
                    f.write(json.dumps(line) + "\n")
                print(f"seed {seed}, {epochs} epochs: valid NLL {line['valid_nll']:.4f}, "
                      f"fit {fit_s:.0f} s", flush=True)  # fmt: skip
    lines = read_log(log)
    text = summary(lines)
    log.with_suffix(".md").write_text(log_header(record, lines) + "\n\n" + text)
    plot(lines, log.with_suffix(".png"))
    print(text)


if __name__ == "__main__":
    main()
