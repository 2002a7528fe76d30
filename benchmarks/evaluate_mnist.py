"""MNIST -> Fashion-MNIST evaluation of every method, as committed under ``results/``.

Runs ``bayesdl evaluate`` (``bayesdl.evaluate.evaluate``) on the Gal et al. CNN and writes
``evaluate_mnist.json`` (``{"methods": {name: {metric: value}}, ...}``, fractions),
``evaluate_mnist.md`` (the table, with the issue's targets for the default Bayesian
method: ECE <= 0.5%, OOD AUROC >= 0.98) and ``evaluate_mnist_report.html`` to ``--out``.
An ``--append`` invocation adds its rows to the JSON and the table and leaves its HTML
report in ``--work`` (``report.html``): one report is kept in ``--out``, not one per run.

Example (the committed results: the first command, then the others appending)::

    python benchmarks/evaluate_mnist.py --out benchmarks/results
    python benchmarks/evaluate_mnist.py --append --methods laplace,concrete-dropout,l0,swag
    python benchmarks/evaluate_mnist.py --append --methods ensemble,multiswag,sgld,sghmc
    python benchmarks/evaluate_mnist.py --append --methods mc-dropout --epochs 30 --calibrate --suffix @30ep
    for s in 0 1 2; do OMP_NUM_THREADS=1 python benchmarks/evaluate_mnist.py --append --methods mc-dropout \
        --dropout 0.25,0.25 --seed $s --calibrate --suffix @dropout0.25-0.25-seed$s; done
    for s in 0 1 2; do python benchmarks/evaluate_mnist.py --append --methods mc-dropout \
        --dropout 0.5,0.1 --seed $s --calibrate --suffix @dropout0.5-0.1-seed$s; done
    for s in 0 1 2; do OMP_NUM_THREADS=1 python benchmarks/evaluate_mnist.py --append --methods \
        mc-dropout --dropout 0.5,0.1 --epochs 15 --seed $s --calibrate \
        --suffix @dropout0.5-0.1-15ep-seed$s --work /tmp/ev15_work_$s; done

``--calibrate`` adds rows ``<method>+T`` after temperature scaling fitted on MNIST's 10,000
validation images; ``--suffix`` marks the rows of an invocation with other settings.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from provenance import header, provenance, stamp

from bayesdl.evaluate import EvaluateConfig, evaluate, format_summary

DEFAULT_METHOD = "mc-dropout"
TARGETS = {"ece": 0.005, "ood_auroc_entropy": 0.98}


def target_verdict(row: dict[str, float]) -> str:
    """``"ece = 0.0041 (met, target <= 0.005), ..."`` for the metrics in ``TARGETS``."""
    return ", ".join(
        f"{k} = {row[k]:.4f} ({'met' if (row[k] <= v if k == 'ece' else row[k] >= v) else 'NOT met'}"
        f", target {'<=' if k == 'ece' else '>='} {v})"
        for k, v in TARGETS.items()
    )


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
    for name, row in results["methods"].items():
        if name.split("@")[0].split("+")[0] != DEFAULT_METHOD:
            continue
        lines += ["", f"Targets for {name}: {target_verdict(row)}."]
    if results.get("temperatures"):
        temps = ", ".join(f"{n} {t:.3f}" for n, t in results["temperatures"].items())
        lines += [
            "",
            f"Temperatures (rows `+T`, fitted on the 10,000 MNIST validation images): {temps}.",
        ]
    cfg = results["config"]
    later = results.get("invocations", [])[1:]
    if later:
        lines += ["", "Appended invocations: " + "; ".join(
            f"{', '.join(c['methods'])} ({c['epochs']} epochs, {c.get('threads', '?')} threads"
            f"{', with temperature-scaled rows' if c.get('calibrate') else ''}"
            f"{_non_default(c)})"
            for c in later
        ) + "."]  # fmt: skip
    lines += [
        "",
        f"{results['n_train']} training images, {results['n_test']} test images, "
        f"{results['n_ood']} {cfg['ood']} images; {cfg['epochs']} epochs, S = {cfg['samples']}, "
        f"device {cfg['device']}, {cfg.get('threads', '?')} threads; "
        f"total {results['runtime_s'] / 60:.1f} min.",
    ]
    return "\n".join(lines) + "\n"


def _non_default(cfg: dict[str, Any]) -> str:
    """ ", dropout (0.1, 0.25), seed 1" for an invocation's settings off the defaults (files
    written before these settings existed used the defaults)."""
    default = EvaluateConfig()
    rates, seed = tuple(cfg.get("dropout", default.dropout)), cfg.get("seed", default.seed)
    return (f", dropout {rates}" if rates != default.dropout else "") + (
        f", seed {seed}" if seed != default.seed else ""
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--methods", default="map,vi,mc-dropout")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--dropout",
        default="0.25,0.5",
        help="the CNN's dropout rates P_CONV,P_DENSE (default: Gal et al.'s)",
    )
    p.add_argument("--work", default="evaluate-mnist-run", help="evaluate's own output directory")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument(
        "--calibrate",
        action="store_true",
        help="add temperature-scaled rows <method>+T (T fitted on MNIST's validation split)",
    )
    p.add_argument(
        "--suffix",
        default="",
        help="appended to this invocation's row names, e.g. @30ep for a longer training",
    )
    p.add_argument(
        "--append",
        action="store_true",
        help="add these methods to an earlier evaluate_mnist.json (HTML report left in --work)",
    )
    args = p.parse_args(argv)
    cfg = EvaluateConfig(
        dataset="mnist", methods=args.methods.split(","), ood="fashion-mnist",
        epochs=args.epochs, samples=args.samples, device=args.device, calibrate=args.calibrate,
        seed=args.seed, dropout=tuple(float(r) for r in args.dropout.split(",")),
    )  # fmt: skip
    results = evaluate(cfg, args.work, overwrite=True)
    results["config"]["threads"] = torch.get_num_threads()
    if args.suffix:  # "mc-dropout+T" -> "mc-dropout@30ep+T"

        def rename(name: str) -> str:
            base, plus, tail = name.partition("+")
            return base + args.suffix + plus + tail

        results["methods"] = {rename(n): row for n, row in results["methods"].items()}
        if "temperatures" in results:
            results["temperatures"] = {rename(n): t for n, t in results["temperatures"].items()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: Path | None = out / "evaluate_mnist_report.html"
    if args.append and (out / "evaluate_mnist.json").exists():  # keep the earlier methods
        earlier = json.loads((out / "evaluate_mnist.json").read_text())
        report = None
        earlier["methods"] |= results["methods"]
        if "temperatures" in results:
            earlier["temperatures"] = earlier.get("temperatures", {}) | results["temperatures"]
        earlier.setdefault("invocations", [earlier["config"]]).append(results["config"])
        earlier["runtime_s"] += results["runtime_s"]
        results = earlier
    stamp(results, provenance(__file__, argv), results.get("provenance"))
    (out / "evaluate_mnist.json").write_text(json.dumps(results, indent=1))
    (out / "evaluate_mnist.md").write_text(header(results["provenance"]) + "\n\n" + markdown(results))
    if report is not None:  # an appended invocation's report stays in --work
        shutil.copy(Path(args.work) / "report.html", report)
    print(format_summary(results))
    return results


if __name__ == "__main__":
    main()
