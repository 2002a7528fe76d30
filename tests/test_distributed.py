"""bayesdl under torch.distributed: two gloo processes on CPU, launched by ``torchrun``.

Every check compares what the two ranks computed with a single-process run of the same
scenario (``tests/_dist_worker.py``) made in this test session, never with stored numbers.

Tolerances: the distributed fit sums the gradient of each global minibatch as two halves
(one per rank, each weighted by its share) where one process sums it at once, so the
weights differ by float32 rounding: a few ulps per step, compounded over the 24 steps of
a fit. ``rtol=1e-5, atol=1e-6`` is ~80 float32 ulps of the largest weights (the
differences measured were 1e-7 to 5e-6 relative); a wrong gradient weighting (mean of
means, N per rank) or a missed all-reduce differs by 1e-2 or more. Laplace's GGN and
marginal-likelihood sums are float32 sums over 91 examples, in another order: the same
tolerance, with the full GGN's entries (stored as a float32 eigendecomposition, whose
reconstruction errs by ~eps |GGN| per entry) to ``1e-5 max |GGN|``. The tuned prior precision is the argmax of a flat marginal likelihood (LBFGS
with ``tolerance_change=1e-12``): compared at ``rtol=1e-3``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import _dist_worker as worker
import pytest
import torch

import bayesdl as bdl
from bayesdl import distributed
from bayesdl._checks import draw_rows

WORKER = Path(__file__).with_name("_dist_worker.py")
RTOL, ATOL = 1e-5, 1e-6

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="torch.distributed is not available"
)


def _torchrun(tmp: Path, mode: str, *extra: str, restarts: int = 0) -> None:
    env = {**os.environ, "BAYESDL_DIST_TIMEOUT": "60", "OMP_NUM_THREADS": "1"}
    src = Path(__file__).parents[1] / "src"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        f"--max-restarts={restarts}", str(WORKER), mode, str(tmp), *extra,
    ]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    if done.returncode:
        raise AssertionError(f"torchrun failed ({done.returncode}):\n{done.stderr[-4000:]}")


def _load(tmp: Path, name: str) -> list[dict[str, torch.Tensor]]:
    return [torch.load(tmp / f"{name}_rank{r}.pt", weights_only=True) for r in (0, 1)]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One torchrun (2 ranks, one restart allowed) of every scenario: its directory."""
    tmp = tmp_path_factory.mktemp("dist")
    (tmp / "ckpt").mkdir()
    _torchrun(tmp, "all", str(tmp / "ckpt" / "run"), restarts=1)
    return tmp


@pytest.fixture(scope="module")
def fits(run):
    """(single-process results, directory of the per-rank results) of the fit scenarios."""
    return worker.fits(), run


@pytest.fixture(scope="module")
def active(run):
    """Directory of the per-rank results of the active-learning scenarios."""
    return run


def _close(got: dict[str, torch.Tensor], ref: dict[str, torch.Tensor], **tol) -> None:
    assert got.keys() == ref.keys()
    for key, value in ref.items():
        torch.testing.assert_close(got[key], value, **(tol or {"rtol": RTOL, "atol": ATOL}),
                                   msg=lambda m, key=key: f"{key}: {m}")  # fmt: skip


@pytest.mark.parametrize("name", ["map", "vi", "sgld", "swag", *worker.PER_EXAMPLE])
def test_fit_equals_one_process(fits, name):
    """MAP, MeanFieldVI (reparam, local, flipout), MC dropout (``nn.Dropout`` and
    ``nn.Dropout1d``), concrete dropout, L0, SGLD (noise once per global step) and SWAG
    (moments once per global step): both ranks hold the single-process weights, losses and
    samples. Noise drawn per example is the global minibatch's, cut to each rank's rows."""
    ref, tmp = fits
    for got in _load(tmp, name):
        _close(got, ref[name])


