"""ActiveLearner on sklearn digits: learning, determinism, checkpoints, resume, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch import nn

import bayesdl as bdl
from bayesdl.active import ActiveLearner

TRAIN, TEST = bdl.data.digits("train"), bdl.data.digits("test")


def _net() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 10)
    )


def _learner(**kw) -> ActiveLearner:
    settings = dict(
        initial=10,
        step=5,
        budget=25,
        pool_subset=200,
        mc_samples=6,
        train_steps=40,
        fit_kwargs={"lr": 1e-2},
        progress=False,
        seed=1,
    )
    settings.update(kw)
    return ActiveLearner(settings.pop("factory", _net), TRAIN, TEST, **settings)


def _summary(history) -> dict:
    return {
        "labelled": history.labelled_indices,
        "labels": history.labels,
        "accuracy": history.accuracy,
        "nll": history.nll,
    }


# -- learning ------------------------------------------------------------------------------
def test_loop_improves_test_accuracy_on_digits():
    learner = _learner(
        initial=20, step=20, budget=120, pool_subset=500, mc_samples=10, train_steps=200
    )
    history = learner.run()
    assert history.labels == [20, 40, 60, 80, 100, 120]
    assert len(set(history.labelled_indices)) == 120
    assert history.accuracy[-1] > history.accuracy[0] + 0.05, history.accuracy
    # The initial set is class-balanced: 2 per class.
    first = torch.tensor(history.records[0].acquired)
    assert torch.bincount(TRAIN.y[first], minlength=10).tolist() == [2] * 10
    times = [history.train_time_s, history.score_time_s, history.test_time_s]
    assert all(t > 0 for t in times)


@pytest.mark.parametrize("name", bdl.method_names())
def test_every_registered_method_runs(name):
    history = _learner(method=name, train_steps=10, budget=15).run()
    assert history.labels == [10, 15] and len(history.labelled_indices) == 15


def test_same_seed_same_run_and_global_rng_untouched():
    state = torch.get_rng_state()
    a = _summary(_learner(acquisition="power-bald").run())
    assert torch.equal(torch.get_rng_state(), state)
    b = _summary(_learner(acquisition="power-bald").run())
    c = _summary(_learner(acquisition="power-bald", seed=2).run())
    assert a == b
    assert a["labelled"] != c["labelled"]


def test_eval_every_and_last_step_and_callbacks():
    seen = []
    history = _learner(budget=27, eval_every=2, callbacks=[seen.append]).run()
    # steps: 0 (10), 1 (15), 2 (20), 3 (25), 4 (27: the last step takes only 2)
    assert [r.num_labelled for r in history.records] == [10, 15, 20, 25, 27]
    assert history.labels == [10, 20, 27]
    assert [r.step for r in seen] == [0, 1, 2, 3, 4]
    assert seen[1].accuracy is None and len(seen[4].acquired) == 2


def test_oracle_answers_are_used_and_checked():
    asked = []

    def oracle(idx):
        asked.append(idx.tolist())
        return (TRAIN.y[idx] + 1) % 10  # a consistently wrong labeller

    learner = _learner(oracle=oracle, budget=15)
    learner.run()
    flat = [i for call in asked for i in call]
    assert flat == learner.pool.labelled.tolist()
    assert learner.labels == ((TRAIN.y[flat] + 1) % 10).tolist()
    with pytest.raises(ValueError, match="oracle must return integer labels of shape"):
        _learner(oracle=lambda idx: torch.zeros(1, dtype=torch.long)).run()
    with pytest.raises(ValueError, match="outside"):
        _learner(oracle=lambda idx: torch.full_like(idx, 10)).run()


def test_weight_decay_sets_the_prior_scaled_by_labelled_set_size():
    learner = _learner(weight_decay=2.0, budget=10)
    learner.run()
    assert learner.method.prior.scale == pytest.approx(0.5)  # 1 / sqrt(2 * 2)
    with pytest.raises(ValueError, match="factory returned a method"):
        _learner(factory=lambda: bdl.MCDropout(_net()), weight_decay=1.0).run()


def test_weight_decay_per_layer_decays_only_the_named_layers():
    learner = _learner(weight_decay={"1": 2.0}, budget=10)
    learner.run()
    prior = learner.method.prior
    for name, w in learner.method.model.named_parameters():
        w = w.detach().clone().requires_grad_()
        log_p = prior.log_prob_param(name, w)
        grad = torch.autograd.grad(log_p, w)[0] if log_p.requires_grad else torch.zeros_like(w)
        decay = 2 * 2.0 if name.startswith("1.") else 0.0  # d/dw of -c ||w||^2
        torch.testing.assert_close(grad, -decay * w.detach(), msg=name)
    for bad, message in [
        ({"9": 1.0}, "weight_decay names layer '9', which the model does not have"),
        ({}, "weight_decay mapping is empty"),
        ({"1": -1.0}, "weight_decay must be positive, got -1.0 for layer '1'"),
    ]:
        with pytest.raises(ValueError, match=message):
            _learner(weight_decay=bad, budget=10).run()


def test_the_experiment_decays_the_dense_layer_as_gal_et_al_except_for_vi():
    from bayesdl.active.experiment import ExperimentConfig, _weight_decay

    assert _weight_decay(ExperimentConfig()) == {"7": 3.5}  # gal_cnn's Linear(., 128)
    assert _weight_decay(ExperimentConfig(method="vi")) == 3.5  # VI's KL needs a proper prior
    assert _weight_decay(ExperimentConfig(decay="all", weight_decay=1.0)) == 1.0
    assert (
        isinstance(bdl.models.gal_cnn()[7], nn.Linear)
        and bdl.models.gal_cnn()[7].out_features == 128
    )
    with pytest.raises(ValueError, match="unknown decay 'conv'"):
        ExperimentConfig(decay="conv").validate()


def test_train_epochs_sizes_the_schedule_to_the_labelled_set(monkeypatch):
    calls = []
    fit = bdl.MCDropout.fit

    def spy(self, data, **kw):
        calls.append((len(data[0]), kw["epochs"], kw.get("amp")))
        return fit(self, data, **kw)

    monkeypatch.setattr(bdl.MCDropout, "fit", spy)
    _learner(initial=10, step=60, budget=250, train_steps=40, train_epochs=30).run()
    # batch 64: 10 points are 1 batch, so the 40-step floor (40 epochs) wins; from 70
    # points on, ceil(40 / batches) <= 20 epochs and the 30 epochs win
    assert calls == [(10, 40, None), (70, 30, None), (130, 30, None), (190, 30, None),
                     (250, 30, None)]  # fmt: skip
    calls.clear()
    _learner(budget=15, amp=torch.bfloat16).run()
    assert [c[2] for c in calls] == [torch.bfloat16, torch.bfloat16]
    assert [c[1] for c in calls] == [40, 40]  # fixed steps: 1 batch of 10 or 15 points


def test_pool_and_test_set_use_their_own_sample_counts(monkeypatch):
    calls = []
    predict = bdl.MCDropout.predict

    def spy(self, x, **kw):
        calls.append((len(x), kw["samples"]))
        return predict(self, x, **kw)

    monkeypatch.setattr(bdl.MCDropout, "predict", spy)
    _learner(budget=15, mc_samples=7, test_samples=3).run()
    # step 0: test set; step 1: 200 pool points, then the test set
    assert calls == [(len(TEST), 3), (200, 7), (len(TEST), 3)]
    calls.clear()
    _learner(budget=15, mc_samples=7).run()  # test_samples defaults to mc_samples
    assert [s for _, s in calls] == [7, 7, 7]


# -- errors --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kw,message",
    [
        ({"budget": len(TRAIN) + 1}, "larger than the pool"),
        ({"step": 0}, "step must be an integer >= 1"),
        ({"initial": 30, "budget": 25}, "initial=30 is larger than budget=25"),
        ({"acquisition": "bold"}, r"unknown acquisition function 'bold'; choose one of \["),
        ({"pool_subset": 3}, "pool_subset=3 is smaller than step=5"),
        ({"mc_samples": 0}, "mc_samples"),
        ({"test_samples": 0}, "test_samples must be an integer >= 1"),
        ({"fit_kwargs": {"epochs": 3}}, "may not set"),
        ({"acquisition": "bald", "acquisition_kwargs": {"beta": 1}}, "takes no options"),
        ({"method": "nope"}, "unknown method"),
        ({"train_epochs": 0}, "train_epochs must be positive"),
        ({"amp": torch.float16}, "amp must be None or torch.bfloat16"),
        ({"fit_kwargs": {"amp": torch.bfloat16}}, "may not set"),
    ],
)
def test_bad_settings(kw, message):
    with pytest.raises(ValueError, match=message):
        _learner(**kw)


def test_bad_data():
    with pytest.raises(TypeError, match="train"):
        ActiveLearner(_net, [1, 2], TEST)
    with pytest.raises(ValueError, match="labels of shape"):
        ActiveLearner(_net, (TRAIN.x, TRAIN.y[:-1]), TEST)


# -- checkpoints ---------------------------------------------------------------------------
def test_checkpoint_files_and_refusals(tmp_path):
    history = _learner(checkpoint_dir=tmp_path).run()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["model-00003.safetensors", "state.json"]  # no temporaries, one weights file
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["step"] == 3 and state["complete"]
    assert state["pool"]["labelled"] == history.labelled_indices
    assert isinstance(state["rng"]["acquisition"], str)
    # Never silently reuse a directory.
    with pytest.raises(FileExistsError, match="resume=True"):
        _learner(checkpoint_dir=tmp_path)
    # A different config is refused, naming the setting.
    with pytest.raises(ValueError, match=r"step: checkpoint has 5, this run has 6"):
        _learner(checkpoint_dir=tmp_path, resume=True, step=6).run()
    with pytest.raises(ValueError, match=r"acquisition: checkpoint has 'power-bald'.*'entropy'"):
        _learner(checkpoint_dir=tmp_path, resume=True, acquisition="entropy").run()
    with pytest.raises(ValueError, match=r"fit.lr: checkpoint has 0.01, this run has 0.1"):
        _learner(checkpoint_dir=tmp_path, resume=True, fit_kwargs={"lr": 0.1}).run()
    # Resuming a finished run returns its history without training again.
    calls = []
    done = _learner(checkpoint_dir=tmp_path, resume=True, callbacks=[calls.append])
    assert _summary(done.run()) == _summary(history) and calls == []
    # Tampered weights are detected.
    weights = tmp_path / "model-00003.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(ValueError, match="SHA-256"):
        _learner(checkpoint_dir=tmp_path, resume=True).run()
    # overwrite=True starts afresh.
    again = _learner(checkpoint_dir=tmp_path, overwrite=True).run()
    assert _summary(again) == _summary(history)


class _Crash(Exception):
    pass


@pytest.mark.parametrize("method,warm", [("mc-dropout", False), ("vi", True)])
def test_resume_in_process_after_a_crash(tmp_path, method, warm):
    kw = dict(method=method, warm_start=warm, acquisition="power-bald", budget=30)
    full = _summary(_learner(**kw).run())

    def crash(record):
        if record.step == 2:
            raise _Crash

    with pytest.raises(_Crash):
        _learner(checkpoint_dir=tmp_path, callbacks=[crash], **kw).run()
    assert json.loads((tmp_path / "state.json").read_text())["step"] == 2
    resumed = _learner(checkpoint_dir=tmp_path, resume=True, **kw)
    assert _summary(resumed.run()) == full


_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    torch.set_num_threads(1)
    from torch import nn
    import bayesdl as bdl
    from bayesdl.active import ActiveLearner

    ckpt, out, resume = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    train, test = bdl.data.digits("train"), bdl.data.digits("test")

    def net():
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.5),
                             nn.Linear(32, 10))

    learner = ActiveLearner(
        net, train, test, acquisition="power-bald", initial=10, step=5, budget=40,
        pool_subset=300, mc_samples=8, train_steps=150, fit_kwargs={"lr": 1e-2},
        checkpoint_dir=ckpt, resume=resume, seed=3, progress=False,
    )
    h = learner.run()
    with open(out, "w") as f:
        json.dump({"labelled": h.labelled_indices, "labels": h.labels,
                   "accuracy": h.accuracy, "nll": h.nll}, f)
    """
)


