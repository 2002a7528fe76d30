"""Scenarios that tests/test_distributed.py runs twice: in the test's own process (the
single-process reference) and under ``torchrun --nproc_per_node=2`` (gloo on CPU).

Usage under torchrun: ``python -m torch.distributed.run --standalone --nproc_per_node=2
[--max-restarts=1] tests/_dist_worker.py all OUT CKPT``; every rank writes ``OUT/<scenario>_rank<r>.pt``
(tensors only, read back with ``weights_only=True``).
"""

from __future__ import annotations

import os
import signal
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

import bayesdl as bdl
from bayesdl import distributed
from bayesdl.active import ActiveLearner
from bayesdl.engine import Callback

N, B = 91, 16  # the last global minibatch (11) splits 6 / 5 over two ranks


def data() -> tuple[torch.Tensor, torch.Tensor]:
    """A small 3-class problem."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N, 4, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    return x, y


def net() -> nn.Module:
    """The network every scenario starts from (the same weights on every rank)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3))


def dropout_net(conv: bool = False) -> nn.Module:
    """``net()`` with an ``nn.Dropout`` (or, ``conv``, a 1-d convolution and ``nn.Dropout1d``)."""
    torch.manual_seed(0)
    if conv:
        return nn.Sequential(nn.Unflatten(1, (1, 4)), nn.Conv1d(1, 4, 3, padding=1), nn.Tanh(),
                             nn.Dropout1d(0.3), nn.Flatten(), nn.Linear(16, 3))  # fmt: skip
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Dropout(0.3), nn.Linear(16, 3))


class Members(Callback):
    """Records the ensemble members this process trained."""

    def __init__(self) -> None:
        self.seen: set[int] = set()

    def on_step_end(self, state, terms) -> None:
        self.seen.add(state.member)


PER_EXAMPLE = ["vi_local", "vi_flipout", "mc_dropout", "mc_dropout1d", "concrete", "l0"]
"""Fits whose training draws noise per example: the global minibatch's, cut to each rank."""


def fits() -> dict[str, dict[str, torch.Tensor]]:
    """MAP, MeanFieldVI (every estimator), MC dropout, concrete dropout, L0, SGLD and SWAG
    fits, Laplace on the MAP net, a sharded predict: every tensor that must equal the
    single-process run."""
    x, y = data()
    out: dict[str, dict[str, torch.Tensor]] = {}
    makers = {
        "map": lambda: bdl.MAP(net()),
        "vi": lambda: bdl.MeanFieldVI(net(), estimator="reparam"),
        "sgld": lambda: bdl.SGLD(net(), num_samples=4, cycles=2, exploration=0.5),
        "swag": lambda: bdl.SWAG(net()),
        "vi_local": lambda: bdl.MeanFieldVI(net(), estimator="local"),
        "vi_flipout": lambda: bdl.MeanFieldVI(net(), estimator="flipout"),
        "mc_dropout": lambda: bdl.MCDropout(dropout_net()),
        "mc_dropout1d": lambda: bdl.MCDropout(dropout_net(conv=True)),
        "concrete": lambda: bdl.ConcreteDropout(dropout_net()),
        "l0": lambda: bdl.L0(net()),
        "ensemble": lambda: bdl.DeepEnsemble(net(), members=3),  # members spread: 2 + 1
        "multiswag": lambda: bdl.MultiSWAG(net(), members=3),
    }
    methods = {}
    for name, make in makers.items():
        g = torch.Generator().manual_seed(2)
        m = make()
        kw = {"lr": 1e-2} if name in ("map", "vi", "ensemble", *PER_EXAMPLE) else {}
        trained = Members()
        rep = m.fit((x, y), epochs=4, batch_size=B, generator=g, progress=False,
                    callbacks=[trained], **kw)  # fmt: skip
        out[name] = {k: v.detach().clone() for k, v in m.state_dict().items()}
        out[name]["losses"] = torch.tensor(rep.losses, dtype=torch.float64)
        out[f"{name}_trained"] = {"members": torch.tensor(sorted(trained.seen))}
        methods[name] = m
    for hessian, subset in (("full", "all"), ("diag", "all"), ("kfac", "all")):
        la = bdl.Laplace(methods["map"].model, hessian=hessian, subset=subset)
        la.fit((x, y), batch_size=B, progress=False)
        delta = la.prior_precision.detach().clone()
        eye = torch.eye(la.num_params)
        out[f"laplace_{hessian}"] = {  # the GGN, and the sums of the marginal likelihood
            "ggn": la.posterior_precision().detach() - delta * eye,
            "log_marglik_at_1": la.log_marginal_likelihood(1.0).detach(),
            "prior_precision": delta,
        }
    pred = distributed.predict_sharded(
        methods["vi"], x[:37], samples=8, generator=torch.Generator().manual_seed(3)
    )
    out["predict_vi"] = {"samples": pred.samples}
    return out


