"""Cost of Bayesian prediction as a ratio to one deterministic forward pass.

bayesdl's prediction is designed to cost far less than S forward passes for
``predict(x, samples=S)`` (``docs/architecture.md``). This benchmark measures it on two MNIST networks, built as ``nn.Sequential``
and randomly initialised (training does not change the speed):

* ``cnn``: the CNN of Gal et al. (2017), Conv(1,32,4)-ReLU-Conv(32,32,4)-ReLU-MaxPool(2)-
  Dropout(0.25)-Flatten-Linear(3872,128)-ReLU-Dropout(0.5)-Linear(128,10);
* ``mlp``: Flatten-784-1200-1200-10 with Dropout(0.5) after each hidden ReLU.

For each model and S it times, as a ratio to one deterministic pass (``model.eval()``,
``torch.no_grad()``) over the same inputs measured in the same run:

* ``python_loop``: S train-mode forward passes in a Python loop (dropout active);
* ``prefix_repeat``: the layers before the first dropout once, then the tail on
  ``h.repeat(S, ...)`` in train mode;
* ``mc_dropout``: ``bdl.MCDropout(model).predict(x, samples=S)`` with the default
  ``chunk_size`` and the ``--chunk-sizes`` given;
* ``mc_dropout_independent``: ``predict(x, samples=S, draws="independent")``, S masks per
  input (for ranking a pool by BALD), with the default ``chunk_size``;
* ``vi_last_layer_independent``: VI's ``predict(..., draws="independent")``, which draws
  by one call per input (``--independent-vi`` to include it; slow by design);
* ``vi``: ``bdl.MeanFieldVI(model, subset=...).predict(x, samples=S)``. Prediction draws
  full weight samples whatever the estimator, so it is timed once per subset; one training
  step ``loss(x, y, n).backward()`` on a batch is timed per estimator instead, as a ratio to
  one deterministic training step (``cross_entropy(model(x), y).backward()``, train mode).

Every timing is the median over up to ``--repeats`` repeats after a warm-up; a
deterministic pass is timed before every repeat (and once after the last), and the ratio
uses the median of those, so a machine whose load drifts still gives fair ratios. A case
stops repeating once its timed repeats took ``--max-case-seconds``; a call estimated (from
a warm-up at S = 2) to take longer than that is not warmed up at full S, and is timed once.
On a shared machine, two threads on two busy cores slow small ops by orders of magnitude
(OpenMP barriers wait for descheduled threads): check the load averages in the report.

Peak memory is measured in a fresh process per call (this script re-runs itself with
``--memory-case``): the peak resident set size during one call minus the resident size
just before it (``VmHWM`` after resetting it through ``/proc/self/clear_refs``; falls back
to ``ru_maxrss``), or ``torch.cuda.max_memory_allocated`` on CUDA. Extra ``chunk_size``
values are measured at the largest S only.

Usage::

    python benchmarks/predict_speed.py --num-inputs 1000 --threads 2 --samples 20,100
    python benchmarks/predict_speed.py --num-inputs 8 --samples 2 --repeats 1   # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from provenance import header, provenance, stamp
from torch import Tensor, nn
from torch.nn import functional as F

import bayesdl as bdl
from bayesdl.runtime import default_chunk_rows

MODELS = ("cnn", "mlp")
ESTIMATORS = ("reparam", "local", "flipout")
SUBSETS = ("all", "last_layer")
N_DATA = 60_000  # training-set size passed to loss() (scales the KL term only)

# Published numbers on the Gal et al. CNN, 1,000 inputs (ratio to one deterministic pass),
# measured by a colleague on another machine: for comparison only.
REFERENCE_CNN: dict[str, dict[int, str]] = {
    "python_loop": {20: "22x", 100: "123x"},
    "baal": {20: "28x", 100: "142x"},
    "bayesian-torch": {20: "21x", 100: "89x"},
    "prefix_repeat": {20: "6x", 100: "36x (4.4 GB)"},
    "flop_floor": {20: "2.1x", 100: "6.7x"},
}
# Targets from the issue: (model, case, samples) -> largest acceptable ratio.
TARGETS: dict[tuple[str, str, int], float] = {
    ("cnn", "mc_dropout", 20): 3.0,
    ("cnn", "mc_dropout", 100): 10.0,
    ("cnn", "vi_last_layer", 100): 2.0,
}


# -- models and inputs -----------------------------------------------------------------------
def build_model(name: str) -> nn.Sequential:
    """The benchmark networks, randomly initialised."""
    if name == "cnn":
        return nn.Sequential(
            nn.Conv2d(1, 32, 4), nn.ReLU(), nn.Conv2d(32, 32, 4), nn.ReLU(), nn.MaxPool2d(2),
            nn.Dropout(0.25), nn.Flatten(), nn.Linear(3872, 128), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(128, 10),
        )  # fmt: skip
    if name == "mlp":
        return nn.Sequential(
            nn.Flatten(), nn.Linear(784, 1200), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(1200, 1200), nn.ReLU(), nn.Dropout(0.5), nn.Linear(1200, 10),
        )  # fmt: skip
    raise ValueError(f"unknown model {name!r}; choose from {MODELS}.")


def make_inputs(n: int, seed: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Random MNIST-shaped images in [0, 1] and labels."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return x.to(device), y.to(device)


def first_dropout(model: nn.Sequential) -> int:
    """Index of the first dropout child: the deterministic prefix is ``model[:index]``."""
    for i, child in enumerate(model):
        if isinstance(child, nn.Dropout):
            return i
    raise ValueError("model has no nn.Dropout child.")


def stochastic_start(model: nn.Sequential, case: str) -> int:
    """Index of the first child a method must re-run per sample (its prefix runs once)."""
    case = case.removesuffix("_independent")
    if case == "vi_all":
        return 0
    if case == "vi_last_layer":
        return max(i for i, c in enumerate(model) if isinstance(c, (nn.Linear, nn.Conv2d)))
    return first_dropout(model)


def flop_floor(model: nn.Sequential, x: Tensor, samples: int, cut: int) -> float:
    """Multiply-adds of ``model[:cut]`` once + the rest S times, over one full pass.

    Counts Conv/Linear multiply-adds only: the least work any implementation can do.
    """
    macs: dict[int, float] = {}

    def count(m: nn.Module, inputs: tuple, out: Tensor) -> None:
        per_out = m.weight[0].numel()  # in_features, or in_channels/groups * kernel size
        macs[id(m)] = out[0].numel() * per_out

    handles = [m.register_forward_hook(count) for m in model.modules()
               if isinstance(m, (nn.Linear, nn.Conv2d))]  # fmt: skip
    try:
        with torch.no_grad():
            model.eval()
            model(x[:1])
    finally:
        for h in handles:
            h.remove()
    prefix = sum(macs.get(id(m), 0.0) for m in model[:cut].modules())
    total = sum(macs.values())
    return (prefix + samples * (total - prefix)) / total


# -- the timed calls -----------------------------------------------------------------------
def predict_case(
    model: nn.Sequential, case: str, x: Tensor, chunk_size: int | None = None
) -> Callable[[int], Any]:
    """A function ``samples -> output`` for one prediction method."""
    if case == "deterministic":

        def run(samples: int) -> Tensor:
            model.eval()
            with torch.no_grad():
                return model(x)

        return run
    if case == "python_loop":

        def run(samples: int) -> Tensor:
            model.train()
            with torch.no_grad():
                return torch.stack([model(x) for _ in range(samples)])

        return run
    if case == "prefix_repeat":
        cut = first_dropout(model)
        prefix, tail = model[:cut], model[cut:]

        def run(samples: int) -> Tensor:
            model.train()
            with torch.no_grad():
                h = prefix(x)
                out = tail(h.repeat(samples, *[1] * (h.dim() - 1)))
                return out.unflatten(0, (samples, -1))

        return run
    draws = "independent" if case.endswith("_independent") else "shared"
    case = case.removesuffix("_independent")
    if case == "mc_dropout":
        method = bdl.MCDropout(model)
    elif case.startswith("vi_"):
        method = bdl.MeanFieldVI(model, subset=case[3:], estimator="reparam")
    else:
        raise ValueError(f"unknown case {case!r}.")
    method.eval()  # predict() restores the wrapper's mode, and with it the model's

    def run(samples: int) -> Any:
        return method.predict(x, samples=samples, chunk_size=chunk_size, draws=draws)

    return run


def train_case(
    model: nn.Sequential, case: str, x: Tensor, y: Tensor
) -> Callable[[], None]:  # fmt: skip
    """A function running one training step's forward and backward pass."""
    if case == "deterministic":
        params = list(model.parameters())

        def step() -> None:
            model.train()
            for p in params:
                p.grad = None
            F.cross_entropy(model(x), y).backward()

        return step
    _, subset, estimator = case.split(":")
    method = bdl.MeanFieldVI(model, subset=subset, estimator=estimator)
    params = list(method.parameters())

    def step() -> None:
        method.train()
        for p in params:
            p.grad = None
        method.loss(x, y, N_DATA).backward()

    return step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def measure(
    fn: Callable[[], Any], det: Callable[[], Any], args: argparse.Namespace,
    device: torch.device, warmup: tuple[Callable[[], Any], float] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Median time of ``fn`` and of the deterministic pass timed between its repeats.

    Args:
        fn: The call to time.
        det: One deterministic pass (the baseline), timed before every repeat and after.
        args: Uses ``repeats`` and ``max_case_seconds``.
        device: Synchronised around every timing (CUDA).
        warmup: ``(cheap, factor)``: a cheaper call of the same code (e.g. at S = 2) whose
            time times ``factor`` estimates ``fn``'s. The warm-up is then ``cheap``, plus
            ``fn`` itself unless the estimate exceeds ``max_case_seconds``. Default: ``fn``.

    Returns:
        ``seconds``, ``det_seconds`` (medians), their ``ratio``, and ``repeats`` timed.
    """
    if warmup is None:
        _timed(fn, device)
    elif _timed(warmup[0], device) * warmup[1] <= args.max_case_seconds:
        _timed(fn, device)
    times, det_times = [], []
    start = time.perf_counter()
    for _ in range(args.repeats):
        det_times.append(_timed(det, device))
        times.append(_timed(fn, device))
        if time.perf_counter() - start > args.max_case_seconds:
            break
    det_times.append(_timed(det, device))
    seconds, det_seconds = statistics.median(times), statistics.median(det_times)
    return {
        "seconds": seconds,
        "det_seconds": det_seconds,
        "ratio": seconds / det_seconds,
        "repeats": len(times),
    }


# -- peak memory in a fresh process ----------------------------------------------------------
def _proc_status_kb(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _maxrss_kb() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss // 1024 if sys.platform == "darwin" else rss  # bytes on macOS


def memory_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Build one case and run it once; report the peak memory it added, in MiB."""
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(spec["seed"])
    device = torch.device(spec["device"])
    model = build_model(spec["model"]).to(device)
    x, _ = make_inputs(spec["num_inputs"], spec["seed"], device)
    run = predict_case(model, spec["case"], x, spec["chunk_size"])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        run(spec["samples"])
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - before
        return {"peak_mib": peak / 2**20, "how": "torch.cuda.max_memory_allocated"}
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        how, before = "VmHWM after clear_refs", _proc_status_kb("VmRSS")
    except OSError:
        how, before = "ru_maxrss", _maxrss_kb()
    run(spec["samples"])
    after = _proc_status_kb("VmHWM") if how.startswith("VmHWM") else _maxrss_kb()
    return {"peak_mib": (after - before) / 1024, "how": how}


def measure_memory(spec: dict[str, Any]) -> dict[str, Any]:
    """Run ``memory_worker`` in a fresh interpreter (this file with ``--memory-case``)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-case", json.dumps(spec)]
    env = dict(os.environ, OMP_NUM_THREADS=str(spec["threads"]))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        return {"peak_mib": None, "how": f"failed: {proc.stderr.strip().splitlines()[-1:]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- the benchmark -------------------------------------------------------------------------
def _predict_cases(args: argparse.Namespace) -> list[tuple[str, int | None]]:
    cases: list[tuple[str, int | None]] = [("python_loop", None), ("prefix_repeat", None)]
    cases += [("mc_dropout", None)] + [("mc_dropout", c) for c in args.chunk_sizes]
    cases += [("mc_dropout_independent", None)]
    cases += [(f"vi_{s}", None) for s in args.subsets]
    if args.independent_vi:
        cases += [("vi_last_layer_independent", None)]
    return cases


def run_model(name: str, args: argparse.Namespace, device: torch.device, bar: Any) -> dict:
    """Time every case on one model; returns its part of the JSON report."""
    torch.manual_seed(args.seed)
    model = build_model(name).to(device)
    x, _ = make_inputs(args.num_inputs, args.seed, device)
    xb, yb = make_inputs(args.batch_size, args.seed + 1, device)
    det = predict_case(model, "deterministic", x)
    det_fn = lambda: det(1)  # noqa: E731
    base = measure(det_fn, det_fn, args, device)
    predict_rows = []
    for samples in args.samples:
        for case, chunk in _predict_cases(args):
            bar.set_postfix_str(f"{name} {case} S={samples} chunk={chunk}")
            run = predict_case(model, case, x, chunk)
            small = min(samples, 2)
            warm = (lambda r=run, s=small: r(s), samples / small)
            res = measure(lambda r=run, s=samples: r(s), det_fn, args, device, warm)
            predict_rows.append({
                "case": case, "samples": samples, "chunk_size": chunk, **res,
                "flop_floor": flop_floor(model, x, samples, stochastic_start(model, case)),
                "reference": REFERENCE_CNN.get(case, {}).get(samples) if name == "cnn" else None,
            })  # fmt: skip
            bar.update()
    det_step = train_case(model, "deterministic", xb, yb)
    train_base = measure(det_step, det_step, args, device)
    train_rows = []
    for subset in args.subsets:
        for estimator in args.estimators:
            bar.set_postfix_str(f"{name} train vi {subset} {estimator}")
            step = train_case(model, f"vi:{subset}:{estimator}", xb, yb)
            res = measure(step, det_step, args, device)
            train_rows.append({"case": f"vi_{subset}", "estimator": estimator, **res})
            bar.update()
    return {
        "deterministic_s": base["seconds"],
        "deterministic_train_step_s": train_base["seconds"],
        "predict": predict_rows,
        "train": train_rows,
        "memory": [],
    }


def run_memory(name: str, args: argparse.Namespace, report: dict, bar: Any) -> None:
    """Peak memory of the cases named in ``--memory-cases``, each in a fresh process."""
    spec = {"model": name, "threads": args.threads, "seed": args.seed,
            "device": args.device, "num_inputs": args.num_inputs}  # fmt: skip
    jobs: list[tuple[str, int, int | None]] = []
    if "deterministic" in args.memory_cases:
        jobs.append(("deterministic", 1, None))
    for samples in args.samples:
        for case, chunk in _predict_cases(args):
            # the chunk_size trade-off is shown at the largest S only
            if case in args.memory_cases and (chunk is None or samples == max(args.samples)):
                jobs.append((case, samples, chunk))
    bar.set_postfix_str(f"{name} memory")
    specs = [{**spec, "case": c, "samples": s, "chunk_size": k} for c, s, k in jobs]
    with ThreadPoolExecutor(max_workers=args.memory_jobs) as pool:  # separate processes
        for (case, samples, chunk), res in zip(jobs, pool.map(measure_memory, specs), strict=True):
            report["memory"].append({"case": case, "samples": samples, "chunk_size": chunk, **res})
            for row in report["predict"]:
                if (row["case"], row["samples"], row["chunk_size"]) == (case, samples, chunk):
                    row["peak_mib"] = res["peak_mib"]
            bar.update()


def check_targets(models: dict[str, dict]) -> list[dict[str, Any]]:
    """Compare the measured ratios and memory with the issue's targets."""
    out = []
    for (model, case, samples), limit in TARGETS.items():
        rows = [r for r in models.get(model, {}).get("predict", [])
                if (r["case"], r["samples"], r["chunk_size"]) == (case, samples, None)]  # fmt: skip
        if rows:
            ratio = rows[0]["ratio"]
            out.append({"target": f"{model} {case} S={samples} <= {limit:g}x",
                        "measured": f"{ratio:.2f}x", "met": ratio <= limit})  # fmt: skip
    mem = [r for r in models.get("cnn", {}).get("memory", [])
           if r["case"] == "mc_dropout" and r["chunk_size"] is None and r["peak_mib"] is not None]  # fmt: skip
    if len(mem) >= 2:
        lo, hi = min(mem, key=lambda r: r["samples"]), max(mem, key=lambda r: r["samples"])
        ok = hi["peak_mib"] <= 1.25 * lo["peak_mib"] + 32
        out.append({
            "target": f"cnn mc_dropout peak memory does not grow from S={lo['samples']} to "
            f"S={hi['samples']} (<= 1.25x + 32 MiB)",
            "measured": f"{lo['peak_mib']:.0f} -> {hi['peak_mib']:.0f} MiB", "met": ok,
        })  # fmt: skip
    return out


def _fmt_ratio(r: float) -> str:
    return f"{r:.1f}x" if r >= 10 else f"{r:.2f}x"


def _fmt_mib(v: float | None) -> str:
    return "" if v is None else f"{v:,.0f}"


def markdown(report: dict[str, Any]) -> str:
    """The report as markdown tables."""
    cfg = report["config"]
    lines = [
        "# predict_speed: cost of Bayesian prediction vs one deterministic pass",
        "",
        f"{cfg['num_inputs']} inputs, {cfg['threads']} threads, device {cfg['device']} "
        f"({cfg['cpu']}), torch {cfg['torch']}, seed {cfg['seed']}; median of up to "
        f"{cfg['repeats']} repeats (column n) after a warm-up; load average "
        f"{cfg['load_before']} before, {cfg['load_after']} after; total "
        f"{cfg['runtime_s']:.0f} s.",
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else 'NO'} |"
              for t in report["targets"]]  # fmt: skip
    lines += [
        "",
        "## Prediction: `predict(x, samples=S)` over one deterministic `model(x)`",
        "",
        "Peak = extra resident memory during one call in a fresh process (MiB). FLOP floor ="
        " (prefix once + tail S times) / one pass, counting Conv/Linear multiply-adds.",
        "Reference = published numbers on the CNN from another machine (not measured here).",
        "",
        "| model | method | S | chunk_size | time (s) | x det | n | FLOP floor | peak MiB "
        "| reference (CNN) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in report["models"].items():
        det_mem = [r for r in m["memory"] if r["case"] == "deterministic"]
        det_peak = _fmt_mib(det_mem[0]["peak_mib"]) if det_mem else ""
        lines.append(f"| {name} | deterministic (eval, no_grad) | 1 | | "
                     f"{m['deterministic_s']:.4f} | 1x | | 1x | {det_peak} | |")  # fmt: skip
        for r in m["predict"]:
            chunk = r["chunk_size"] or ""
            if r["case"] == "mc_dropout" and r["chunk_size"] is None:
                chunk = f"default ({report['config']['default_chunk_rows']})"
            label = {"vi_all": "MeanFieldVI subset=all (any estimator)",
                     "vi_last_layer": "MeanFieldVI subset=last_layer (any estimator)",
                     "mc_dropout": "MCDropout",
                     "mc_dropout_independent": "MCDropout draws=independent",
                     "vi_last_layer_independent":
                         "MeanFieldVI subset=last_layer draws=independent (per input)",
                     }.get(r["case"], r["case"])  # fmt: skip
            lines.append(
                f"| {name} | {label} | {r['samples']} | {chunk} | {r['seconds']:.4f} | "
                f"{_fmt_ratio(r['ratio'])} | {r['repeats']} | {_fmt_ratio(r['flop_floor'])} | "
                f"{_fmt_mib(r.get('peak_mib'))} | {r['reference'] or ''} |"
            )
        if name == "cnn":
            for ref, label in (("baal", "baal (not run here)"),
                               ("bayesian-torch", "bayesian-torch (not run here)"),
                               ("flop_floor", "FLOP floor (published)")):  # fmt: skip
                for s in report["config"]["samples"]:
                    if s in REFERENCE_CNN[ref]:
                        lines.append(f"| cnn | {label} | {s} | | | | | | | "
                                     f"{REFERENCE_CNN[ref][s]} |")  # fmt: skip
    lines += [
        "",
        f"## Training step: `loss(x, y, n).backward()` on a batch of {cfg['batch_size']}",
        "",
        "Ratio to one deterministic step `cross_entropy(model(x), y).backward()` (train mode).",
        "The estimator changes only training; prediction draws full weight samples.",
        "",
        "| model | method | estimator | time (ms) | x det step | n |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in report["models"].items():
        lines.append(f"| {name} | deterministic | | "
                     f"{1e3 * m['deterministic_train_step_s']:.2f} | 1x | |")  # fmt: skip
        for r in m["train"]:
            lines.append(f"| {name} | MeanFieldVI subset={r['case'][3:]} | {r['estimator']} | "
                         f"{1e3 * r['seconds']:.2f} | {_fmt_ratio(r['ratio'])} | "
                         f"{r['repeats']} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load() -> str:
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def main(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark; write ``<name>.json`` and ``<name>.md`` to ``args.out``."""
    from tqdm.auto import tqdm

    if args.memory_case:
        print(json.dumps(memory_worker(json.loads(args.memory_case))))
        return {}
    for flag in ("models", "subsets", "estimators", "memory_cases"):
        value = getattr(args, flag)
        if isinstance(value, str):
            setattr(args, flag, [v for v in value.split(",") if v])
    for flag in ("samples", "chunk_sizes"):
        value = getattr(args, flag)
        if isinstance(value, str):
            setattr(args, flag, [int(v) for v in value.split(",") if v])
    start = time.perf_counter()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    config = {k: v for k, v in vars(args).items() if k not in ("memory_case", "argv")}
    config["out"] = str(config["out"])
    config.update(torch=torch.__version__, cpu=_cpu_name(), load_before=_load(),
                  default_chunk_rows=default_chunk_rows(device))  # fmt: skip
    n_pred = len(args.samples) * len(_predict_cases(args))
    n_train = len(args.subsets) * len(args.estimators)
    n_mem = ("deterministic" in args.memory_cases) + sum(
        c in args.memory_cases and (k is None or s == max(args.samples))
        for s in args.samples for c, k in _predict_cases(args))  # fmt: skip
    total = len(args.models) * (n_pred + n_train + n_mem)
    models: dict[str, dict] = {}
    with tqdm(total=total, desc="predict_speed", disable=not args.progress) as bar:
        for name in args.models:
            models[name] = run_model(name, args, device, bar)
        for name in args.models:  # after all timings, so no process competes with them
            run_memory(name, args, models[name], bar)
    config.update(load_after=_load(), runtime_s=time.perf_counter() - start)
    report = {"config": config, "models": models, "targets": check_targets(models)}
    record = provenance(__file__, getattr(args, "argv", None))
    stamp(report, record)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report)
    (out / f"{args.name}.md").write_text(header(record) + "\n\n" + table)
    print(table)
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags (kebab-case); every default is the full benchmark."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num-inputs", type=int, default=1000, help="inputs N to predict on")
    p.add_argument("--samples", default="20,100", help="comma-separated sample counts S")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per case (median)")
    p.add_argument("--max-case-seconds", type=float, default=3.0,
                   help="stop repeating a case once its timed repeats took this long")  # fmt: skip
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--device", default="cpu", help="torch device")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--models", default=",".join(MODELS), help=f"subset of {MODELS}")
    p.add_argument("--chunk-sizes", default="1000,32768,131072",
                   help="extra MCDropout chunk_size values (besides the default)")  # fmt: skip
    p.add_argument("--subsets", default=",".join(SUBSETS), help="MeanFieldVI subsets")
    p.add_argument("--independent-vi", action="store_true",
                   help="also time VI's per-input draws (one call per input)")  # fmt: skip
    p.add_argument("--estimators", default=",".join(ESTIMATORS),
                   help="MeanFieldVI estimators for the training step")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=128, help="training-step batch size")
    p.add_argument("--memory-cases", default="deterministic,prefix_repeat,mc_dropout,vi_last_layer",
                   help="cases whose peak memory is measured ('' for none)")  # fmt: skip
    p.add_argument("--memory-jobs", type=int, default=1,
                   help="memory measurements run at once, each in its own process; more "
                   "than one on a machine with few cores perturbs the allocator")  # fmt: skip
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    p.add_argument("--name", default="predict_speed", help="file stem of the .json and .md")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--memory-case", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for the results' provenance
    return args


if __name__ == "__main__":
    main(parse_args())
