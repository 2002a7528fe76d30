"""Reproduce Gal, Islam & Ghahramani (2017) active learning on MNIST with bayesdl.

Protocol: their CNN with MC dropout, with Keras's initialisation as in their code
(``--init torch``: PyTorch's); 20 class-balanced initial labels; 10 acquired per step
up to 1,000; weight decay c / N_labelled (c = 3.5) on the dense-128 layer only, as in their
code (``--decay all``: on every layer); 20 MC samples scoring the pool and on the test set
(``--mc-samples``, ``--test-samples``; their code scores the pool with 100, which cost 4x
the scoring time and gained nothing in two runs, see ``results/active_mnist_s100/``); a
random 2,000-point pool subset scored per step; the full 10,000-image test set; minibatches
of 64 (``--batch-size``; their code's 128 lost 0.14 points at 1,000 labels in three runs, see
``results/active_mnist_batch128/``).
Each (acquisition, repeat) is an independent run (seed = repeat) in its own process and
checkpoint directory, so runs proceed in parallel (``--jobs``) and resume (``--resume``).
BatchBALD (b = 10) runs on the same protocol up to ``--batchbald-budget`` labels.

``--merge-only`` rebuilds the combined results from whatever the run directories hold; an
unfinished run contributes its curve so far, marked ``"complete": false``.

Outputs in ``--out``: ``active_mnist.json``, ``active_mnist.csv``, ``active_mnist.md``
(table beside the published numbers) and ``active_mnist.png`` (curves, mean +- sd).

Retraining: 100 epochs with a 100-step floor for tiny sets, in bfloat16 (``--train-epochs``,
``--train-steps``, ``--precision``). Gal et al. train 50 epochs, the default until
``active_mnist_retrain.py`` found that 50 epochs leave the CNN unconverged on the sets BALD
acquires (100 epochs: lower validation NLL at 100, 300 and 1,000 labels); the runs in
``results/active_mnist_gal_code/`` use ``--train-epochs 50``. float32, as Gal et al., was
1.35x slower and no better in one paired run, see ``results/active_mnist_float32/``.

Example (the committed results in ``results/active_mnist/``, made before the dense-only
decay and the Keras initialisation were the defaults; two runs at a time, one thread each)::

    python benchmarks/active_mnist.py --train-epochs 50 --decay all --init torch --mc-samples 20 --jobs 2 --threads 1 --eval-every 2 --out benchmarks/results/active_mnist

with Gal et al.'s 50 epochs (``results/active_mnist_gal_code/``)::

    python benchmarks/active_mnist.py --train-epochs 50 --jobs 2 --threads 1 --eval-every 2 --out benchmarks/results/active_mnist_gal_code

and with today's defaults (``results/active_mnist_100ep/``)::

    python benchmarks/active_mnist.py --runs bald:6,random:3,var-ratios:1,entropy:1,mean-std:1,batchbald:3 --jobs 2 --threads 1 --eval-every 2 --out benchmarks/results/active_mnist_100ep

made as several invocations on one ``--work`` directory, finished runs skipped: first
``--runs bald:3,random:1 --batchbald-budget 0``, then ``--runs bald:4,random:1 --jobs 1
--threads 2`` (seed 3 alone, to time a run), then the command above with BatchBALD's one
default run instead of ``batchbald:3``, then the command above.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path
from typing import Any

import torch
from provenance import header, provenance, stamp

from bayesdl.active import _checkpoint as ckpt
from bayesdl.active.experiment import (
    PUBLISHED,
    ExperimentConfig,
    format_summary,
    run_experiment,
    summarize,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--runs", default="bald:3,random:3,var-ratios:1,entropy:1,mean-std:1",
                   help="acquisition:repeats, comma-separated")  # fmt: skip
    p.add_argument("--batchbald-budget", type=int, default=300,
                   help="labels for BatchBALD runs (one is added unless --runs lists batchbald); "
                        "0: no BatchBALD run added, listed ones go to --budget")  # fmt: skip
    p.add_argument("--budget", type=int, default=1000)
    p.add_argument("--train-steps", type=int, default=100, help="minimum steps per retraining")
    p.add_argument(
        "--train-epochs", type=float, default=100, help="epochs per retraining (Gal et al.: 50)"
    )
    p.add_argument(
        "--batch-size", type=int, default=64, help="minibatch size (Gal et al.'s code: 128)"
    )
    p.add_argument("--precision", default="bfloat16", choices=["float32", "bfloat16"])
    p.add_argument("--decay", default="dense", choices=["dense", "all"],
                   help="weight decay on the dense-128 layer only (Gal et al.'s code) or all layers")  # fmt: skip
    p.add_argument("--init", default="glorot", choices=["glorot", "torch"],
                   help="CNN initialisation: Keras defaults as Gal et al., or PyTorch's")  # fmt: skip
    p.add_argument("--mc-samples", type=int, default=20,
                   help="MC samples scoring the pool (Gal et al.'s code: 100)")  # fmt: skip
    p.add_argument("--test-samples", type=int, default=20, help="MC samples on the test set")
    p.add_argument("--test-size", type=int, default=None)
    p.add_argument("--eval-every", type=int, default=1, help="test-set evaluation every k steps")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--device", default="cpu")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel (processes)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--work", default="active-mnist-runs", help="directory of the runs")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--merge-only", action="store_true")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for the results' provenance
    return args


def _jobs(args: argparse.Namespace) -> list[tuple[str, int, int]]:
    """(acquisition, repeat, budget) in the order run: first repeat 0 of every acquisition
    function and BatchBALD, then the further repeats, so a cut-short benchmark has them all."""
    runs = []
    for item in args.runs.split(","):
        name, _, reps = item.partition(":")
        runs.append((name.strip(), int(reps or 1)))
    if args.batchbald_budget and "batchbald" not in [name for name, _ in runs]:
        runs.append(("batchbald", 1))
    jobs = []
    for name, reps in runs:
        budget = (
            args.batchbald_budget if name == "batchbald" and args.batchbald_budget else args.budget
        )
        jobs += [(name, r, budget) for r in range(reps)]
    return sorted(jobs, key=lambda job: job[1])


def _config(args: argparse.Namespace, acq: str, repeat: int, budget: int) -> ExperimentConfig:
    return ExperimentConfig(
        dataset=args.dataset, acquisitions=[acq], budget=budget, seed=repeat,
        train_steps=args.train_steps, train_epochs=args.train_epochs, precision=args.precision,
        batch_size=args.batch_size,
        mc_samples=args.mc_samples, test_samples=args.test_samples, test_size=args.test_size,
        eval_every=args.eval_every, device=args.device, decay=args.decay, init=args.init,
    )  # fmt: skip


def _worker(payload: tuple[argparse.Namespace, str, int, int]) -> str:
    args, acq, repeat, budget = payload
    torch.set_num_threads(args.threads)
    out = Path(args.work) / f"{acq}-{repeat}"
    if (out / "results.json").exists():  # finished earlier: keep its record (and timing)
        return str(out)
    run_experiment(_config(args, acq, repeat, budget), out, resume=True, progress=False)
    return str(out)


def merge(args: argparse.Namespace) -> dict[str, Any]:
    """Collect every run (finished or not) into one results dictionary."""
    runs = []
    for acq, repeat, budget in _jobs(args):
        part = Path(args.work) / f"{acq}-{repeat}"
        done = part / "results.json"
        if done.exists():
            run = json.loads(done.read_text())["runs"][0]
            run.update(repeat=repeat, complete=True)
        elif ckpt.has_checkpoint(part / "runs" / f"{acq}-0"):
            state = ckpt.read_state(part / "runs" / f"{acq}-0")
            h = state["history"]
            run = {
                "acquisition": acq, "repeat": repeat, "labels": h["labels"],
                "accuracy": h["accuracy"], "nll": h["nll"],
                "labelled_indices": h["labelled_indices"], "wall_time_s": h["wall_time_s"],
                "train_time_s": h["train_time_s"], "score_time_s": h["score_time_s"],
                "test_time_s": h["test_time_s"], "complete": False,
            }  # fmt: skip
        else:
            continue
        run["budget"] = budget
        runs.append(run)
    cfg = _config(args, "bald", 0, args.budget).__dict__ | {
        "acquisitions": sorted({r[0] for r in _jobs(args)})
    }
    results = {"config": cfg, "published": PUBLISHED, "runs": runs, "device": args.device}
    results["summary"] = summarize({"runs": _shown(runs)}) if runs else {}
    return results


def _shown(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs the summary and the plot use: an acquisition's complete runs if it has
    any (unfinished ones would mix label counts), else its unfinished ones."""
    done = {r["acquisition"] for r in runs if r["complete"]}
    return [r for r in runs if r["complete"] or r["acquisition"] not in done]


