"""Which classes an active-learning run labelled: per acquisition function, the labels per
class among the first N acquired (mean and range over its runs), beside the test accuracy
at N. Reads a results JSON of ``active_mnist.py`` or ``bayesdl active-learn`` (its runs keep
``labelled_indices`` in labelling order) and the pool's labels from its dataset.

Run (the committed table)::

    python benchmarks/active_mnist_classes.py \
        benchmarks/results/active_mnist_gal_code/active_mnist.json --first 200,1000
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from provenance import header, provenance

import bayesdl.data as bdata

POOLS = {"mnist": bdata.mnist, "fashion-mnist": bdata.fashion_mnist, "digits": bdata.digits}


def class_counts(runs: list[dict[str, Any]], labels: torch.Tensor, first: int) -> torch.Tensor:
    """Labels per class among each run's first ``first`` labelled items, shape (runs, C)."""
    if any(len(r["labelled_indices"]) < first for r in runs):
        raise ValueError(f"a run labelled fewer than {first} items")
    picked = torch.tensor([r["labelled_indices"][:first] for r in runs], dtype=torch.long)
    classes = int(labels.max()) + 1
    return torch.stack([torch.bincount(labels[p], minlength=classes) for p in picked])


def markdown(results: dict[str, Any], labels: torch.Tensor, firsts: list[int]) -> str:
    """The table: one row per acquisition function and N; cells 'mean (min-max)' over runs."""
    classes = int(labels.max()) + 1
    lines = [
        "Labels per class among the first N labelled (the initial balanced set included): mean "
        "(min-max) (one run: its count) over an acquisition's runs that labelled at least N; test accuracy at N is "
        "the mean over those runs that measured it.",
        "",
        "| acquisition | N | runs | "
        + " | ".join(str(c) for c in range(classes))
        + " | accuracy at N |",
        "|---|---|---|" + "---|" * classes + "---|",
    ]
    by_acq: dict[str, list[dict[str, Any]]] = {}
    for run in results["runs"]:
        by_acq.setdefault(run["acquisition"], []).append(run)
    for acq, runs in by_acq.items():
        for first in firsts:
            mine = [r for r in runs if len(r["labelled_indices"]) >= first]
            if not mine:
                continue
            counts = class_counts(mine, labels, first).float()
            cells = [
                f"{m:.1f} ({lo:.0f}-{hi:.0f})" if len(mine) > 1 else f"{m:.0f}"
                for m, lo, hi in zip(
                    counts.mean(0), counts.min(0).values, counts.max(0).values, strict=True
                )
            ]
            accs = [r["accuracy"][r["labels"].index(first)] for r in mine if first in r["labels"]]
            acc = f"{sum(accs) / len(accs) * 100:.2f}%" if accs else "-"
            lines.append(f"| {acq} | {first} | {len(mine)} | " + " | ".join(cells) + f" | {acc} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", type=Path, help="a results JSON with labelled_indices per run")
    p.add_argument("--first", default="200,1000", help="label counts N to break down")
    p.add_argument(
        "--out", type=Path, default=None, help="markdown file (default: beside the JSON)"
    )
    args = p.parse_args(argv)
    results = json.loads(args.results.read_text())
    labels = POOLS[results["config"]["dataset"]]("train").y
    text = markdown(results, labels, [int(n) for n in args.first.split(",")])
    out = args.out or args.results.with_name("classes.md")
    out.write_text(header(provenance(__file__, argv)) + "\n\n" + text)
    print(text, end="")
    return text


if __name__ == "__main__":
    main()
