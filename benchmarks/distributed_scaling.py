"""Pool scoring and training with 1 and 2 gloo processes (``torchrun``), and on paper beyond.

What ``torchrun --nproc_per_node=N -m bayesdl ...`` buys on this machine, as ratios measured
in the same run, and what the measured communication predicts for 8 GPUs x several nodes.

For ``--worlds 1,2`` in turn (``--rounds`` rounds, alternating, so a drifting load hits both)
the script launches ``python -m torch.distributed.run --standalone --nproc_per_node=W`` on
itself; every rank runs on one thread (``OMP_NUM_THREADS=1``) and measures:

* **pool scoring**: ``distributed.predict_sharded(MCDropout(gal_cnn()), pool, samples=S)``
  on ``--pool`` random 28x28 images (each rank scores its shard with the same draws, the
  outputs are all-gathered): pool points per second;
* **a fit epoch**: ``MAP(gal_cnn()).fit((x, y), epochs=1, batch_size=B)`` on ``--train``
  random images (the global minibatch B split over the ranks, gradients all-reduced once per
  step): seconds per epoch, and the seconds spent inside the gradient all-reduce;
* **bytes per step**: the float32 gradient bytes all-reduced per optimiser step.

The machine is shared, so ``os.getloadavg()`` is recorded before and after every launch.
On paper: a ring all-reduce of ``b`` bytes over ``n`` ranks moves ``2 (n - 1) / n * b``
bytes per rank; at a bus bandwidth ``bw`` a step costs ``t_c / n`` of compute (the global
batch split) plus ``2 (n - 1) latency + 2 (n - 1) / n * b / bw`` of communication (no overlap: bayesdl's
all-reduce follows the backward pass), so the speed-up is ``t_c / (t_c / n + comm)``.

Outputs ``distributed_scaling.json`` and ``distributed_scaling.md`` in ``--out``.

Usage (the committed results)::

    python benchmarks/distributed_scaling.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from provenance import header, provenance, stamp

LINKS = {  # (bus bandwidth per GPU in bytes/s, latency per ring hop in s, most ranks)
    "NVLink 4 (8x H100 in one node)": (350e9, 5e-6, 8),  # NCCL all-reduce bus bw ~350-450 GB/s
    "InfiniBand NDR 400 Gb/s per GPU (across nodes)": (40e9, 10e-6, 1024),
    "100 Gb/s Ethernet per node, shared by 8 GPUs": (12.5e9 / 8, 30e-6, 1024),
}
"""Links of the on-paper scaling table: a ring all-reduce of b bytes over n ranks costs
``2 (n - 1) latency + 2 (n - 1) / n * b / bandwidth``."""


def _worker(args: argparse.Namespace) -> None:
    """One rank: time scoring and a fit epoch; rank 0 writes the JSON line."""
    import torch

    import bayesdl as bdl
    from bayesdl import distributed
    from bayesdl.models import gal_cnn

    torch.set_num_threads(1)
    distributed.init_from_env()
    world = distributed.world_size()
    g = torch.Generator().manual_seed(0)
    pool = torch.rand(args.pool, 1, 28, 28, generator=g)
    x, y = torch.rand(args.train, 1, 28, 28, generator=g), torch.arange(args.train) % 10
    torch.manual_seed(0)
    scorer = bdl.MCDropout(gal_cnn(10, 1, 28))

    def score() -> None:
        distributed.predict_sharded(scorer, pool, args.samples,
                                    generator=torch.Generator().manual_seed(1))  # fmt: skip

    distributed.predict_sharded(scorer, pool[:8], 2)  # warm-up
    distributed.barrier()
    start = time.perf_counter()
    score()
    distributed.barrier()
    score_s = time.perf_counter() - start

    torch.manual_seed(0)
    method = bdl.MAP(gal_cnn(10, 1, 28))
    params = [p for p in method.parameters() if p.requires_grad]
    comm = [0.0]
    reduce = distributed.all_reduce_gradients

    def timed_reduce(ps, weight):
        t = time.perf_counter()
        reduce(ps, weight)
        comm[0] += time.perf_counter() - t

    distributed.all_reduce_gradients = timed_reduce  # the engine calls it through the module
    try:
        method.fit((x[:64], y[:64]), epochs=1, batch_size=args.batch_size, progress=False)
        comm[0] = 0.0
        distributed.barrier()
        start = time.perf_counter()
        method.fit((x, y), epochs=1, batch_size=args.batch_size, progress=False,
                   generator=torch.Generator().manual_seed(2))  # fmt: skip
        distributed.barrier()
        fit_s = time.perf_counter() - start
    finally:
        distributed.all_reduce_gradients = reduce
    steps = -(-args.train // args.batch_size)
    row = {
        "world": world, "score_s": score_s, "score_points_per_s": args.pool / score_s,
        "fit_epoch_s": fit_s, "allreduce_s": comm[0], "steps": steps,
        "grad_bytes_per_step": 4 * sum(p.numel() for p in params),
        "params": sum(p.numel() for p in params),
    }  # fmt: skip
    if distributed.is_main():
        Path(args.worker_out).write_text(json.dumps(row))


def _launch(world: int, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={world}", __file__, "--worker", "--worker-out", str(out),
        "--pool", str(args.pool), "--samples", str(args.samples), "--train", str(args.train),
        "--batch-size", str(args.batch_size),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    src = Path(__file__).resolve().parents[1] / "src"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    load_before = os.getloadavg()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    if done.returncode:
        raise RuntimeError(f"torchrun with {world} process(es) failed:\n{done.stderr[-3000:]}")
    row = json.loads(out.read_text())
    row["load_before"], row["load_after"] = list(load_before), list(os.getloadavg())
    return row


def on_paper(step_compute_s: float, grad_bytes: int, ranks: list[int]) -> list[dict[str, Any]]:
    """Predicted speed-up of a step over one rank for each link and rank count.

    Args:
        step_compute_s: Compute time of one global step on one rank (seconds).
        grad_bytes: Bytes all-reduced per step.
        ranks: Rank counts to predict.
    """
    rows = []
    for link, (bw, latency, most) in LINKS.items():
        for n in (n for n in ranks if n <= most):
            comm = 2 * (n - 1) * latency + 2 * (n - 1) / n * grad_bytes / bw
            rows.append({
                "link": link, "ranks": n, "comm_s": comm,
                "speedup": step_compute_s / (step_compute_s / n + comm),
            })  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; write and return the results.

    Args:
        argv: Command-line arguments (``None``: ``sys.argv[1:]``).
    """
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--worlds", default="1,2", help="process counts, comma-separated")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds of every count")
    p.add_argument("--pool", type=int, default=1024, help="pool images scored")
    p.add_argument("--samples", type=int, default=10, help="MC dropout samples S")
    p.add_argument("--train", type=int, default=1024, help="training images in the fit epoch")
    p.add_argument("--batch-size", type=int, default=64, help="global minibatch")
    p.add_argument("--gpu-step-s", type=float, default=0.01,
                   help="assumed compute time of one global step of a large model on one GPU "
                        "for the second on-paper table (seconds)")  # fmt: skip
    p.add_argument("--timeout", type=int, default=1200, help="seconds per launch")
    p.add_argument("--out", default="benchmarks/results", help="output directory")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        _worker(args)
        return {}
    record = provenance(__file__, argv)
    worlds = [int(w) for w in args.worlds.split(",")]
    runs: list[dict[str, Any]] = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for w in worlds:
                runs.append(_launch(w, args, Path(tmp) / f"w{w}_r{r}.json") | {"round": r})
    med = {
        w: {k: statistics.median(x[k] for x in runs if x["world"] == w)
            for k in ("score_points_per_s", "fit_epoch_s", "allreduce_s")}
        for w in worlds
    }  # fmt: skip
    base = med[worlds[0]]
    ratios = {
        w: {"scoring_speedup": m["score_points_per_s"] / base["score_points_per_s"],
            "fit_speedup": base["fit_epoch_s"] / m["fit_epoch_s"]}
        for w, m in med.items()
    }  # fmt: skip
    grad_bytes = runs[0]["grad_bytes_per_step"]
    steps = runs[0]["steps"]
    cpu_step = base["fit_epoch_s"] / steps
    results = {
        "config": {k: v for k, v in vars(args).items() if not k.startswith("worker")},
        "runs": runs, "medians": med, "ratios": ratios, "grad_bytes_per_step": grad_bytes,
        "params": runs[0]["params"], "steps_per_epoch": steps,
        "on_paper_this_cpu_step": on_paper(cpu_step, grad_bytes, [2, 8, 16, 32]),
        "on_paper_gpu_step": on_paper(args.gpu_step_s, grad_bytes, [2, 8, 16, 32]),
        "runtime_s": time.perf_counter() - start,
    }  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "distributed_scaling.json").write_text(json.dumps(stamp(results, record), indent=1))
    (out / "distributed_scaling.md").write_text(_markdown(results, record, worlds, cpu_step))
    return results