def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path: Path):
    script = tmp_path / "run.py"
    script.write_text(_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")

    def start(name: str, resume: bool) -> subprocess.Popen:
        args = [str(tmp_path / name), str(tmp_path / f"{name}.json"), "1" if resume else "0"]
        return subprocess.Popen([sys.executable, str(script), *args], env=env)

    full = start("full", False)
    killed = start("killed", False)
    state = tmp_path / "killed" / "state.json"
    deadline = time.monotonic() + 120
    step = -1
    while killed.poll() is None and time.monotonic() < deadline:
        if state.exists():
            step = json.loads(state.read_text())["step"]
            if step >= 1:
                killed.send_signal(signal.SIGKILL)
                break
        time.sleep(0.01)
    assert killed.wait(60) == -signal.SIGKILL, "the run finished before it could be killed"
    saved = json.loads(state.read_text())
    assert 1 <= saved["step"] < 6 and not saved["complete"]
    resumed = start("killed", True)
    assert resumed.wait(120) == 0 and full.wait(120) == 0
    a = json.loads((tmp_path / "full.json").read_text())
    b = json.loads((tmp_path / "killed.json").read_text())
    assert b["labelled"] == a["labelled"] and len(a["labelled"]) == 40
    assert b["labels"] == a["labels"] == [10, 15, 20, 25, 30, 35, 40]
    assert b["accuracy"] == a["accuracy"] and b["nll"] == a["nll"]


def test_run_twice_and_a_checkpoint_appearing_meanwhile(tmp_path):
    learner = _learner(checkpoint_dir=tmp_path / "a", budget=15)
    assert _summary(learner.run()) == _summary(learner.run())
    waiting = _learner(checkpoint_dir=tmp_path / "b", budget=15)
    _learner(checkpoint_dir=tmp_path / "b", budget=15, step=4).run()  # another config
    with pytest.raises(FileExistsError, match="another config"):
        waiting.run()