@pytest.mark.parametrize("name", ["ensemble", "multiswag"])
def test_members_spread_over_ranks(fits, name):
    """DeepEnsemble and MultiSWAG with 3 members on 2 ranks: rank 0 trains members 0 and 2,
    rank 1 member 1, each alone on all the data with the member's own generator; the
    members gathered at the end are one process's, bit for bit (every member is trained by
    one process in both runs), and so are the model (member 0) and the losses."""
    ref, tmp = fits
    for r, got in enumerate(_load(tmp, name)):
        _close(got, ref[name], rtol=0, atol=0)
        trained = _load(tmp, f"{name}_trained")[r]["members"].tolist()
        assert trained == [[0, 2], [1]][r]
    assert ref[f"{name}_trained"]["members"].tolist() == [0, 1, 2]


def test_hmc_chains_spread_over_ranks(run):
    """HMC with 3 chains on 2 ranks (after a 2-epoch MAP fit that every rank runs alone):
    rank 0 runs chains 0 and 2, rank 1 chain 1, and after the broadcast both hold the bank,
    divergences and acceptance rate of one process with the same generator, bit for bit."""
    pytest.importorskip("pyro")
    ref = worker.hmc()
    assert int(ref["hmc_chains_run"]["chains"]) == 3
    for r, got in enumerate(_load(run, "hmc")):
        _close(got, ref["hmc"], rtol=0, atol=0)
        assert int(_load(run, "hmc_chains_run")[r]["chains"]) == [2, 1][r]


@pytest.mark.parametrize(
    "name", [n for n in bdl.method_names() if not bdl.get_method(n).full_batch]
)
def test_every_method_keeps_the_ranks_in_step(fits, name):
    """Every registered method (but full-batch HMC) fits under the group, dropout and
    per-example noise included, and both ranks end with the same state, bit for bit."""
    _, tmp = fits
    r0, r1 = _load(tmp, f"every_{name}")
    assert r0.keys() == r1.keys()
    for key in r0:
        torch.testing.assert_close(r0[key], r1[key], rtol=0, atol=0, msg=key)


@pytest.mark.parametrize("name", ["dataset_map", "dataset_mcd"])
def test_a_map_style_dataset_trains_in_step(fits, name):
    """A ``Dataset`` without tensors goes through a ``DistributedSampler`` (MAP; MC dropout,
    whose masks are the ranks' rows of one global draw): both ranks end with the same
    weights, and the fit lowered the loss."""
    _, tmp = fits
    r0, r1 = _load(tmp, name)
    for key in r0:
        torch.testing.assert_close(r0[key], r1[key], rtol=0, atol=0, msg=key)
    assert r0["losses"][-1] < r0["losses"][0]


@pytest.mark.parametrize("name", ["last_vi_local", "last_mc_dropout"])
def test_a_rank_without_examples_stays_on_one_process_s_draws(fits, name):
    """81 examples in global minibatches of 16: the last one (1 example) leaves rank 1
    empty-handed, and the ranks take rank 0's random state after it, so the next epochs'
    shuffles and noise are still one process's."""
    _, tmp = fits
    ref = worker.one_example_last()[name]
    for got in _load(tmp, name):
        _close(got, ref)


def test_draw_rows_cuts_the_global_draw():
    """A part of a minibatch gets the rows of the draw for the whole minibatch, and leaves the
    generator where the whole draw leaves it; a shape that is not the part's is an error."""
    like = torch.empty(())
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    whole = torch.randn(10, 3, generator=g1)
    part = draw_rows("randn", (4, 3), like, g2, (5, 9, 10))
    assert torch.equal(part, whole[5:9])
    assert torch.equal(g1.get_state(), g2.get_state())
    with pytest.raises(ValueError, match="has not the 4 rows"):
        draw_rows("randn", (3, 3), like, g2, (5, 9, 10))


