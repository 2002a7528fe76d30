"""Fixed costs of the engine on a small model: ``fit`` against a hand-written Adam loop, and
``predict`` at small batches against bare forward passes.

Part 1, ``fit``.

The issue's setting: sklearn's digits (1,797 images, 64 features), the MLP 64-100-100-10
with dropout 0.25, minibatches of 64, 500 Adam steps at lr 1e-3 on the MAP objective
(cross-entropy + the ``Normal(1)`` prior's ``-log p / N``). The baseline is the loop a
user writes by hand: a ``randperm`` per epoch, tensor slices, ``cross_entropy`` plus the
same weight decay written as ``sum(p^2) / (2 N)``, ``backward``, ``step``. ``fit`` adds
what the engine does on top (per-step hooks, the schedule, subnormal flushing on a CPU,
the data and prior terms kept apart for the report, the divergence check).

Part 2, ``predict`` at batch 1, 32 and 450 (what a person waiting on one image feels), on
the same MLP: ``MAP.predict(x)`` against one bare eval-mode forward pass; ``MCDropout``
(S = 20) and a 20-draw ``SGLD`` bank against 20 bare forward passes.

Each variant is timed ``--repeats`` times alternately with its baseline; ratios are of the
medians, and the spread (min-max) is recorded with them.

Usage::

    python benchmarks/engine_speed.py --repeats 7 --threads 2 --out benchmarks/results/engine_speed.json
    python benchmarks/engine_speed.py --threads 1 --clock cpu --out ...   # on a loaded machine
    python benchmarks/engine_speed.py --steps 20 --repeats 1 --calls 3   # smoke
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from provenance import provenance, stamp
from torch import nn

import bayesdl as bdl

RESULTS = Path(__file__).parent / "results"
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]
"""The timer: wall time, or (``--clock cpu``) this process's CPU time, which a loaded machine
does not inflate by the time spent waiting for a core (use it with ``--threads 1``)."""


def _mlp() -> nn.Module:
    return nn.Sequential(
        nn.Linear(64, 100), nn.ReLU(), nn.Dropout(0.25), nn.Linear(100, 100), nn.ReLU(),
        nn.Dropout(0.25), nn.Linear(100, 10),
    )  # fmt: skip


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)


def hand_loop(x: torch.Tensor, y: torch.Tensor, steps: int, batch: int, seed: int) -> float:
    """Seconds for ``steps`` Adam steps of a hand-written MAP loop."""
    torch.manual_seed(seed)
    net = _mlp()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    n = x.shape[0]
    g = torch.Generator().manual_seed(seed)
    start = clock()
    done = 0
    net.train()
    while done < steps:
        order = torch.randperm(n, generator=g)
        for i in range(0, n, batch):
            idx = order[i : i + batch]
            loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
            loss = loss + sum(p.pow(2).sum() for p in net.parameters()) / (2 * n)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            if done == steps:
                break
    return clock() - start


def engine_fit(x: torch.Tensor, y: torch.Tensor, steps: int, batch: int, seed: int) -> float:
    """Seconds for ``bdl.MAP(net).fit`` over the same number of steps (whole epochs)."""
    torch.manual_seed(seed)
    net = _mlp()
    per_epoch = -(-x.shape[0] // batch)
    epochs = max(1, round(steps / per_epoch))
    start = clock()
    bdl.MAP(net).fit((x, y), epochs=epochs, lr=1e-3, batch_size=batch, progress=False,
                     generator=torch.Generator().manual_seed(seed))  # fmt: skip
    return (clock() - start) * steps / (epochs * per_epoch)


def _per_call(fn, calls: int) -> float:
    fn()  # warm-up
    start = clock()
    for _ in range(calls):
        fn()
    return (clock() - start) / calls


def predict_rows(x_all: torch.Tensor, y_all: torch.Tensor, args: argparse.Namespace) -> list:
    """Per-call time of predict against bare forward passes, per batch size and method."""
    torch.manual_seed(0)
    net = _mlp()
    sgld = bdl.SGLD(net, num_samples=20)
    sgld.fit((x_all, y_all), epochs=2, progress=False, generator=torch.Generator().manual_seed(0))
    methods = {"map": (bdl.MAP(net), 1), "mc-dropout": (bdl.MCDropout(net), 20),
               "sgld": (sgld, 20)}  # fmt: skip
    rows = []
    net.eval()
    for batch in (1, 32, 450):
        x = x_all[:batch]
        for name, (method, s) in methods.items():
            ratios, times, bases = [], [], []
            for _ in range(args.repeats):
                with torch.no_grad():
                    base = _per_call(lambda: [net(x) for _ in range(s)], args.calls)  # noqa: B023
                t = _per_call(lambda: method.predict(x, s), args.calls)  # noqa: B023
                ratios.append(t / base)
                times.append(t)
                bases.append(base)
            rows.append({
                "batch": batch, "method": name, "samples": s,
                "predict_s": statistics.median(times), "bare_s": statistics.median(bases),
                "ratio_median": statistics.median(ratios), "ratio_min": min(ratios),
                "ratio_max": max(ratios),
            })  # fmt: skip
            r = rows[-1]
            print(f"batch {batch:4d} {name:10s} predict / {s} bare forward(s): "
                  f"{r['ratio_median']:.2f}x ({r['ratio_min']:.2f}-{r['ratio_max']:.2f})")
    return rows


def main(args: argparse.Namespace) -> dict:
    global clock
    clock = CLOCKS[args.clock]
    torch.set_num_threads(args.threads)
    x, y = _data()
    times: dict[str, list[float]] = {"hand_loop": [], "fit": []}
    hand_loop(x, y, 20, args.batch_size, 0)  # warm-up
    engine_fit(x, y, 20, args.batch_size, 0)
    for r in range(args.repeats):
        times["hand_loop"].append(hand_loop(x, y, args.steps, args.batch_size, r))
        times["fit"].append(engine_fit(x, y, args.steps, args.batch_size, r))
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "steps": args.steps, "batch_size": args.batch_size, "threads": args.threads,
        "clock": args.clock,
        "seconds": times, "median_s": med, "ratio_fit_to_hand_loop": med["fit"] / med["hand_loop"],
    }  # fmt: skip
    for k, v in times.items():
        print(f"{k:10s} median {med[k]:.3f} s (min {min(v):.3f}, max {max(v):.3f})")
    print(f"fit / hand-written loop: {result['ratio_fit_to_hand_loop']:.2f}x (target <= 1.2x)")
    result["predict"] = predict_rows(x, y, args)
    stamp(result, provenance(__file__, args.argv))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return result


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=500, help="Adam steps per timing")
    p.add_argument("--batch-size", type=int, default=64, help="minibatch size")
    p.add_argument("--repeats", type=int, default=7, help="timings per variant")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--calls", type=int, default=50, help="predict calls per timing")
    p.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                   help="wall time, or CPU time of this process (robust to a loaded machine)")
    p.add_argument("--out", default=None, help="JSON results file (none: print only)")
    args = p.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    return args


if __name__ == "__main__":
    main(parse())
