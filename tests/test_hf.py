"""Hugging Face models as users have them: dict batches from a DataLoader, ModelOutput
objects, peft LoRA adapters, through fit, predict, the metrics and active learning."""

from __future__ import annotations

import pytest
import torch

import bayesdl as bdl
from bayesdl import hf
from bayesdl.inputs import DictDataset
from bayesdl.methods.layers import is_lora_name

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

VOCAB, T, N = 40, 6, 24


def _bert(lora: bool = True, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    cfg = transformers.BertConfig(
        vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, num_labels=3, max_position_embeddings=16,
        attn_implementation="eager", hidden_dropout_prob=0.1,
    )  # fmt: skip
    net = transformers.BertForSequenceClassification(cfg)
    if lora:
        net = peft.get_peft_model(net, peft.LoraConfig(r=2, target_modules=["query", "value"],
                                                       modules_to_save=["classifier"]))  # fmt: skip
    return hf.adapt(net, output="logits")


def _data(n: int = N):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, VOCAB, (n, T), generator=g)
    mask = torch.ones(n, T, dtype=torch.long)
    mask[: n // 2, -2:] = 0  # some padding
    y = ids[:, 0] % 3  # learnable: the first token decides the class
    x = {"input_ids": ids, "attention_mask": mask}
    return x, y, torch.utils.data.DataLoader(DictDataset(x, y), batch_size=8)


def test_adapt_takes_dicts_and_returns_logits():
    net = _bert(lora=False)
    x, _, _ = _data(4)
    out = net(x)
    assert isinstance(out, torch.Tensor) and out.shape == (4, 3)
    hf.unadapt(net)
    assert isinstance(net(**x), transformers.modeling_outputs.SequenceClassifierOutput)


def test_missing_output_field_is_a_one_line_error():
    net = hf.adapt(_bert(lora=False), output="nope")
    x, _, _ = _data(2)
    with pytest.raises(ValueError, match="has no 'nope'"):
        net(x)


def test_dict_batch_without_labels_is_an_error():
    x, _, _ = _data(8)
    loader = torch.utils.data.DataLoader([{k: v[i] for k, v in x.items()} for i in range(8)])
    with pytest.raises(ValueError, match="needs its targets under 'labels'"):
        bdl.MAP(_bert()).fit(loader, epochs=1, progress=False)


def test_map_fit_predict_and_metrics_on_dict_batches():
    x, y, loader = _data()
    net = _bert()
    frozen = {n: p.detach().clone() for n, p in net.named_parameters() if not p.requires_grad}
    method = bdl.MAP(net)
    report = method.fit(loader, epochs=30, lr=0.05, progress=False)
    assert report.losses[-1] < report.losses[0]
    pred = method.predict(x, samples=1)
    assert pred.probs.shape == (N, 3)
    assert bdl.metrics.accuracy(pred.probs, y) > 0.6  # chance is 1/3
    assert 0 <= bdl.metrics.ece(pred.probs, y) <= 1 and bdl.metrics.nll(pred.probs, y) > 0
    for n, p in net.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n])


@pytest.mark.parametrize("hessian", ["kfac", "diag"])
def test_laplace_lora_on_dict_batches(hessian):
    x, y, loader = _data()
    net = _bert()
    bdl.MAP(net).fit(loader, epochs=5, lr=0.05, progress=False)
    la = bdl.Laplace(net, subset="lora", hessian=hessian, prior_precision=1.0)
    la.fit(loader, progress=False)
    assert la.names and all(is_lora_name(n) for n in la.names)
    assert la.num_params == sum(p.numel() for n, p in net.named_parameters() if is_lora_name(n))
    pred = la.predict(x, samples=5, generator=torch.Generator().manual_seed(0))
    assert pred.samples.shape == (5, N, 3)
    assert torch.isfinite(pred.probs).all()