def one_example_last() -> dict[str, dict[str, torch.Tensor]]:
    """MeanFieldVI (local) and MC dropout on 81 examples: the last global minibatch (1)
    leaves rank 1 without an example, so it draws no noise, and the ranks take rank 0's
    random state after that step (``distributed.broadcast_rng``)."""
    x, y = data()
    out = {}
    for name, m in (("last_vi_local", bdl.MeanFieldVI(net(), estimator="local")),
                    ("last_mc_dropout", bdl.MCDropout(dropout_net()))):  # fmt: skip
        rep = m.fit((x[:81], y[:81]), epochs=3, batch_size=B, lr=1e-2, progress=False,
                    generator=torch.Generator().manual_seed(12))  # fmt: skip
        out[name] = {k: v.detach().clone() for k, v in m.state_dict().items()}
        out[name]["losses"] = torch.tensor(rep.losses, dtype=torch.float64)
    return out


def hmc() -> dict[str, dict[str, torch.Tensor]]:
    """HMC with 3 chains (rank 0 runs chains 0 and 2, rank 1 chain 1) after a 2-epoch MAP
    fit: the bank of draws, the divergences and the acceptance rate."""
    try:
        import pyro.infer
    except ImportError:  # the test skips
        return {}
    x, y = data()
    m = bdl.HMC(net(), num_samples=4, num_chains=3, max_tree_depth=4)
    run, runs = pyro.infer.MCMC.run, []

    def counted(self, *args, **kwargs):
        runs.append(1)
        return run(self, *args, **kwargs)

    pyro.infer.MCMC.run = counted
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # far too short to converge
            rep = m.fit((x, y), warmup=6, epochs=2, batch_size=B, lr=1e-2, progress=False,
                        generator=torch.Generator().manual_seed(8))  # fmt: skip
    finally:
        pyro.infer.MCMC.run = run
    out = {k: v.detach().clone() for k, v in m.state_dict().items()}
    out["accept_rate"] = torch.tensor(rep.extras["accept_rate"], dtype=torch.float64)
    return {"hmc": out, "hmc_chains_run": {"chains": torch.tensor(len(runs))}}


def every_method() -> dict[str, dict[str, torch.Tensor]]:
    """One epoch of every registered method but HMC (full-batch NUTS, run alike on every
    rank): the state each rank ends with, which must be the same on both."""
    x, y = data()
    out = {}
    for name in bdl.method_names():
        if bdl.get_method(name).full_batch:
            continue
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Dropout(0.2), nn.Linear(16, 3))
        m = bdl.get_method(name)(model)
        epochs = 0 if name == "laplace" else 1
        m.fit((x, y), epochs=epochs, batch_size=B, progress=False,
              generator=torch.Generator().manual_seed(4))  # fmt: skip
        out[f"every_{name}"] = {k: v.detach().clone() for k, v in m.state_dict().items()}

    class Pairs(torch.utils.data.Dataset):  # a map-style dataset without .tensors
        def __len__(self) -> int:
            return N

        def __getitem__(self, i: int):
            return x[i], y[i]

    for name, m in (("dataset_map", bdl.MAP(net())), ("dataset_mcd", bdl.MCDropout(dropout_net()))):
        # DistributedSampler, batch_size / world per rank (dropout: the ranks' rows of the
        # global minibatch's masks)
        rep = m.fit(Pairs(), epochs=2, batch_size=B, lr=1e-2, progress=False,
                    generator=torch.Generator().manual_seed(6))  # fmt: skip
        out[name] = {k: v.detach().clone() for k, v in m.state_dict().items()}
        out[name]["losses"] = torch.tensor(rep.losses, dtype=torch.float64)
    return out


def learner(acquisition: str, ckpt: str | None = None, callbacks=()) -> ActiveLearner:
    """A small active-learning run (MeanFieldVI, whose training draws no per-example noise).

    The pool is scored with shared draws: those are the same on every rank, so the run
    equals one process bit for bit. Independent draws (the default for BALD) run on from
    one input to the next, so a rank's shard gets other draws than in one process: equal
    in distribution only (docs/guide.md, "Beyond one machine")."""
    x, y = data()
    g = torch.Generator().manual_seed(5)
    pool_x = torch.cat([x, torch.randn(60, 4, generator=g)])
    pool_y = torch.cat([y, torch.randint(0, 3, (60,), generator=g)])
    kwargs = {"num_configs": 200} if acquisition == "batchbald" else None
    return ActiveLearner(
        lambda: nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3)),
        (pool_x, pool_y), (x[:40], y[:40]), method="vi", acquisition=acquisition,
        acquisition_kwargs=kwargs, initial=8, step=4, budget=20, pool_subset=None,
        mc_samples=6, train_steps=12, fit_kwargs={"lr": 1e-2, "batch_size": 8},
        balanced=False, progress=False, seed=0, checkpoint_dir=ckpt, resume=ckpt is not None,
        callbacks=callbacks, draws="shared",
    )  # fmt: skip


