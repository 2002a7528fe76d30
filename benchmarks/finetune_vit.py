"""Bayesian LoRA fine-tuning of a small vision transformer (issue 30, item 4).

A ViT (``transformers.ViTForImageClassification`` built from a config, random weights, no
download) is pretrained here on MNIST digits 0-4, then fine-tuned with LoRA (``peft``:
rank-``--rank`` adapters on the attention's query and value projections, a new 5-way head) on digits
5-9 from ``--labels`` labelled images each. Methods, each from the same pretrained network and
a fresh adapter:

* ``map``: MAP LoRA (Adam on the adapters and the head);
* ``laplace-lora``: Laplace over every LoRA adapter (KFAC, marginal-likelihood prior
  precision, linearised predictive) at the MAP adapters: Laplace-LoRA (Yang et al. 2024);
* ``laplace-last``: Laplace over the head only (KFAC), the same MAP network;
* ``mc-dropout``: the ViT's own dropout layers and LoRA's dropout kept on at prediction,
  trained with them;
* ``ensemble``: ``--members`` adapters (and heads) from independent initialisations sharing
  one frozen backbone (``DeepEnsemble(subset=trainable)``).

Scores on the MNIST test digits 5-9: accuracy, NLL, ECE (15 bins); OOD AUROC of the
predictive entropy against ``--ood-size`` Fashion-MNIST test images. Fit and predict times
are wall-clock on the machine named in the JSON.

    python benchmarks/finetune_vit.py --labels 100,1000,10000 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
from provenance import header, provenance, stamp

import bayesdl as bdl
from bayesdl import hf

METHODS = ("map", "laplace-lora", "laplace-last", "mc-dropout", "ensemble")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--labels", default="100,1000,10000", help="labelled 5-9 images per run")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pretrain-size", type=int, default=25000, help="0-4 images (all: ~25k)")
    p.add_argument("--pretrain-epochs", type=int, default=3)
    p.add_argument("--finetune-steps", type=int, default=300, help="Adam steps per fit")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--rank", type=int, default=4)
    p.add_argument("--members", type=int, default=3)
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--test-size", type=int, default=0, help="5-9 test images (0: all)")
    p.add_argument("--ood-size", type=int, default=2000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def vit(args: argparse.Namespace) -> torch.nn.Module:
    from transformers import ViTConfig, ViTForImageClassification

    cfg = ViTConfig(
        image_size=28, patch_size=7, num_channels=1, hidden_size=args.hidden,
        num_hidden_layers=args.layers, num_attention_heads=4, intermediate_size=2 * args.hidden,
        num_labels=5, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.0,
        attn_implementation="eager",
    )  # fmt: skip
    return hf.adapt(ViTForImageClassification(cfg), output="logits")


def lora(pretrained: torch.nn.Module, args: argparse.Namespace, seed: int) -> torch.nn.Module:
    """A fresh LoRA adapter and a fresh 5-way head on a copy of the pretrained network."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    base = hf.unadapt(copy.deepcopy(pretrained))
    base.classifier.reset_parameters()  # digits 5-9 are new classes
    cfg = LoraConfig(r=args.rank, lora_alpha=2 * args.rank, lora_dropout=0.1,
                     target_modules=["q_proj", "v_proj"], modules_to_save=["classifier"])  # fmt: skip
    return hf.adapt(get_peft_model(base, cfg), output="logits")


def digits(data: bdl.data.Data, low: int, n: int, g: torch.Generator) -> tuple:
    keep = (data.y >= low) & (data.y < low + 5)
    x, y = data.x[keep], data.y[keep] - low
    idx = torch.randperm(x.shape[0], generator=g)[: n or x.shape[0]]
    return x[idx], y[idx]


def scores(pred: Any, y: torch.Tensor, ood: Any) -> dict[str, float]:
    probs = pred.probs
    return {
        "accuracy": bdl.metrics.accuracy(probs, y),
        "nll": bdl.metrics.nll(probs, y),
        "ece": bdl.metrics.ece(probs, y),
        "ood_auroc": bdl.metrics.ood_auroc(pred.entropy(), ood.entropy()),
    }


