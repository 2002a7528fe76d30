"""How MC dropout's calibration and OOD detection on MNIST depend on the number of posterior
samples S in the model average.

``bayesdl evaluate`` averages S = 20 dropout masks (``bdl.Predictive``'s default is 100).
The model average of S masks is a Monte Carlo estimate of the Bayesian predictive; its
confidence ``max_c p_c`` is biased (the maximum of noisy estimates) and its ECE, NLL and
OOD AUROC carry Monte Carlo error. This benchmark measures both, so the MNIST table's
ECE can be read as a property of the posterior rather than of S.

For each pair of dropout rates in ``--rates`` and each seed in ``--seeds``, trains the CNN
exactly as ``mc_dropout_rates.py`` does (``bayesdl evaluate``'s training), draws
``--max-samples`` masks on the 10,000 MNIST test images and the 10,000 Fashion-MNIST test
images, and splits them into disjoint blocks of S for every S in ``--sizes`` (at most
``--blocks`` blocks each). Every block's model average gets ``decision_metrics``; a seed's
value at S is the mean over its blocks and its Monte Carlo sd is the sd over them.
Also recomputes the S = 20 average with ``mc_dropout_rates.py``'s generator, to check that
the training reproduces that script's log (the committed log predates ``fit`` seeding the
dropout masks from its generator, so only logs made since can be reproduced).

Outputs (``--out``): ``mc_dropout_samples.json`` (every block), ``.md`` (the table) and
``.png`` (ECE and OOD AUROC against S).

Run (the committed results: Gal et al.'s rates, the evaluate default, and the rates chosen
on validation by ``mc_dropout_rates.py``, three seeds each; one process per pair)::

    python benchmarks/mc_dropout_samples.py --rates 0.25,0.5 --threads 1 --out /tmp/s_gal &
    python benchmarks/mc_dropout_samples.py --rates 0.5,0.1 --threads 1 --out /tmp/s_chosen
    python benchmarks/mc_dropout_samples.py --merge /tmp/s_gal /tmp/s_chosen --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from mc_dropout_rates import fit, load_data, mean_sd, read_log
from provenance import header, provenance, stamp

from bayesdl.evaluate import decision_metrics
from bayesdl.predictive import CategoricalPredictive

SHOWN = ["accuracy", "nll", "ece", "adaptive_ece", "ood_auroc_entropy", "ood_auroc_mi"]
Pair = tuple[float, float]


def _log_probs(method: Any, x: torch.Tensor, samples: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return method.predict(x, samples=samples, generator=gen).samples


def measure(
    data: dict[str, Any], rates: Pair, seed: int, max_samples: int, sizes: list[int], blocks: int
) -> dict[str, Any]:
    """Fit one CNN; ``decision_metrics`` of every block of every size in ``sizes``."""
    test, ood = data["test"], data["ood"].x[: len(data["test"])]
    method, fit_s = fit(data["train"], *rates, seed)
    as_logged = decision_metrics(
        CategoricalPredictive(_log_probs(method, test.x, 20, seed)), test.y,
        CategoricalPredictive(_log_probs(method, ood, 20, seed)),
    )  # fmt: skip
    start = time.perf_counter()  # another stream than the check's, so the blocks are new draws
    lp_in, lp_out = (_log_probs(method, x, max_samples, seed + 1000) for x in (test.x, ood))
    predict_s = time.perf_counter() - start
    by_size = {}
    for size in sizes:
        rows = []
        for b in range(min(blocks, max_samples // size)):
            part = slice(b * size, (b + 1) * size)
            row = decision_metrics(
                CategoricalPredictive(lp_in[part]), test.y, CategoricalPredictive(lp_out[part])
            )
            rows.append({k: row[k] for k in SHOWN})
        by_size[str(size)] = rows
    return {"dropout": list(rates), "seed": seed, "fit_s": fit_s, "predict_s": predict_s,
            "threads": torch.get_num_threads(), "s20_as_logged": {k: as_logged[k] for k in SHOWN},
            "blocks": by_size}  # fmt: skip


def _by_pair(runs: list[dict[str, Any]]) -> dict[Pair, list[dict[str, Any]]]:
    pairs: dict[Pair, list[dict[str, Any]]] = {}
    for r in runs:
        pairs.setdefault(tuple(r["dropout"]), []).append(r)
    return pairs


def _seed_values(mine: list[dict[str, Any]], size: str, key: str) -> list[float]:
    """One value per seed: the mean over that seed's blocks of S = ``size`` masks."""
    return [statistics.mean(b[key] for b in r["blocks"][size]) for r in mine]


