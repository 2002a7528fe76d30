"""What subnormal weights cost a CPU training step, and what ``fit``'s flush costs.

A weight that gets no gradient from the data (its input is always zero: a dead unit, a
feature the dropout-trained network stopped using) feels only the prior, and Adam shrinks
it geometrically until it sticks near 1e-38, in float32's subnormal range; CPUs handle
subnormal operands in microcode. ``BaseMethod.fit`` therefore zeroes subnormal parameters
after every optimiser step on the CPU (``methods.base.flush_subnormal_``).

For each fraction in ``--fractions`` of the Gal et al. CNN's dense-128 weights (the layer
where they accumulated on MNIST) set to ``finfo.tiny / 4``, times one training step
(forward, backward, Adam; batch 128 of MNIST-shaped random images, MC dropout's loss) with
those weights left subnormal and with them flushed to zero, best of ``--repeats``; and the
time of ``flush_subnormal_`` over every parameter. Prints the ratios to the flushed step.

Run: ``python benchmarks/subnormal_speed.py --threads 1 --out benchmarks/results``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from provenance import header, provenance, stamp

import bayesdl as bdl
from bayesdl.models import gal_cnn
from bayesdl.runtime import flush_subnormal_


def _step_seconds(method: bdl.MCDropout, x: torch.Tensor, y: torch.Tensor, repeats: int) -> float:
    params = [p for p in method.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.0)  # lr 0: the weights, subnormal or not, stay as set
    best = float("inf")
    method.train()
    for i in range(repeats + 1):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        method.loss(x, y, 50_000).backward()
        opt.step()
        if i:  # the first step is a warm-up
            best = min(best, time.perf_counter() - start)
    method.eval()
    return best


def measure(fractions: list[float], repeats: int, batch: int = 128) -> list[dict[str, float]]:
    """One row per fraction: step seconds with subnormal and with flushed weights."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(batch, 1, 28, 28, generator=g), torch.randint(0, 10, (batch,), generator=g)
    rows = []
    for fraction in fractions:
        torch.manual_seed(0)
        method = bdl.MCDropout(gal_cnn(dropout=(0.5, 0.1)))
        dense = method.model[7].weight
        with torch.no_grad():
            stuck = torch.rand(dense.shape, generator=g) < fraction
            dense[stuck] = torch.finfo(dense.dtype).tiny / 4
        subnormal = _step_seconds(method, x, y, repeats)
        params = list(method.parameters())
        start = time.perf_counter()
        flush_subnormal_(params)
        flush_s = time.perf_counter() - start
        assert not (dense[stuck] != 0).any()
        flushed = _step_seconds(method, x, y, repeats)
        rows.append({"fraction": fraction, "step_subnormal_s": subnormal, "step_flushed_s": flushed,
                     "ratio": subnormal / flushed, "flush_s": flush_s,
                     "flush_share": flush_s / flushed})  # fmt: skip
        print(f"{fraction:.0%} subnormal: step {subnormal * 1e3:.1f} ms, flushed {flushed * 1e3:.1f} "
              f"ms ({subnormal / flushed:.2f}x); flush {flush_s * 1e3:.2f} ms", flush=True)  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--fractions", default="0,0.01,0.1,0.3")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--out", default=None, help="write subnormal_speed.json/.md here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = measure([float(f) for f in args.fractions.split(",")], args.repeats)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        results = {"threads": torch.get_num_threads(), "repeats": args.repeats, "rows": rows}
        stamp(results, provenance(__file__, argv))
        (out / "subnormal_speed.json").write_text(json.dumps(results, indent=1))
        lines = [header(results["provenance"]), "", f"Gal CNN training step (batch 128, MC dropout loss), {torch.get_num_threads()} "
                 f"thread(s), best of {args.repeats}: a fraction of the dense-128 weights "
                 "subnormal, against the same step after `flush_subnormal_`.", "",
                 "| subnormal fraction | step, subnormal (ms) | step, flushed (ms) | ratio | "
                 "flush (ms) | flush / step |", "|---|---|---|---|---|---|"]  # fmt: skip
        lines += [f"| {r['fraction']:.0%} | {r['step_subnormal_s'] * 1e3:.1f} | "
                  f"{r['step_flushed_s'] * 1e3:.1f} | {r['ratio']:.2f} | {r['flush_s'] * 1e3:.2f} | "
                  f"{r['flush_share']:.1%} |" for r in rows]  # fmt: skip
        (out / "subnormal_speed.md").write_text("\n".join(lines) + "\n")
    return rows


if __name__ == "__main__":
    main()
