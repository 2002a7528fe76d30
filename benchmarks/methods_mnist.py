"""Every posterior approximation in bayesdl on MNIST, one fixed small architecture.

All methods use an MLP 784-200-10 with dropout 0.5 before the output layer (MC dropout and
concrete dropout need it; the others train with it as a regulariser and predict without
it), the full 50,000-image training set and the 10,000-image test set. HMC (full-batch
NUTS) cannot afford that: it runs on an MLP 784-8-10 and the first 1,000 training images,
beside a MAP baseline on the same setting. Reported per method: accuracy, NLL, ECE
(15 bins), Brier score, OOD AUROC against Fashion-MNIST (entropy and mutual information),
fit time, and predict time (S = 20) as a ratio to one deterministic pass of the same
network measured in the same run; L0 also reports its sparsity, HMC its diagnostics.

The per-method settings (``SETTINGS``) are the only method-specific part: constructor and
``fit`` arguments. Everything else goes through the common interface.

Example (the committed results)::

    python benchmarks/methods_mnist.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from provenance import header, provenance, stamp
from torch import nn

import bayesdl as bdl
from bayesdl.evaluate import decision_metrics, deterministic_pass_seconds
from bayesdl.models import mlp
from bayesdl.runtime import default_chunk_rows

HMC_TRAIN, HMC_HIDDEN = 1000, 8
SETTINGS: dict[str, dict[str, Any]] = {
    "map": {"fit": {"epochs": 5}},
    "vi": {"ctor": {}, "fit": {"epochs": 5}},
    "mc-dropout": {"fit": {"epochs": 5}},
    "concrete-dropout": {"fit": {"epochs": 5}},
    # the penalty is l0_weight * E[L0] / N: 3.0 / 50,000 per weight is what 0.1 is on the
    # 1,347 digits images of tests/methods/test_l0.py; gates need a larger step to move
    "l0": {"ctor": {"l0_weight": 3.0}, "fit": {"epochs": 5, "lr": 1e-2}},
    "l0 (l0_weight=0.3)": {"name": "l0", "ctor": {"l0_weight": 0.3},
                           "fit": {"epochs": 5, "lr": 1e-2}},
    "laplace": {"ctor": {"subset": "last_layer", "hessian": "kfac"}, "fit": {"epochs": 5}},
    "ensemble": {"ctor": {"members": 5}, "fit": {"epochs": 5}},
    "swag": {"ctor": {"rank": 20, "collect_unit": "step", "collect_every": 40},
             "fit": {"epochs": 5}},
    "multiswag": {"ctor": {"members": 3, "rank": 20, "collect_unit": "step",
                           "collect_every": 40}, "fit": {"epochs": 5}},
    # SGD-sized steps: SGLD's lr is the step on the per-example loss; SGHMC's effective
    # step is lr / momentum_decay (0.1)
    "sgld": {"ctor": {"lr": 0.1}, "fit": {"epochs": 10}},
    "sghmc": {"ctor": {"lr": 0.01}, "fit": {"epochs": 10}},
    "hmc": {"small": True, "ctor": {"num_samples": 200, "num_chains": 2, "max_tree_depth": 6},
            "fit": {"warmup": 200, "epochs": 50}},  # epochs: the MAP fit that starts the chains
    "map (hmc setting)": {"small": True, "name": "map", "fit": {"epochs": 200}},
}  # fmt: skip


def _model(small: bool, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    hidden = (HMC_HIDDEN,) if small else (200,)
    return mlp(784, 10, hidden=hidden, dropout=0.0 if small else 0.5)


def _extras(method: Any) -> dict[str, Any]:
    """Method-specific reports: L0 sparsity, HMC diagnostics (summarised)."""
    out: dict[str, Any] = {}
    if hasattr(method, "sparsity"):
        out["sparsity"] = method.sparsity()
    if hasattr(method, "diagnostics"):
        diag = method.diagnostics()
        out["diagnostics"] = {
            "max_r_hat": diag.max_r_hat, "min_ess": diag.min_ess,
            "divergences": diag.divergences,
        }  # fmt: skip
    return out


def run_one(
    key: str, setting: dict[str, Any], data: dict[str, Any], samples: int, seed: int
) -> dict[str, Any]:
    """Fit one method with its settings and measure it."""
    small = setting.get("small", False)
    train = data["train_small"] if small else data["train"]
    method = bdl.get_method(setting.get("name", key))(
        _model(small, seed), **setting.get("ctor", {})
    )
    fit_kw = {"progress": True, "generator": torch.Generator().manual_seed(seed)}
    fit_kw |= setting.get("fit", {})
    start = time.perf_counter()
    method.fit(train, **fit_kw)
    fit_s = time.perf_counter() - start
    x_test, y_test = data["test"]
    method.predict(x_test[:8], samples=samples)  # warm-up
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    pred_in = method.predict(x_test, samples=samples, generator=g)
    predict_s = time.perf_counter() - start
    pred_out = method.predict(data["ood"], samples=samples, generator=g)
    det_s = deterministic_pass_seconds(method.model, x_test, default_chunk_rows(method.device))
    row = decision_metrics(pred_in, y_test, pred_out)
    keep = ["accuracy", "nll", "ece", "brier", "ood_auroc_entropy", "ood_auroc_mi"]
    result = {k: row[k] for k in keep}
    result |= {
        "fit_s": fit_s, "predict_s": predict_s, "predict_ratio": predict_s / det_s,
        "samples": int(pred_in.samples.shape[0]), "n_train": len(train[0]),
        "architecture": f"784-{HMC_HIDDEN if small else 200}-10",
    }  # fmt: skip
    return result | _extras(method)


def markdown(results: dict[str, Any]) -> str:
    """The results table."""
    head = ("| method | architecture | train images | accuracy | NLL | ECE | Brier | "
            "OOD AUROC (H) | OOD AUROC (MI) | S | fit (s) | predict / det. pass | notes |")  # fmt: skip
    lines = [
        f"MNIST, 10,000 test images, OOD = 10,000 Fashion-MNIST test images, S = "
        f"{results['samples']} (or the method's own number of draws), "
        f"{results.get('threads', 1)} torch thread(s); per-method settings in "
        f"`benchmarks/methods_mnist.py` (`SETTINGS`). Fit times are wall-clock on a shared "
        f"2-core machine; predict ratios are measured back to back with the deterministic "
        f"pass of the same network.",
        "",
        head,
        "|---" * 13 + "|",
    ]
    for key, r in results["methods"].items():
        notes = ""
        if "sparsity" in r:
            s = r["sparsity"]
            notes = ", ".join(f"{k} {v:.3f}" for k, v in s.items() if isinstance(v, float))
        if "diagnostics" in r:
            d = r["diagnostics"]
            notes = (f"max R-hat {d['max_r_hat']:.3f}, min ESS {d['min_ess']:.0f}, "
                     f"{d['divergences']} divergences")  # fmt: skip
        lines.append(
            f"| {key} | {r['architecture']} | {r['n_train']} | {r['accuracy']:.4f} | "
            f"{r['nll']:.4f} | {r['ece']:.4f} | {r['brier']:.4f} | "
            f"{r['ood_auroc_entropy']:.4f} | {r['ood_auroc_mi']:.4f} | {r['samples']} | "
            f"{r['fit_s']:.1f} | {r['predict_ratio']:.2f}x | {notes} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--methods", default=",".join(SETTINGS), help="keys of SETTINGS")
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-size", type=int, default=None, help="smoke runs: fewer images")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--append", action="store_true", help="keep the other methods' results")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    train, test = bdl.data.mnist("train"), bdl.data.mnist("test")
    if args.train_size:
        train = train.subset(torch.arange(args.train_size))
    x_test = test.x.flatten(1)
    data = {
        "train": (train.x.flatten(1), train.y),
        "train_small": (train.x[:HMC_TRAIN].flatten(1), train.y[:HMC_TRAIN]),
        "test": (x_test, test.y),
        "ood": bdl.data.fashion_mnist("test").x.flatten(1),
    }
    out = Path(args.out)
    results: dict[str, Any] = {
        "samples": args.samples, "seed": args.seed, "threads": args.threads, "methods": {}
    }  # fmt: skip
    if args.append and (out / "methods_mnist.json").exists():  # add to an earlier run
        results = json.loads((out / "methods_mnist.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    stamp(results, provenance(__file__, argv), results.get("provenance"))
    start = time.perf_counter()
    for key in args.methods.split(","):
        print(f"== {key}", flush=True)
        results["methods"][key] = run_one(key, SETTINGS[key], data, args.samples, args.seed)
        r = results["methods"][key]
        print(f"   accuracy {r['accuracy']:.4f}  ECE {r['ece']:.4f}  fit {r['fit_s']:.0f} s  "
              f"predict {r['predict_ratio']:.1f}x", flush=True)  # fmt: skip
        r["runtime_this_invocation_s"] = time.perf_counter() - start
        (out / "methods_mnist.json").write_text(json.dumps(results, indent=1, default=str))
        (out / "methods_mnist.md").write_text(header(results["provenance"]) + "\n\n" + markdown(results))
    print(markdown(results))
    return results


if __name__ == "__main__":
    main()