def markdown(runs: list[dict[str, Any]], logged: dict[tuple[Pair, int], float]) -> str:
    """The table: per pair and S, each metric's mean +- sd over seeds, and the ECE's Monte
    Carlo sd; then the check against ``logged`` (test ECE by (pair, seed), S = 20)."""
    lines = [
        "MC dropout on MNIST (Gal et al.'s CNN trained as `bayesdl evaluate` does): metrics of "
        "the model average of S dropout masks (OOD: Fashion-MNIST), mean +- sd over seeds; a "
        "seed's value is the mean over its disjoint blocks of S masks. `ECE MC sd`: the sd of "
        "one seed's ECE over its blocks (the Monte Carlo error of one S-mask average), mean "
        "over seeds.",
        "",
        "| dropout (conv, dense) | S | blocks | seeds | " + " | ".join(SHOWN) + " | ECE MC sd |",
        "|---" * (len(SHOWN) + 5) + "|",
    ]
    for pair, mine in _by_pair(runs).items():
        for size in mine[0]["blocks"]:
            cells = [f"{m:.4f} +- {sd:.4f}" for m, sd in
                     (mean_sd(_seed_values(mine, size, k)) for k in SHOWN)]  # fmt: skip
            n_blocks = len(mine[0]["blocks"][size])
            mc = statistics.mean(mean_sd([b["ece"] for b in r["blocks"][size]])[1] for r in mine)
            lines.append(f"| {pair} | {size} | {n_blocks} | {len(mine)} | " + " | ".join(cells)
                         + f" | {f'{mc:.4f}' if n_blocks > 1 else '-'} |")  # fmt: skip
    lines += ["", "Check: test ECE of the S = 20 average drawn as `mc_dropout_rates.py` draws it, "
              "against that script's log (`-`: not in the log):", ""]  # fmt: skip
    for r in runs:
        pair, seed = tuple(r["dropout"]), r["seed"]
        old = logged.get((pair, seed))
        lines.append(f"- {pair} seed {seed}: {r['s20_as_logged']['ece']:.4f} here, "
                     f"{'-' if old is None else f'{old:.4f}'} in the log; fit {r['fit_s']:.0f} s, "
                     f"{r['threads']} thread(s)")  # fmt: skip
    return "\n".join(lines) + "\n"


def plot(runs: list[dict[str, Any]], path: Path) -> None:
    """ECE and OOD AUROC (entropy) against S, mean +- sd over seeds, one line per pair."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for pair, mine in _by_pair(runs).items():
        sizes = list(mine[0]["blocks"])
        for ax, key in zip(axes, ["ece", "ood_auroc_entropy"], strict=True):
            stats = [mean_sd(_seed_values(mine, s, key)) for s in sizes]
            ax.errorbar([int(s) for s in sizes], [m for m, _ in stats], yerr=[sd for _, sd in stats],
                        marker="o", capsize=3, label=f"dropout {pair}")  # fmt: skip
    axes[0].axhline(0.005, color="grey", ls="--", lw=1, label="target ECE 0.005")
    axes[1].axhline(0.98, color="grey", ls="--", lw=1, label="target AUROC 0.98")
    for ax, title in zip(axes, ["test ECE (15 bins)", "OOD AUROC (entropy)"], strict=True):
        ax.set(xscale="log", xlabel="posterior samples S", title=title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _logged(log: Path) -> dict[tuple[Pair, int], float]:
    return {(tuple(r["dropout"]), r.get("seed", 0)): r["ece"] for r in read_log(log)}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rates", nargs="*", default=["0.25,0.5", "0.5,0.1"],
                   help="dropout pairs conv,dense")  # fmt: skip
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--max-samples", type=int, default=200, help="masks drawn per input")
    p.add_argument("--sizes", default="1,5,10,20,50,100,200", help="block sizes S")
    p.add_argument("--blocks", type=int, default=10, help="at most this many blocks per S")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--merge", nargs="*", default=None,
                   help="only combine the JSON of earlier runs in these directories")  # fmt: skip
    p.add_argument("--log", default="benchmarks/results/mc_dropout_rates.log")
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    target = out / "mc_dropout_samples.json"
    if target.exists():
        raise FileExistsError(f"{target} exists; pick another --out (nothing was overwritten).")
    earlier = []
    if args.merge is not None:
        parts = [json.loads((Path(d) / target.name).read_text()) for d in args.merge]
        runs = [r for part in parts for r in part["runs"]]
        earlier = [part["provenance"] for part in parts if "provenance" in part]
    else:
        sizes = [int(s) for s in args.sizes.split(",")]
        if max(sizes) > args.max_samples:
            raise ValueError(f"--sizes go up to {max(sizes)} > --max-samples {args.max_samples}.")
        data, runs = load_data(), []
        for text in args.rates:
            rates = tuple(float(v) for v in text.split(","))
            for seed in (int(s) for s in args.seeds.split(",")):
                runs.append(measure(data, rates, seed, args.max_samples, sizes, args.blocks))
                print(f"{rates} seed {seed}: fit {runs[-1]['fit_s']:.0f} s", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    results = stamp({"runs": runs}, provenance(__file__, argv), earlier)
    target.write_text(json.dumps(results, indent=1))
    text = markdown(runs, _logged(Path(args.log)))
    target.with_suffix(".md").write_text(header(results["provenance"]) + "\n\n" + text)
    plot(runs, target.with_suffix(".png"))
    print(text)
    return runs


if __name__ == "__main__":
    main()
