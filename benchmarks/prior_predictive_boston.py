"""How wide are the functions a prior draws on UCI Boston? The prior-predictive check behind
``approximation_quality.py``'s Boston prior.

The 13-50-1 ReLU network of ``approximation_quality.py`` on the standardised training inputs
of its split 0 (targets standardised: sd 1). For each prior, ``bayesdl.prior_predictive``
draws ``--samples`` networks; the table gives the prior predictive sd of f(x) (over draws,
averaged over the training inputs), with ``Normal(1)`` as the baseline ratio 1:
``Normal(1)`` (every method's default), ``Normal(sqrt(1/5))`` (Izmailov et al.'s prior
variance 1/5 on CIFAR) and ``Normal.fan_in(net)`` (Neal's ``N(0, 1/fan_in)`` weights,
``N(0, 1)`` biases).

Usage (the committed results, seconds)::

    python benchmarks/prior_predictive_boston.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
from approximation_quality import boston_split, network
from provenance import header, provenance, stamp

import bayesdl as bdl


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--samples", type=int, default=4000)
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args(argv)
    x = boston_split(0)["x"]
    torch.manual_seed(0)
    net = network(x.shape[1], 50, 1)
    priors = {
        "Normal(1)": bdl.priors.Normal(1.0),
        "Normal(sqrt(1/5))": bdl.priors.Normal(math.sqrt(1 / 5)),
        "Normal.fan_in(net)": bdl.priors.Normal.fan_in(net),
    }
    rows = {}
    for name, prior in priors.items():
        method = bdl.MAP(net, bdl.likelihoods.Gaussian(1.0), prior=prior)
        pred = bdl.prior_predictive(method, x, samples=args.samples,
                                    generator=torch.Generator().manual_seed(1))  # fmt: skip
        rows[name] = float(pred.samples.std(0).mean())
    base = rows["Normal(1)"]
    record = provenance(__file__, argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"samples": args.samples, "prior_predictive_sd": rows}
    (out / "prior_predictive_boston.json").write_text(json.dumps(stamp(results, record), indent=1))
    lines = [header(record), "", "# Prior predictive sd of the 13-50-1 network on Boston "
             "(split 0, standardised targets: sd 1)", "",
             f"{args.samples} prior draws per prior.", "",
             "| prior | prior predictive sd | / Normal(1)'s |", "|---|---|---|"]  # fmt: skip
    lines += [f"| {k} | {v:.2f} | {v / base:.3f} |" for k, v in rows.items()]
    (out / "prior_predictive_boston.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