@pytest.mark.parametrize("layer", [torch.nn.Dropout(0.3), torch.nn.Dropout2d(0.4)])
def test_global_dropout_gives_torch_s_masks(layer):
    """``global_dropout`` on rows 2:5 of a minibatch of 8 gives those rows of what torch's
    own dropout gives the whole minibatch from the same global RNG state (on a CPU), and
    leaves the RNG where torch's leaves it; in evaluation mode it changes nothing."""
    x = torch.randn(8, 6, 3, 3)
    layer.train()
    with torch.random.fork_rng():
        torch.manual_seed(11)
        whole = layer(x)
        after = torch.get_rng_state()
        torch.manual_seed(11)
        with distributed.global_dropout(layer, (2, 5, 8)):
            part = layer(x[2:5])
        assert torch.equal(torch.get_rng_state(), after)
    torch.testing.assert_close(part, whole[2:5], rtol=0, atol=0)
    assert layer.training and not torch.equal(part, x[2:5])
    layer.eval()
    with distributed.global_dropout(layer, (2, 5, 8)):
        assert torch.equal(layer(x[2:5]), x[2:5])


@pytest.mark.parametrize("hessian", ["full", "diag", "kfac"])
def test_laplace_curvature_equals_one_process(fits, hessian):
    """Laplace's GGN (full, diag, KFAC) and marginal-likelihood sums, all-reduced."""
    ref, tmp = fits
    name = f"laplace_{hessian}"
    for got in _load(tmp, name):
        ggn = ref[name]["ggn"]  # stored as a float32 eigendecomposition: error ~ eps |GGN|
        torch.testing.assert_close(got["ggn"], ggn, rtol=RTOL, atol=RTOL * float(ggn.abs().max()))
        torch.testing.assert_close(got["log_marglik_at_1"], ref[name]["log_marglik_at_1"],
                                   rtol=RTOL, atol=ATOL)  # fmt: skip
        torch.testing.assert_close(got["prior_precision"], ref[name]["prior_precision"],
                                   rtol=1e-3, atol=0)  # fmt: skip


def test_sharded_predict_equals_one_process(fits):
    """``predict_sharded``: each rank its block of 37 inputs, the same draws, gathered."""
    ref, tmp = fits
    for got in _load(tmp, "predict_vi"):
        _close(got, ref["predict_vi"])


def test_errors_on_every_rank(fits):
    """A world size that does not divide the batch, and a setting that differs between
    ranks, raise a ValueError naming the problem on both ranks (no hang)."""
    _, tmp = fits
    for got in _load(tmp, "errors"):
        msgs = {k: bytes(v.tolist()).decode() for k, v in got.items()}
        assert "batch_size=15 is not divisible by the world size 2" in msgs["indivisible"]
        assert "is not the same on every rank: ranks [1]" in msgs["mismatch"]


def test_active_learning_equals_one_process_after_a_kill(active):
    """BALD in shards with a global top-k: rank 1 is killed after step 2, torchrun restarts
    both ranks, they resume from rank 0's checkpoint, and the labelled set and test
    accuracies equal an uninterrupted single-process run's."""
    ref = worker.learner("bald").run()
    assert (active / "ckpt" / "killed_once").exists()  # the kill happened
    for got in _load(active, "al_bald"):
        assert got["labelled"].tolist() == ref.labelled_indices
        torch.testing.assert_close(
            got["accuracy"], torch.tensor([r.accuracy for r in ref.records], dtype=torch.float64)
        )
        first_step, attempt = got["first_step"].tolist()
        assert attempt == 1 and first_step == 3  # the restart resumed after the checkpoint


def test_batchbald_equals_one_process(active):
    """BatchBALD on the pool scored in shards: the labelled set of one process."""
    ref = worker.learner("batchbald").run()
    for got in _load(active, "al_batchbald"):
        assert got["labelled"].tolist() == ref.labelled_indices


def test_batchbald_search_split_over_ranks(run):
    """BatchBALD's greedy search with its candidates split over the ranks (gains of each
    lazy block all-reduced, the chosen point's draws broadcast), exact joint entropies and
    then sampled label configurations: both ranks choose one process's batch."""
    ref = worker.batchbald_shards()["batchbald_shards"]["chosen"].tolist()
    assert len(set(ref)) == 6
    for got in _load(run, "batchbald_shards"):
        assert got["chosen"].tolist() == ref