def test_dict_inputs_predict_the_same_in_any_chunking():
    x, _, loader = _data()
    net = _bert()
    la = bdl.Laplace(net, subset="lora", prior_precision=1.0)
    la.fit(loader, progress=False)
    whole = la.predict(x, samples=3, generator=torch.Generator().manual_seed(1)).samples
    parts = la.predict(x, samples=3, chunk_size=5, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(parts.samples, whole)


def test_ensemble_of_adapters_shares_the_backbone():
    x, _, loader = _data()
    net = _bert()
    trainable = [n for n, p in net.named_parameters() if p.requires_grad]
    frozen = {n: p.detach().clone() for n, p in net.named_parameters() if not p.requires_grad}
    ens = bdl.DeepEnsemble(net, members=2, subset=lambda n, p: p.requires_grad)
    ens.fit(loader, epochs=2, progress=False, generator=torch.Generator().manual_seed(0))
    bank = ens.sample_params(2)
    assert set(bank) == set(trainable)  # only adapters and head are stored per member
    lora_a = next(n for n in trainable if "lora_A" in n)
    assert not torch.equal(bank[lora_a][0], bank[lora_a][1])
    for n, p in net.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n])
    assert ens.predict(x, samples=2).samples.shape == (2, N, 3)


def test_mc_dropout_and_swag_on_dict_batches():
    x, _, loader = _data()
    mcd = bdl.MCDropout(_bert())
    mcd.fit(loader, epochs=1, progress=False)
    assert mcd.predict(x, samples=4).samples.shape == (4, N, 3)
    swag = bdl.SWAG(_bert(), subset="lora", rank=2, collect_unit="step", swa_start=0.0)
    swag.fit(loader, epochs=1, progress=False)
    assert swag.predict(x, samples=3).samples.shape == (3, N, 3)


def test_next_token_of_a_causal_lm():
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=VOCAB, n_positions=16, n_embd=16, n_layer=1,
                                  n_head=2, attn_implementation="eager", bos_token_id=0,
                                  tie_word_embeddings=False,
                                  eos_token_id=0)  # fmt: skip
    lm = transformers.GPT2LMHeadModel(cfg).eval()  # dropout off: outputs comparable
    answers = [5, 6, 7, 8]  # the token ids of "A", "B", "C", "D"
    net = hf.adapt(lm, output=hf.next_token(position=-1, tokens=answers))
    ids = torch.randint(0, VOCAB, (4, T))
    hf.unadapt(lm)
    full = lm(input_ids=ids).logits[:, -1]
    hf.adapt(lm, output=hf.next_token(position=-1, tokens=answers))
    torch.testing.assert_close(net(ids), full[:, answers])
    la = bdl.Laplace(net, subset="last_layer", hessian="diag", prior_precision=1.0)
    la.fit((ids, torch.tensor([0, 1, 2, 3])), progress=False)
    assert la.predict(ids, samples=2).samples.shape == (2, 4, 4)


def test_laplace_on_gpt2_with_tied_embeddings():
    """GPT-2's lm_head shares the input embedding: one parameter, curvature of both uses."""
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=VOCAB, n_positions=16, n_embd=8, n_layer=1,
                                  n_head=2, attn_implementation="eager", bos_token_id=0,
                                  eos_token_id=0, tie_word_embeddings=True)  # fmt: skip
    lm = transformers.GPT2LMHeadModel(cfg).eval()
    assert lm.lm_head.weight is lm.transformer.wte.weight
    net = hf.adapt(lm, output=hf.next_token(position=-1, tokens=[5, 6, 7, 8]))
    ids, y = torch.randint(0, VOCAB, (6, T)), torch.tensor([0, 1, 2, 3, 0, 1])
    la = bdl.Laplace(net, subset="last_layer", hessian="diag", prior_precision=1.0)
    assert la.names == ["transformer.wte.weight"] and la.num_params == VOCAB * 8
    la.fit_posterior((ids, y), batch_size=3, progress=False)
    ggn = la.curvature.eigenvalues().view(VOCAB, 8)
    # rows of tokens that are neither an answer nor in the inputs have no curvature through
    # the output layer (only answers are kept) nor through the embedding (never looked up);
    # the input tokens' rows have curvature through the embedding alone
    used, answers = set(ids.flatten().tolist()), {5, 6, 7, 8}
    unused = [v for v in range(VOCAB) if v not in used | answers]
    inputs_only = [v for v in used if v not in answers]
    assert unused and inputs_only
    assert ggn[unused].abs().max() == 0
    assert (ggn[inputs_only].sum(1) > 0).all()
    with pytest.raises(ValueError, match="cannot cover the tied parameter 'transformer.wte.weight'"):
        bdl.Laplace(net, subset="last_layer", hessian="kfac")