def run_method(name: str, pretrained, train, test, ood_x, args, progress) -> dict[str, Any]:
    net = lora(pretrained, args, args.seed)
    n = train[0].shape[0]
    bs = min(args.batch_size, n)
    epochs = max(1, math.ceil(args.finetune_steps / math.ceil(n / bs)))
    fit_kw = dict(epochs=epochs, batch_size=bs, lr=3e-3, progress=progress,
                  generator=torch.Generator().manual_seed(args.seed))  # fmt: skip
    start = time.perf_counter()
    if name == "ensemble":
        trainable = lambda n_, p: p.requires_grad  # noqa: E731
        method = bdl.DeepEnsemble(net, members=args.members, subset=trainable)
        method.fit(train, **fit_kw)
    elif name == "mc-dropout":
        method = bdl.MCDropout(net)
        method.fit(train, **fit_kw)
    else:
        bdl.MAP(net).fit(train, **fit_kw)
        if name == "map":
            method = bdl.MAP(net)
        else:
            subset = "lora" if name == "laplace-lora" else "last_layer"
            method = bdl.Laplace(net, subset=subset, hessian="kfac")
            method.fit(train, batch_size=bs, progress=progress)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    g = torch.Generator().manual_seed(1)
    pred = method.predict(test[0], samples=args.samples, generator=g)
    ood = method.predict(ood_x, samples=args.samples, generator=torch.Generator().manual_seed(1))
    predict_s = time.perf_counter() - start
    out = {"method": name, "labels": n, "epochs": epochs, "fit_s": fit_s, "predict_s": predict_s}
    out.update(scores(pred, test[1], ood))
    if name.startswith("laplace"):
        out["prior_precision"] = float(method.prior_precision)
        out["bayesian_params"] = method.num_params
    return out


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, key in zip(axes, ("accuracy", "ece", "ood_auroc"), strict=True):
        for name in dict.fromkeys(r["method"] for r in rows):
            pts = sorted((r["labels"], r[key]) for r in rows if r["method"] == name)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
        ax.set_xscale("log")
        ax.set_xlabel("labelled images of digits 5-9")
        ax.set_title(key)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(args: argparse.Namespace, argv: list[str] | None = None) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    record = provenance(__file__, argv)  # taken at the start: the code this run imported
    progress = not args.no_progress
    g = torch.Generator().manual_seed(args.seed)
    train_all, test_all = bdl.data.mnist("train"), bdl.data.mnist("test")
    pre = digits(train_all, 0, args.pretrain_size, g)
    test = digits(test_all, 5, args.test_size, g)
    ood_x = bdl.data.fashion_mnist("test").x[: args.ood_size]
    torch.manual_seed(args.seed)
    pretrained = vit(args)
    start = time.perf_counter()
    bdl.MAP(pretrained).fit(pre, epochs=args.pretrain_epochs, batch_size=128, lr=1e-3,
                            progress=progress, generator=torch.Generator().manual_seed(args.seed))  # fmt: skip
    pre_test = digits(test_all, 0, 0, g)
    pre_acc = bdl.metrics.accuracy(bdl.MAP(pretrained).predict(pre_test[0], 1).probs, pre_test[1])
    results: dict[str, Any] = {
        "config": {k: v for k, v in vars(args).items()},
        "pretrain": {"seconds": time.perf_counter() - start, "test_accuracy_0_4": pre_acc,
                     "images": pre[0].shape[0],
                     "params": sum(p.numel() for p in pretrained.parameters())},
        "rows": [],
        "machine": {"threads": args.threads, "cpus": os.cpu_count(),
                    "load_avg": list(os.getloadavg())},
    }  # fmt: skip
    print(f"pretrained on 0-4: test accuracy {pre_acc:.4f} in {results['pretrain']['seconds']:.0f} s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for n in [int(v) for v in args.labels.split(",")]:
        train = digits(train_all, 5, n, torch.Generator().manual_seed(args.seed + n))
        for name in args.methods.split(","):
            row = run_method(name, pretrained, train, test, ood_x, args, progress)
            results["rows"].append(row)
            print(json.dumps(row))
            write(results, out, record)
    return results


def write(results: dict[str, Any], out: Path, record: dict[str, Any]) -> None:
    stamp(results, record)
    (out / "finetune_vit.json").write_text(json.dumps(results, indent=1))
    rows = results["rows"]
    cfg, pre = results["config"], results["pretrain"]
    lines = [
        header(results["provenance"]),
        "",
        f"ViT ({cfg['layers']} layers, width {cfg['hidden']}, patches 7x7, {pre['params']:,} "
        f"parameters) pretrained on {pre['images']:,} MNIST 0-4 images ({cfg['pretrain_epochs']} "
        f"epochs, test accuracy {pre['test_accuracy_0_4']:.4f}); LoRA rank {cfg['rank']} on "
        f"query/value + a new head fine-tuned on digits 5-9 ({cfg['finetune_steps']} Adam steps, "
        f"batch {cfg['batch_size']}, seed {cfg['seed']}, one seed); {cfg['samples']} posterior "
        f"draws; OOD: {cfg['ood_size']} Fashion-MNIST test images, predictive entropy; "
        f"{cfg['threads']} thread(s).",
        "",
        "| labels | method | accuracy | NLL | ECE | OOD AUROC | fit (s) | predict (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['labels']} | {r['method']} | {r['accuracy']:.4f} | {r['nll']:.4f} | "
            f"{r['ece']:.4f} | {r['ood_auroc']:.3f} | {r['fit_s']:.1f} | {r['predict_s']:.1f} |"
        )
    (out / "finetune_vit.md").write_text("\n".join(lines) + "\n")
    plot(rows, out / "finetune_vit.png")


if __name__ == "__main__":
    main(parse_args())