def test_only_rank_zero_writes_checkpoints(active, tmp_path):
    """Rank 0 alone renamed files into the checkpoint directory, which then holds what a
    single process writes."""
    r0, r1 = _load(active, "al_bald")
    assert int(r1["writes"]) == 0 and int(r0["writes"]) > 0
    files = sorted(p.name for p in (active / "ckpt" / "run").iterdir())
    worker.learner("bald", str(tmp_path / "one")).run()
    assert files == sorted(p.name for p in (tmp_path / "one").iterdir())


def test_evaluate_cli_equals_one_process(run, tmp_path):
    """``bayesdl evaluate`` under the process group (test and OOD sets in shards, rank 0
    writing) gives the metrics of one process, timings aside.

    The mutual-information columns of the barely trained nets rank near-equal scores (the
    uniform-noise OOD images score alike), which float32 rounding of the weights may swap:
    each swap moves AUROC / AUPR by about 1 / (n_test n_ood) and FPR95 by 1 / n_test, so
    those columns get ``2 / n_test``; every other column ``rel=1e-4``."""
    from bayesdl.cli import main as cli

    assert [int(r["status"]) for r in _load(run, "evaluate")] == [0, 0]
    assert cli([*worker.EVALUATE, str(tmp_path / "one")]) == 0
    got = json.loads((run / "evaluate" / "metrics.json").read_text())["methods"]
    ref = json.loads((tmp_path / "one" / "metrics.json").read_text())["methods"]
    assert got.keys() == ref.keys()
    for name, row in ref.items():
        for key, value in row.items():
            if value is None or key.startswith(("predict_", "fit_s")):
                continue  # timings
            tol = {"abs": 2 / 21} if key.endswith("_mi") else {"rel": 1e-4, "abs": 1e-6}
            assert got[name][key] == pytest.approx(value, **tol), (name, key)


ACTIVE_LEARN = [
    "active-learn", "--dataset", "digits", "--method", "mc-dropout",
    "--acquisition", "bald,batchbald", "--draws", "shared", "--initial", "10", "--step", "4",
    "--budget", "18", "--pool-subset", "0", "--mc-samples", "4", "--train-steps", "20",
    "--batch-size", "8", "--test-size", "40", "--threads", "1", "--no-progress", "--out",
]  # fmt: skip
"""``bayesdl active-learn`` at a tiny size: MC dropout (its training masks are the global
minibatch's), BALD and BatchBALD on the whole pool with shared draws."""


def test_active_learn_cli_under_torchrun_equals_one_process(tmp_path):
    """``torchrun --nproc_per_node=2 -m bayesdl active-learn ...`` (the CLI as users run it)
    ends with the labelled sets and test accuracies of the single-process CLI, writes the
    same files, and rank 1 writes nothing (every write under ``--out`` is recorded by an
    audit hook, ``tests/_audit/sitecustomize.py``)."""
    from bayesdl.cli import main as cli

    two, one = tmp_path / "two", tmp_path / "one"
    src = Path(__file__).parents[1] / "src"
    env = {**os.environ, "BAYESDL_DIST_TIMEOUT": "60", "OMP_NUM_THREADS": "1",
           "BAYESDL_AUDIT_DIR": str(two), "BAYESDL_AUDIT_LOG": str(tmp_path / "writes_rank")}  # fmt: skip
    paths = [str(Path(__file__).with_name("_audit")), str(src), env.get("PYTHONPATH")]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "bayesdl", *ACTIVE_LEARN, str(two)]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    assert cli([*ACTIVE_LEARN, str(one)]) == 0
    got = json.loads((two / "results.json").read_text())["runs"]
    ref = json.loads((one / "results.json").read_text())["runs"]
    assert [r["acquisition"] for r in got] == [r["acquisition"] for r in ref] == ["bald", "batchbald"]
    for g, r in zip(got, ref, strict=True):
        assert g["labelled_indices"] == r["labelled_indices"]
        assert g["accuracy"] == pytest.approx(r["accuracy"], abs=1e-9)
    files = lambda root: sorted(str(p.relative_to(root)) for p in root.rglob("*"))  # noqa: E731
    assert files(two) == files(one)
    writes = [json.loads((tmp_path / f"writes_rank{r}.json").read_text()) for r in (0, 1)]
    assert writes[0] and writes[1] == [], writes[1][:5]
