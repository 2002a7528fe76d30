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


@pytest.mark.parametrize("name", ["map", "vi", "sgld", "swag"])
def test_fit_equals_one_process(fits, name):
    """MAP, MeanFieldVI (reparam), SGLD (noise once per global step) and SWAG (moments once
    per global step): both ranks hold the single-process weights, losses and samples."""
    ref, tmp = fits
    for got in _load(tmp, name):
        _close(got, ref[name])


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


def test_a_map_style_dataset_trains_in_step(fits):
    """A ``Dataset`` without tensors goes through a ``DistributedSampler``: both ranks end
    with the same weights, and the fit lowered the loss."""
    _, tmp = fits
    r0, r1 = _load(tmp, "dataset_map")
    for key in r0:
        torch.testing.assert_close(r0[key], r1[key], rtol=0, atol=0, msg=key)
    assert r0["losses"][-1] < r0["losses"][0]


def test_per_example_noise_stays_in_step(fits):
    """MeanFieldVI's local reparameterisation draws its noise per rank: the ranks still hold
    the same weights (all-reduced gradients), and they differ from the single-process fit's
    (the noise is not the same draw), so the noise is not shared by the ranks."""
    ref, tmp = fits
    r0, r1 = _load(tmp, "vi_local")
    for key in r0:
        torch.testing.assert_close(r0[key], r1[key], rtol=0, atol=0)
    assert not torch.allclose(r0["model.0.weight"], ref["vi_local"]["model.0.weight"], atol=1e-4)


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
