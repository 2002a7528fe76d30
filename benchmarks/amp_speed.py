"""Mixed precision and channels-last on the Gal et al. CNN: training and test-time cost.

What ``--precision bfloat16`` and the channels-last model of ``bayesdl active-learn`` buy.
For each variant (float32 or ``amp=torch.bfloat16``; default or channels-last weights) it
times, as a ratio to the float32 default-layout variant measured in the same run:

* ``fit``: ``bdl.MCDropout(gal_cnn()).fit((x, y), epochs=1, batch_size=64)`` on
  ``--train-size`` random 28x28 images (training cost does not depend on the values);
* ``predict``: ``predict(x, samples=S)`` on ``--test-size`` images, under
  ``torch.autocast(dtype=bfloat16)`` for the bfloat16 variants (as the active-learning loop
  evaluates the test set).

The variants are timed in turn, ``--repeats`` rounds, and each ratio uses medians, so a
machine whose load drifts still gives fair ratios. Outputs ``amp_speed.json`` and
``amp_speed.md`` in ``--out``.

Usage (the committed results)::

    python benchmarks/amp_speed.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import torch
from provenance import header, provenance, stamp

import bayesdl as bdl
from bayesdl.models import gal_cnn

VARIANTS = {  # name -> (amp dtype, channels-last)
    "float32": (None, False),
    "float32 channels-last": (None, True),
    "bfloat16": (torch.bfloat16, False),
    "bfloat16 channels-last": (torch.bfloat16, True),
}


def _method(channels_last: bool) -> bdl.MCDropout:
    torch.manual_seed(0)
    net = gal_cnn(10, 1, 28)
    return bdl.MCDropout(net.to(memory_format=torch.channels_last) if channels_last else net)


def _time(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--train-size", type=int, default=1280, help="images per fit (20 steps)")
    p.add_argument("--test-size", type=int, default=1000)
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.train_size, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (args.train_size,), generator=g)
    xt = torch.rand(args.test_size, 1, 28, 28, generator=g)
    methods = {name: _method(cl) for name, (_, cl) in VARIANTS.items()}

    def fit(name: str) -> None:
        amp = VARIANTS[name][0]
        methods[name].fit((x, y), epochs=1, batch_size=64, progress=False, amp=amp)

    def predict(name: str) -> None:
        amp = VARIANTS[name][0]
        ctx = nullcontext() if amp is None else torch.autocast("cpu", dtype=amp)
        with ctx:
            methods[name].predict(xt, samples=args.samples, generator=torch.Generator())

    times: dict[str, dict[str, list[float]]] = {"fit": {}, "predict": {}}
    for case, fn in (("fit", fit), ("predict", predict)):
        for name in VARIANTS:
            fn(name)  # warm-up
        for _ in range(args.repeats):
            for name in VARIANTS:
                times[case].setdefault(name, []).append(_time(partial(fn, name)))
    results: dict[str, Any] = {"config": vars(args), "cases": {}}
    for case, per in times.items():
        base = statistics.median(per["float32"])
        results["cases"][case] = {
            name: {"median_s": statistics.median(t), "ratio": statistics.median(t) / base}
            for name, t in per.items()
        }
    results["config"].update(
        torch=torch.__version__, platform=platform.platform(), load_avg=list(os.getloadavg())
    )
    lines = [
        f"Gal CNN, {args.threads} thread(s): `fit` one epoch of {args.train_size} images "
        f"(batch 64) and `predict` {args.test_size} images at S = {args.samples}; median of "
        f"{args.repeats} rounds; ratio to float32 (default layout) in the same run.",
        "",
        "| variant | fit (s) | fit ratio | predict (s) | predict ratio |",
        "|---|---|---|---|---|",
    ]
    for name in VARIANTS:
        f, q = results["cases"]["fit"][name], results["cases"]["predict"][name]
        lines.append(
            f"| {name} | {f['median_s']:.2f} | {f['ratio']:.2f} | {q['median_s']:.2f} "
            f"| {q['ratio']:.2f} |"
        )
    stamp(results, provenance(__file__, argv))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "amp_speed.json").write_text(json.dumps(results, indent=1))
    (out / "amp_speed.md").write_text(header(results["provenance"]) + "\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))
    return results


if __name__ == "__main__":
    main()