def _markdown(
    res: dict[str, Any], record: dict[str, Any], worlds: list[int], cpu_step: float
) -> str:
    cfg = res["config"]
    lines = [
        header(record), "",
        f"Gal et al. CNN ({res['params']:,} parameters). Scoring: MC dropout, S = "
        f"{cfg['samples']}, {cfg['pool']} random 28x28 images. Fit: MAP, one epoch of "
        f"{cfg['train']} images, global minibatch {cfg['batch_size']} ({res['steps_per_epoch']} "
        f"steps). gloo on CPU, one thread per process, medians of {cfg['rounds']} alternating "
        f"rounds; total {res['runtime_s']:.0f} s.", "",
        "| processes | pool points / s | scoring speed-up | fit epoch (s) | fit speed-up | "
        "all-reduce (s / epoch) |", "|---|---|---|---|---|---|",
    ]  # fmt: skip
    for w in worlds:
        m, r = res["medians"][w], res["ratios"][w]
        lines.append(f"| {w} | {m['score_points_per_s']:.1f} | {r['scoring_speedup']:.2f}x | "
                     f"{m['fit_epoch_s']:.2f} | {r['fit_speedup']:.2f}x | {m['allreduce_s']:.3f} |")  # fmt: skip
    lines += ["", "Load average (1, 5, 15 min) before and after each launch:", ""]
    for run in res["runs"]:
        lines.append(f"- round {run['round']}, {run['world']} process(es): "
                     f"{', '.join(f'{v:.2f}' for v in run['load_before'])} -> "
                     f"{', '.join(f'{v:.2f}' for v in run['load_after'])}")  # fmt: skip
    mb = res["grad_bytes_per_step"] / 1e6
    if len(worlds) > 1 and worlds[1] > 1:
        n, t = worlds[1], res["medians"][worlds[1]]["allreduce_s"] / res["steps_per_epoch"]
        bus = 2 * (n - 1) / n * res["grad_bytes_per_step"] / t if t > 0 else float("nan")
        lines += ["", f"Measured here: gloo all-reduces the {mb:.2f} MB of one step over {n} "
                  f"processes in {t * 1e3:.1f} ms (median), a bus bandwidth of {bus / 1e9:.2f} GB/s "
                  "on this loaded machine."]  # fmt: skip
    for title, key, step in (
        (f"this CPU's measured step ({cpu_step * 1e3:.1f} ms)", "on_paper_this_cpu_step", cpu_step),
        (f"an assumed {cfg['gpu_step_s'] * 1e3:.0f} ms GPU step", "on_paper_gpu_step",
         cfg["gpu_step_s"]),
    ):  # fmt: skip
        lines += ["", f"On paper, {mb:.2f} MB of gradients all-reduced per step, compute of "
                  f"{title} split over the ranks (no overlap):", "",
                  "| link | ranks | all-reduce per step | predicted speed-up |", "|---|---|---|---|"]  # fmt: skip
        for row in res[key]:
            lines.append(f"| {row['link']} | {row['ranks']} | {row['comm_s'] * 1e3:.3f} ms | "
                         f"{row['speedup']:.1f}x |")  # fmt: skip
        del step
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
