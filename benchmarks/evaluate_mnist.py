"""MNIST -> Fashion-MNIST evaluation of every method, as committed under ``results/``.

Runs ``bayesdl evaluate`` (``bayesdl.evaluate.evaluate``) on the Gal et al. CNN and writes
``evaluate_mnist.json`` (``{"methods": {name: {metric: value}}, ...}``, fractions),
``evaluate_mnist.md`` (the table, with the issue's targets for the default Bayesian
method: ECE <= 0.5%, OOD AUROC >= 0.98) and ``evaluate_mnist_report.html`` to ``--out``.

Example (the committed results)::

    python benchmarks/evaluate_mnist.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import torch

from bayesdl.evaluate import EvaluateConfig, evaluate, format_summary

DEFAULT_METHOD = "mc-dropout"
TARGETS = {"ece": 0.005, "ood_auroc_entropy": 0.98}


def markdown(results: dict[str, Any]) -> str:
    """The results as a markdown table, one row per method, and the targets' verdict."""
    cols = [
        ("accuracy", "accuracy"), ("nll", "NLL"), ("ece", "ECE"), ("adaptive_ece", "adaptive ECE"),
        ("brier", "Brier"), ("aurc", "AURC"), ("referral_acc_at_10", "acc, 10% referred"),
        ("referral_acc_at_20", "acc, 20% referred"), ("ood_auroc_entropy", "OOD AUROC (entropy)"),
        ("ood_auroc_mi", "OOD AUROC (MI)"), ("ood_fpr95_entropy", "FPR@95 (entropy)"),
        ("predict_ratio", "predict / det. pass"), ("fit_s", "fit (s)"),
    ]  # fmt: skip
    lines = ["| method | " + " | ".join(h for _, h in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, row in results["methods"].items():
        cells = [f"{row[c]:.1f}" if c == "fit_s" else f"{row[c]:.4f}" for c, _ in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    row = results["methods"].get(DEFAULT_METHOD)
    if row is not None:
        verdict = ", ".join(
            f"{k} = {row[k]:.4f} ({'met' if (row[k] <= v if k == 'ece' else row[k] >= v) else 'NOT met'}"
            f", target {'<=' if k == 'ece' else '>='} {v})"
            for k, v in TARGETS.items()
        )
        lines += ["", f"Targets for {DEFAULT_METHOD}: {verdict}."]
    cfg = results["config"]
    lines += [
        "",
        f"{results['n_train']} training images, {results['n_test']} test images, "
        f"{results['n_ood']} {cfg['ood']} images; {cfg['epochs']} epochs, S = {cfg['samples']}, "
        f"device {cfg['device']}, {torch.get_num_threads()} threads; "
        f"total {results['runtime_s'] / 60:.1f} min.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--methods", default="map,vi,mc-dropout")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--device", default="cpu")
    p.add_argument("--work", default="evaluate-mnist-run", help="evaluate's own output directory")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument(
        "--append",
        action="store_true",
        help="add these methods to an earlier evaluate_mnist.json (own HTML report)",
    )
    args = p.parse_args(argv)
    cfg = EvaluateConfig(
        dataset="mnist", methods=args.methods.split(","), ood="fashion-mnist",
        epochs=args.epochs, samples=args.samples, device=args.device,
    )  # fmt: skip
    results = evaluate(cfg, args.work, overwrite=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = out / "evaluate_mnist_report.html"
    if args.append and (out / "evaluate_mnist.json").exists():  # keep the earlier methods
        earlier = json.loads((out / "evaluate_mnist.json").read_text())
        report = out / f"evaluate_mnist_report_{'_'.join(cfg.methods)}.html"
        earlier["methods"] |= results["methods"]
        earlier.setdefault("invocations", [earlier["config"]]).append(results["config"])
        earlier["runtime_s"] += results["runtime_s"]
        results = earlier
    (out / "evaluate_mnist.json").write_text(json.dumps(results, indent=1))
    (out / "evaluate_mnist.md").write_text(markdown(results))
    shutil.copy(Path(args.work) / "report.html", report)
    print(format_summary(results))
    return results


if __name__ == "__main__":
    main()