def test_active_learning_with_a_model_output():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, VOCAB, (60, T), generator=g)
    y = ids[:, 0] % 3
    learner = bdl.active.ActiveLearner(
        lambda: bdl.MCDropout(_bert(lora=False)), (ids[:40], y[:40]), (ids[40:], y[40:]),
        initial=6, step=3, budget=9, pool_subset=None, mc_samples=3, train_steps=3,
        balanced=False, fit_kwargs={"lr": 1e-3, "batch_size": 8},
    )  # fmt: skip
    history = learner.run()
    assert len(history.records) >= 2 and len(history.labelled_indices) == 9


def test_fit_takes_a_tuple_of_a_dict_and_targets():
    x, y, _ = _data()
    la = bdl.Laplace(_bert(), subset="lora", hessian="kfac", prior_precision=1.0)
    report = la.fit((x, y), epochs=3, lr=1e-2, batch_size=8, progress=False)
    assert report.n_data == N and la.predict(x, samples=2).samples.shape == (2, N, 3)
    # the same curvature as from a DataLoader of dict examples with "labels"
    other = bdl.Laplace(la.model, subset="lora", hessian="kfac", prior_precision=1.0)
    other.fit_posterior(torch.utils.data.DataLoader(DictDataset(x, y), batch_size=8), progress=False)
    torch.testing.assert_close(other.posterior_precision(), la.posterior_precision())
    with pytest.raises(ValueError, match="must not hold 'labels' beside y"):
        bdl.MAP(_bert(lora=False)).fit(({**x, "labels": y}, y), epochs=1, progress=False)


def test_active_learning_with_a_dict_pool(tmp_path):
    """A pool of dict inputs (input_ids, attention_mask with padding): scored, labelled
    and refitted through the loop, checkpointed, and resumed to the same labelled set."""
    x, y, _ = _data(48)
    pool = {k: v[:36] for k, v in x.items()}
    test = {k: v[36:] for k, v in x.items()}

    class Stop(Exception):
        pass

    def stop(record) -> None:
        raise Stop

    def learner(**kw) -> bdl.active.ActiveLearner:
        return bdl.active.ActiveLearner(
            lambda: bdl.MCDropout(_bert(lora=False)), (pool, y[:36]), (test, y[36:]),
            initial=6, step=3, budget=12, pool_subset=None, mc_samples=3, train_steps=3,
            balanced=False, fit_kwargs={"lr": 1e-3, "batch_size": 8}, progress=False, **kw,
        )  # fmt: skip

    full = learner().run()
    assert len(full.labelled_indices) == 12 and len(set(full.labelled_indices)) == 12
    cut = learner(checkpoint_dir=tmp_path, callbacks=[stop])
    assert cut.config()["train_data"]["shape"] == {"input_ids": [36, T], "attention_mask": [36, T]}
    with pytest.raises(Stop):  # killed after its first step
        cut.run()
    resumed = learner(checkpoint_dir=tmp_path, resume=True).run()
    assert resumed.labelled_indices == full.labelled_indices


TINY_VIT = '''
import bayesdl as bdl
from transformers import ViTConfig, ViTForImageClassification


def vit(num_classes, in_channels, image_size):
    cfg = ViTConfig(image_size=image_size, patch_size=4, num_channels=in_channels,
                    hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=32, num_labels=num_classes, hidden_dropout_prob=0.1,
                    attn_implementation="eager")
    return bdl.hf.adapt(ViTForImageClassification(cfg), output="logits")
'''


def test_evaluate_cli_with_a_hugging_face_model(tmp_path, monkeypatch, capsys):
    """``bayesdl evaluate --model module:function`` on a ViT built from a config."""
    from safetensors import safe_open

    from bayesdl.cli import main

    (tmp_path / "tiny_vit.py").write_text(TINY_VIT)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "out"
    argv = ["evaluate", "--dataset", "digits", "--methods", "map,mc-dropout", "--ood", "noise",
            "--epochs", "1", "--train-size", "32", "--test-size", "16", "--samples", "3",
            "--explain", "0", "--no-progress", "--out", str(out)]  # fmt: skip
    assert main([*argv, "--model", "tiny_vit:vit"]) == 0
    metrics = (out / "metrics.json").read_text()
    assert '"mc-dropout"' in metrics and '"model": "tiny_vit:vit"' in metrics
    with safe_open(str(out / "posteriors" / "map.safetensors"), "pt") as f:
        assert any(".vit.layers.0.attention" in k for k in f.keys())  # the ViT, not the CNN
    capsys.readouterr()
    assert main([*argv, "--model", "tiny_vit:nope", "--overwrite"]) == 2
    err = capsys.readouterr().err.strip()
    assert "has no function 'nope'" in err and "\n" not in err