def active(ckpt: str) -> dict[str, dict[str, torch.Tensor]]:
    """A BALD run with checkpoints that rank 1 kills (SIGKILL) after step 2 the first time
    (``torchrun --max-restarts`` restarts both ranks, which resume from rank 0's checkpoint),
    then an uninterrupted BatchBALD run: their labelled sets, and the step each attempt's
    BALD run started at."""
    marker = Path(ckpt).parent / "killed_once"
    steps: list[int] = []
    writes = []  # files this rank renamed into the checkpoint directory (atomic writes)
    replace = os.replace

    def counting_replace(src, dst, *args, **kwargs):
        if str(dst).startswith(ckpt):
            writes.append(str(dst))
        return replace(src, dst, *args, **kwargs)

    os.replace = counting_replace

    def kill(record) -> None:
        steps.append(record.step)
        if record.step == 2 and distributed.rank() == 1 and not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)

    try:
        bald = learner("bald", ckpt, callbacks=[kill]).run()
    finally:
        os.replace = replace
    batchbald = learner("batchbald").run()
    attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    return {
        "al_bald": {
            "labelled": torch.tensor(bald.labelled_indices),
            "accuracy": torch.tensor([r.accuracy for r in bald.records], dtype=torch.float64),
            "first_step": torch.tensor([steps[0], attempt]),
            "writes": torch.tensor(len(writes)),
        },
        "al_batchbald": {"labelled": torch.tensor(batchbald.labelled_indices)},
    }


def batchbald_shards() -> dict[str, dict[str, torch.Tensor]]:
    """BatchBALD's greedy search split over the ranks (each rank holds its block of a pool of
    150 points; blocks of 64 in the lazy search), exact for the first two points and with
    sampled label configurations after (``num_configs=20 < 3**3``): the batch of 6."""
    from bayesdl.active.acquisition import batchbald
    from bayesdl.predictive import CategoricalPredictive

    logits = 2 * torch.randn(8, 150, 3, generator=torch.Generator().manual_seed(9))
    pred = CategoricalPredictive(logits.log_softmax(-1))
    start, stop = distributed.shard_bounds(150)
    shard = CategoricalPredictive(pred.samples[:, start:stop])
    got = batchbald(shard, 6, num_configs=20, generator=torch.Generator().manual_seed(10),
                    shard=(start, 150) if distributed.is_active() else None)  # fmt: skip
    return {"batchbald_shards": {"chosen": got}}


def errors() -> dict[str, dict[str, torch.Tensor]]:
    """The messages of a world size that does not divide the batch and of a rank-dependent
    setting (as byte tensors)."""
    x, y = data()
    msgs = {}
    try:
        bdl.MAP(net()).fit((x, y), epochs=1, batch_size=15, progress=False)
    except ValueError as e:
        msgs["indivisible"] = str(e)
    try:
        lr = 1e-2 * (1 + distributed.rank())
        bdl.MAP(net()).fit((x, y), epochs=1, batch_size=B, lr=lr, progress=False)
    except ValueError as e:
        msgs["mismatch"] = str(e)
    return {"errors": {k: torch.tensor(list(v.encode())) for k, v in msgs.items()}}


EVALUATE = ["evaluate", "--dataset", "digits", "--ood", "noise", "--methods", "map,vi",
            "--epochs", "1", "--samples", "3", "--train-size", "64", "--test-size", "21",
            "--batch-size", "16", "--dropout", "0,0", "--no-progress", "--out"]  # fmt: skip
"""``bayesdl evaluate`` at a tiny size, without dropout (whose training masks are per rank)."""


def evaluate(out: Path) -> dict[str, dict[str, torch.Tensor]]:
    """``bayesdl evaluate`` into ``out``: its exit status."""
    from bayesdl.cli import main as cli

    return {"evaluate": {"status": torch.tensor(cli([*EVALUATE, str(out)]))}}


def main() -> None:
    mode, out = sys.argv[1], Path(sys.argv[2])
    torch.set_num_threads(1)
    distributed.init_from_env(timeout_s=float(os.environ.get("BAYESDL_DIST_TIMEOUT", 60)))
    if mode != "all":
        raise SystemExit(f"unknown mode {mode!r}; the one mode is 'all'.")
    res = {**active(sys.argv[3]), **fits(), **one_example_last(), **hmc(), **batchbald_shards(),
           **every_method(), **errors(), **evaluate(out / "evaluate")}  # fmt: skip
    for name, tensors in res.items():
        torch.save(tensors, out / f"{name}_rank{distributed.rank()}.pt")
    if distributed.is_active():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