def _markdown(results: dict[str, Any]) -> str:
    pub95, pub_acc = PUBLISHED["labels_to_95"], PUBLISHED["accuracy_at_1000"]
    c = results["config"]
    lines = [
        f"{c['dataset']}: {c['initial']} -> {c['budget']} labels, {c['step']} per step, pool subset "
        f"{c['pool_subset']}, S = {c['mc_samples']} "
        f"(test set: {c.get('test_samples') or c['mc_samples']}); retraining {c['train_epochs']} epochs "
        f"(floor {c['train_steps']} steps), {c['precision']}, batch {c['batch_size']}, lr {c['lr']}, "
        f"init {c.get('init', 'torch')}, weight decay on {c.get('decay', 'all')} layers; "
        f"test set every {c['eval_every']} steps; device {c['device']}. Labels-to-target are means "
        "over the repeats that reached it; times are per run (train / score pool / test).",
        "",
        "| acquisition | runs (complete) | labels to 90% | labels to 95% | labels to 98% | accuracy at last label count | time/run (train / score pool / test) | paper: labels to 95% | paper: acc at 1,000 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def f(v: Any) -> str:
        return "not reached" if v is None else f"{v:.0f}"

    for acq, row in results["summary"].items():
        runs = [r for r in _shown(results["runs"]) if r["acquisition"] == acq]
        done = sum(r["complete"] for r in runs)
        parts = " / ".join(
            f"{sum(r[k] for r in runs) / len(runs) / 60:.1f}"
            for k in ("train_time_s", "score_time_s", "test_time_s")
        )
        paper = pub_acc.get(acq)
        lines.append(
            f"| {acq} | {row['repeats']} ({done}) | {f(row['labels_to_90'])} | {f(row['labels_to_95'])} "
            f"| {f(row['labels_to_98'])} | {row['accuracy_at_budget'] * 100:.2f}% +- "
            f"{row['accuracy_at_budget_sd'] * 100:.2f} @ {row['final_labels']} "
            f"| {row['wall_time_s'] / 60:.1f} min ({parts}) | {pub95.get(acq, '-')} "
            f"| {'-' if paper is None else f'{paper * 100:.1f}%'} |"
        )
    left_out = [r for r in results["runs"] if r not in _shown(results["runs"])]
    if left_out:
        lines += [
            "",
            "Unfinished runs, left out of the table and the plot (their curves are in the JSON/CSV):",
        ]
        lines += [
            f"- {r['acquisition']} repeat {r['repeat']}: stopped at {r['labels'][-1]} labels, "
            f"accuracy {r['accuracy'][-1] * 100:.2f}%"
            for r in left_out
        ]
    return "\n".join(lines) + "\n"


def write(results: dict[str, Any], out: Path) -> None:
    """Write the JSON, CSV, markdown table and curves PNG."""
    from bayesdl.active.experiment import _plot, _write_csv

    out.mkdir(parents=True, exist_ok=True)
    line = header(results["provenance"]) if "provenance" in results else None
    (out / "active_mnist.json").write_text(json.dumps(results, indent=1))
    (out / "active_mnist.md").write_text(
        (f"{line}\n\n" if line else "") + _markdown(results)
    )
    _write_csv(out / "active_mnist.csv", results)
    if line:
        csv = out / "active_mnist.csv"
        csv.write_text(f"# {line}\n" + csv.read_text())
    try:
        _plot(out / "active_mnist.png", {**results, "runs": _shown(results["runs"])})
    except ImportError:
        print("matplotlib missing: no PNG")


def main(args: argparse.Namespace) -> dict[str, Any]:
    if not args.merge_only:
        start = time.perf_counter()
        payloads = [(args, a, r, b) for a, r, b in _jobs(args)]
        if args.jobs > 1:
            with mp.get_context("spawn").Pool(args.jobs) as pool:
                for done in pool.imap_unordered(_worker, payloads):
                    print(f"finished {done} after {time.perf_counter() - start:.0f} s", flush=True)
        else:
            for p in payloads:
                print(
                    f"finished {_worker(p)} after {time.perf_counter() - start:.0f} s", flush=True
                )
    results = merge(args)
    # The folder's earlier invocations (runs merged from --work) stay listed.
    previous = Path(args.out) / "active_mnist.json"
    earlier = json.loads(previous.read_text()).get("provenance") if previous.exists() else None
    stamp(results, provenance(__file__, getattr(args, "argv", None)), earlier)
    write(results, Path(args.out))
    if results["runs"]:
        print(format_summary(results))
    return results


if __name__ == "__main__":
    main(parse_args())
