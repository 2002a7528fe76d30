"""Peak memory and time of Laplace on a 10^8-parameter transformer against the subset size.

A ``BertForSequenceClassification`` built from ``BertConfig`` (BERT-base sizes by default:
12 layers, width 768, 110M parameters; random weights, nothing downloaded) with LoRA
adapters (``peft``, rank 8 on query and value). Each variant fits a Laplace posterior
(``fit_posterior``) on ``--examples`` random token sequences given as dict batches
(``input_ids``, ``attention_mask``) in minibatches of ``--batch-size`` in a fresh child
process (after a warm-up fit of the same variant on a tiny network, so that the libraries'
one-time buffers are not counted), which reports:

* ``estimate``: ``memory_estimate(batch_size, example=...)``'s ``fit`` bytes, computed
  before anything is allocated;
* ``measured``: the peak resident memory of the child during ``fit_posterior`` minus its
  resident memory just before (``VmHWM``, reset just before the fit; the child runs with glibc's
  ``MALLOC_MMAP_THRESHOLD_=4096`` so that every block but the smallest is its own mapping, and freed blocks go back to the system and
  the resident memory follows the live tensors rather than the allocator's cache);
* ``seconds``: wall time of ``fit_posterior``.

    python benchmarks/memory_subset.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from provenance import header, provenance, stamp

VARIANTS = {  # name -> (subset, hessian, chunk_size)
    "last_layer kfac": ("last_layer", "kfac", None),
    "lora kfac": ("lora", "kfac", None),
    "lora diag": ("lora", "diag", 1),
    "layer 11 kfac": (["base_model.model.bert.encoder.layer.11"], "kfac", None),
    "all kfac": ("all", "kfac", None),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--hidden", type=int, default=768)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--vocab", type=int, default=30522)
    p.add_argument("--examples", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default="benchmarks/results")
    return p.parse_args(argv)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _reset_peak() -> None:
    """Reset the process's peak resident memory (VmHWM) to its current resident memory."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peak_rss() -> int:
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("VmHWM")).split()[1]) * 1024


def build(args: argparse.Namespace) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model
    from transformers import BertConfig, BertForSequenceClassification

    from bayesdl import hf

    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=args.vocab, hidden_size=args.hidden, num_hidden_layers=args.layers,
        num_attention_heads=max(1, args.hidden // 64), intermediate_size=4 * args.hidden,
        num_labels=2, attn_implementation="eager", hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    net = get_peft_model(BertForSequenceClassification(cfg),
                         LoraConfig(r=8, target_modules=["query", "value"]))  # fmt: skip
    return hf.adapt(net.eval(), output="logits")


def _data(args: argparse.Namespace) -> tuple[dict, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    n, t = args.examples, args.seq_len
    x = {"input_ids": torch.randint(0, args.vocab, (n, t), generator=g),
         "attention_mask": torch.ones(n, t, dtype=torch.long)}  # fmt: skip
    return x, torch.randint(0, 2, (n,), generator=g)


def _laplace(args: argparse.Namespace) -> tuple[Any, dict, torch.Tensor]:
    import bayesdl as bdl

    subset, hessian, chunk = VARIANTS[args.child]
    net = build(args)
    la = bdl.Laplace(net, subset=subset, hessian=hessian, prior_precision=1.0, chunk_size=chunk)
    return la, *_data(args)


def child(args: argparse.Namespace) -> dict[str, Any]:
    from bayesdl.inputs import DictDataset

    torch.set_num_threads(args.threads)
    # warm-up: the same variant on a tiny network, so that one-time buffers of the libraries
    # (first calls of the code paths) are not counted in the measured fit
    tiny = argparse.Namespace(**{**vars(args), "hidden": 16, "vocab": 50, "examples": 4})
    la, x, y = _laplace(tiny)
    la.fit_posterior(torch.utils.data.DataLoader(DictDataset(x, y), batch_size=2), progress=False)
    la, x, y = _laplace(args)
    net = la.model
    est = la.memory_estimate(batch_size=args.batch_size, example=x)
    for b in la.buffers():  # the state is allocated by the constructor: make it resident
        b.fill_(0)
    before = _rss()
    _reset_peak()  # the peak of the model's construction and the warm-up is not the fit's
    start = time.perf_counter()
    loader = torch.utils.data.DataLoader(DictDataset(x, y), batch_size=args.batch_size)
    la.fit_posterior(loader, progress=False)
    seconds = time.perf_counter() - start
    return {
        "variant": args.child, "bayesian_params": la.num_params,
        "network_params": sum(p.numel() for p in net.parameters()),
        "estimate_fit_bytes": est.fit, "state_bytes": est.state, "model_bytes": est.model,
        "measured_bytes": _peak_rss() - before, "seconds": seconds,
    }  # fmt: skip


def main(args: argparse.Namespace, argv: list[str] | None = None) -> dict[str, Any]:
    if args.child:
        print(json.dumps(child(args)))
        return {}
    record = provenance(__file__, argv)
    rows: list[dict[str, Any]] = []
    results: dict[str, Any] = {}
    for name in args.variants.split(","):
        cmd = [sys.executable, __file__, "--child", name, "--hidden", str(args.hidden),
               "--layers", str(args.layers), "--vocab", str(args.vocab),
               "--examples", str(args.examples), "--seq-len", str(args.seq_len),
               "--batch-size", str(args.batch_size),
               "--threads", str(args.threads)]  # fmt: skip
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "4096"}
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            rows.append({"variant": name, "error": done.stderr.strip().splitlines()[-1][:300]})
        else:
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        rows[-1]["child_seconds"] = time.perf_counter() - start
        print(json.dumps(rows[-1]))
        results = write(args, rows, record)  # after every row: a cut run keeps its rows
    return results


def write(args: argparse.Namespace, rows: list[dict[str, Any]], record: dict) -> dict[str, Any]:
    results: dict[str, Any] = {"config": {k: v for k, v in vars(args).items() if k != "child"},
                               "rows": rows}  # fmt: skip
    stamp(results, record)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "memory_subset.json").write_text(json.dumps(results, indent=1))
    mib = 2**20
    lines = [
        header(record),
        "",
        f"Laplace `fit_posterior` on a config-built BERT ({args.layers} layers, width "
        f"{args.hidden}, vocabulary {args.vocab}) with LoRA rank 8 on query/value, "
        f"{args.examples} random sequences of {args.seq_len} tokens as dict batches of "
        f"{args.batch_size}, {args.threads} thread(s), one child process per row (after a "
        "warm-up fit of the same variant on a tiny network). Estimate: "
        "`memory_estimate(batch_size, example=x).fit` before allocation; measured: peak RSS "
        "during the fit minus RSS before it.",
        "",
        "| subset, hessian | Bayesian params | network params | estimate (MiB) | measured (MiB) "
        "| estimate / measured | posterior state (MiB) | fit time (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['variant']} | failed: {r['error']} | | | | | | |")
            continue
        lines.append(
            f"| {r['variant']} | {r['bayesian_params']:,} | {r['network_params']:,} | "
            f"{r['estimate_fit_bytes'] / mib:.1f} | {r['measured_bytes'] / mib:.1f} | "
            f"{r['estimate_fit_bytes'] / max(r['measured_bytes'], 1):.2f} | "
            f"{r['state_bytes'] / mib:.1f} | {r['seconds']:.1f} |"
        )
    (out / "memory_subset.md").write_text("\n".join(lines) + "\n")
    return results


if __name__ == "__main__":
    main(parse_args())
