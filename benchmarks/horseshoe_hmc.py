"""HMC with the horseshoe prior against an exact Gibbs sampler (issue 25's long check).

Sparse linear regression with a known support: ``y = X beta + sigma eps`` with ``X`` standard
normal (N x D) and the first ``K`` coefficients non-zero (``+-value`` alternately). The model
is ``nn.Linear(D, 1, bias=False)`` with ``Gaussian(sigma)`` (the noise known) and
``Horseshoe(tau0, group="weight")``. ``bdl.HMC`` (Pyro's NUTS over the non-centred
coordinates) is compared with the exact Gibbs sampler of Makalic & Schmidt (2016) in
``tests/_horseshoe_gibbs.py``, which shares no code with bayesdl:

* convergence: split R-hat and ESS of every coefficient (``HMC.diagnostics``), divergences;
* agreement: for every coefficient, the difference of the posterior means and of the second
  moments in units of their combined Monte Carlo standard error (each from its sampler's
  ESS); ``max_abs_z`` <= 4 is agreement within the test suite's policy (``tests/_policy.py``);
* support recovery: whether every true input has a larger posterior |mean| than every null;
* shrinkage: the nulls' mean |posterior mean| and mean |mean| / sd under the horseshoe (HMC
  and Gibbs) over the same under the exact (conjugate) ``Normal(1)`` posterior.

Writes ``<name>.json`` (with provenance) and ``<name>.md`` to ``--out``. Example (the runs
in ``benchmarks/README.md``)::

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/horseshoe_hmc.py --inputs 12 --nonzero 2 \\
        --points 60 --noise 0.5 --max-tree-depth 6 --out benchmarks/results
    OMP_NUM_THREADS=1 python benchmarks/horseshoe_hmc.py --inputs 50 --nonzero 5 --points 100 \
        --noise 1 --tau0 pv --max-tree-depth 8 --out benchmarks/results

With ``--vi-steps`` > 0 (default), ``MeanFieldVI`` with the same prior is fitted on the same
data and its support recovery and shrinkage are reported beside HMC's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import torch
from provenance import header, provenance
from torch import nn

import bayesdl as bdl

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _horseshoe_gibbs import horseshoe_gibbs  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--inputs", type=int, default=12, help="D, the number of inputs")
    p.add_argument("--nonzero", type=int, default=2, help="K, the true non-zero inputs")
    p.add_argument("--points", type=int, default=60, help="N, the data points")
    p.add_argument("--noise", type=float, default=0.5, help="noise sd (known)")
    p.add_argument("--value", type=float, default=1.5, help="|beta| of the true inputs")
    p.add_argument("--tau0", default="0.1",
                   help="scale of the global half-Cauchy, or 'pv': Piironen & Vehtari's (2017) "
                        "K / (D - K) * noise / sqrt(N)")  # fmt: skip
    p.add_argument("--vi-steps", type=int, default=2000,
                   help="full-batch Adam steps (lr 0.05) of MeanFieldVI with the same prior; 0: none")  # fmt: skip
    p.add_argument("--chains", type=int, default=2)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--draws", type=int, default=300, help="HMC draws kept per chain")
    p.add_argument("--max-tree-depth", type=int, default=6)
    p.add_argument("--target-accept", type=float, default=0.8)
    p.add_argument("--gibbs-chains", type=int, default=8)
    p.add_argument("--gibbs-draws", type=int, default=5000, help="per Gibbs chain")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and the samplers")
    p.add_argument("--name", default=None, help="results file stem (default from D/K/N)")
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args(argv)
    args.argv = argv
    args.tau0_rule = args.tau0
    if args.tau0 == "pv":
        k, d = args.nonzero, args.inputs
        args.tau0 = k / (d - k) * args.noise / args.points**0.5
    else:
        args.tau0 = float(args.tau0)
    return args


def _ess(draws: torch.Tensor) -> torch.Tensor:
    from pyro.ops.stats import effective_sample_size

    return effective_sample_size(draws)


def _z_scores(ours: torch.Tensor, ref: torch.Tensor, power: int) -> torch.Tensor:
    """(E_ours - E_ref) of ``beta^power`` per coefficient over the combined standard error."""
    a, b = ours**power, ref**power
    se2 = [t.flatten(0, 1).var(0) / _ess(t) for t in (a, b)]
    return (a.flatten(0, 1).mean(0) - b.flatten(0, 1).mean(0)) / (se2[0] + se2[1]).sqrt()


def _shrinkage(mean: torch.Tensor, sd: torch.Tensor, ref_mean, ref_sd, k: int) -> dict:
    return {
        "abs_mean_ratio": float(mean[k:].abs().mean() / ref_mean[k:].abs().mean()),
        "abs_mean_over_sd_ratio": float(
            (mean[k:].abs() / sd[k:]).mean() / (ref_mean[k:].abs() / ref_sd[k:]).mean()
        ),
    }


def main(args: argparse.Namespace) -> dict:
    """Run HMC and the Gibbs reference, compare them, write the results."""
    torch.set_num_threads(1)
    d, k, n, sigma = args.inputs, args.nonzero, args.points, args.noise
    g = torch.Generator().manual_seed(args.seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    truth = torch.zeros(d, dtype=torch.float64)
    truth[:k] = args.value * torch.tensor([(-1.0) ** i for i in range(k)], dtype=torch.float64)
    y = x @ truth[:, None] + sigma * torch.randn(n, 1, generator=g, dtype=torch.float64)

    torch.manual_seed(args.seed)
    hmc = bdl.HMC(nn.Linear(d, 1, bias=False).double(), bdl.likelihoods.Gaussian(sigma),
                  prior=bdl.priors.Horseshoe(args.tau0, group="weight"),
                  num_samples=args.draws, num_chains=args.chains,
                  target_accept=args.target_accept, max_tree_depth=args.max_tree_depth)  # fmt: skip
    start = time.perf_counter()
    with warnings.catch_warnings():  # the diagnostics are recorded below
        warnings.simplefilter("ignore", UserWarning)
        report = hmc.fit((x, y), warmup=args.warmup, progress=False,
                         generator=torch.Generator().manual_seed(args.seed + 1))  # fmt: skip
        diag = hmc.diagnostics()
    hmc_s = time.perf_counter() - start
    ours = hmc.bank()["weight"].flatten(1).unflatten(0, (args.chains, args.draws))

    start = time.perf_counter()
    ref = torch.from_numpy(horseshoe_gibbs(
        x.numpy(), y.numpy()[:, 0], sigma, args.tau0, draws=args.gibbs_draws, burn=500,
        chains=args.gibbs_chains, seed=args.seed,
    ))  # fmt: skip
    gibbs_s = time.perf_counter() - start

    vi = _vi(x, y, args) if args.vi_steps else None

    cov = torch.linalg.inv(x.T @ x / sigma**2 + torch.eye(d, dtype=x.dtype))
    normal_mean, normal_sd = (cov @ x.T @ y / sigma**2).flatten(), cov.diagonal().sqrt()
    mean, sd = ours.flatten(0, 1).mean(0), ours.flatten(0, 1).std(0)
    ref_mean, ref_sd = ref.flatten(0, 1).mean(0), ref.flatten(0, 1).std(0)
    z1, z2 = _z_scores(ours, ref, 1), _z_scores(ours, ref, 2)
    result = {
        "config": {k_: v for k_, v in vars(args).items() if k_ not in ("argv", "out", "name")},
        "hmc": {
            "seconds": round(hmc_s, 1),
            "max_r_hat": diag.max_r_hat,
            "r_hat": [round(v, 4) for v in _rhat(ours).tolist()],
            "min_ess": diag.min_ess,
            "ess": [round(v) for v in _ess(ours).tolist()],
            "divergences": diag.divergences,
            "accept_rate": report.extras["accept_rate"],
            "mean": mean.tolist(),
            "sd": sd.tolist(),
        },  # fmt: skip
        "gibbs": {
            "seconds": round(gibbs_s, 1),
            "ess": [round(v) for v in _ess(ref).tolist()],
            "mean": ref_mean.tolist(),
            "sd": ref_sd.tolist(),
        },  # fmt: skip
        "normal1": {"mean": normal_mean.tolist(), "sd": normal_sd.tolist()},
        "truth": truth.tolist(),
        "agreement": {
            "z_mean": [round(v, 2) for v in z1.tolist()],
            "z_second_moment": [round(v, 2) for v in z2.tolist()],
            "max_abs_z": float(torch.cat([z1, z2]).abs().max()),
        },
        "support_recovered": {
            "hmc": bool(mean[:k].abs().min() > mean[k:].abs().max()),
            "gibbs": bool(ref_mean[:k].abs().min() > ref_mean[k:].abs().max()),
        },
        "shrinkage_vs_normal1": {
            "hmc": _shrinkage(mean, sd, normal_mean, normal_sd, k),
            "gibbs": _shrinkage(ref_mean, ref_sd, normal_mean, normal_sd, k),
        },
        "provenance": provenance(__file__, args.argv),
    }
    if vi is not None:
        vi_mean, vi_sd, scales, vi_s = vi
        result["vi"] = {
            "seconds": round(vi_s, 1), "mean": vi_mean.tolist(), "sd": vi_sd.tolist(),
            "unit_scales": scales.tolist(),
            "support_recovered": bool(vi_mean[:k].abs().min() > vi_mean[k:].abs().max()),
            "scales_rank_support": bool(scales[:k].min() > scales[k:].max()),
            "shrinkage_vs_normal1": _shrinkage(vi_mean, vi_sd, normal_mean, normal_sd, k),
        }  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = args.name or f"horseshoe_hmc_d{d}_k{k}_n{n}"
    (out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / f"{name}.md").write_text(_markdown(result))
    return result


def _vi(x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace) -> tuple:
    """Mean-field VI with the same horseshoe: its coefficients' means and sds, the
    posterior scale of every input (``unit_scales``) and the seconds it took."""
    torch.manual_seed(args.seed)
    vi = bdl.MeanFieldVI(nn.Linear(args.inputs, 1, bias=False).double(),
                         bdl.likelihoods.Gaussian(args.noise),
                         prior=bdl.priors.Horseshoe(args.tau0, group="weight"))  # fmt: skip
    start = time.perf_counter()
    vi.fit((x, y), epochs=args.vi_steps, batch_size=len(x), lr=0.05, progress=False,
           generator=torch.Generator().manual_seed(args.seed + 2))  # fmt: skip
    seconds = time.perf_counter() - start
    draws = vi.sample_params(4000, generator=torch.Generator().manual_seed(args.seed + 3))
    w = draws["weight"].flatten(1)
    scales = bdl.priors.unit_scales(vi)["weight"].flatten().detach()
    return w.mean(0).detach(), w.std(0).detach(), scales, seconds


def _rhat(draws: torch.Tensor) -> torch.Tensor:
    from pyro.ops.stats import split_gelman_rubin

    return split_gelman_rubin(draws)


def _markdown(r: dict) -> str:
    c, h, a = r["config"], r["hmc"], r["agreement"]
    s = r["shrinkage_vs_normal1"]
    lines = [
        header(r["provenance"]),
        "",
        f"# Horseshoe HMC against the exact Gibbs sampler: D = {c['inputs']}, K = "
        f"{c['nonzero']}, N = {c['points']}, noise sd {c['noise']}, tau0 {c['tau0']:.4g}"
        + (" (Piironen & Vehtari's rule)" if c.get("tau0_rule") == "pv" else ""),
        "",
        f"HMC: {c['chains']} chains x ({c['warmup']} warm-up + {c['draws']} draws), tree depth "
        f"<= {c['max_tree_depth']}, target acceptance {c['target_accept']}: {h['seconds']} s; "
        f"max split R-hat {h['max_r_hat']:.3f}, min ESS {h['min_ess']:.0f}, "
        f"{h['divergences']} divergences. Gibbs: {c['gibbs_chains']} chains x "
        f"{c['gibbs_draws']} draws, {r['gibbs']['seconds']} s.",
        "",
        f"Largest |z| of the mean and second-moment differences: {a['max_abs_z']:.2f} "
        "(agreement within the suite's policy: <= 4). Support recovered: HMC "
        f"{r['support_recovered']['hmc']}, Gibbs {r['support_recovered']['gibbs']}. Null "
        f"coefficients against the exact Normal(1) posterior: mean |mean| ratio HMC "
        f"{s['hmc']['abs_mean_ratio']:.2f} (Gibbs {s['gibbs']['abs_mean_ratio']:.2f}), mean "
        f"|mean| / sd ratio HMC {s['hmc']['abs_mean_over_sd_ratio']:.2f} (Gibbs "
        f"{s['gibbs']['abs_mean_over_sd_ratio']:.2f}).",
        "",
    ]
    if "vi" in r:
        v = r["vi"]
        lines += [
            f"Mean-field VI with the same prior ({c['vi_steps']} full-batch Adam steps, lr 0.05, "
            f"{v['seconds']} s): support recovered by |mean| {v['support_recovered']}, by the "
            f"inputs' posterior scales (`unit_scales`) {v['scales_rank_support']}; nulls' mean "
            f"|mean| ratio to Normal(1) {v['shrinkage_vs_normal1']['abs_mean_ratio']:.2f}.",
            "",
        ]
    lines += [
        "| j | truth | HMC mean | HMC sd | Gibbs mean | Gibbs sd | Normal(1) mean | z mean "
        "| z 2nd moment | R-hat | ESS |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for j, t in enumerate(r["truth"]):
        lines.append(
            f"| {j} | {t:g} | {h['mean'][j]:.3f} | {h['sd'][j]:.3f} | {r['gibbs']['mean'][j]:.3f} "
            f"| {r['gibbs']['sd'][j]:.3f} | {r['normal1']['mean'][j]:.3f} | {a['z_mean'][j]} "
            f"| {a['z_second_moment'][j]} | {h['r_hat'][j]} | {h['ess'][j]} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main(parse_args())
