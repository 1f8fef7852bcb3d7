"""The LM loss with the vocabulary head only at labelled positions, decoder.loss_on=free (no loss on the tokens the
record grammar forces), decoder.loss_on=constrained (each drawn token's softmax over the tokens allowed there) and
decoder.target_loss_weight (the target column's tokens weigh more in training)."""

import dataclasses

import pandas as pd
import pytest
import torch
from transformers import ByT5Tokenizer

from difflm.columns import ColumnWeights
from difflm.constraint import RecordConstraint
from difflm.datamodules.records import RecordCollator
from difflm.datamodules.schema import infer_schema
from difflm.errors import UserError
from difflm.modules.decoder import add_lora
from difflm.modules.lm_loss import causal_lm_loss
from difflm.modules.llm import load_llm
from difflm.modules.projectors import IGNORE_INDEX, build_projector


@pytest.fixture(scope="module")
def lora_llm():
    llm = add_lora(load_llm("tiny"), dict(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj", "up_proj"]))
    for name, p in llm.named_parameters():
        if "lora_B" in name:  # LoRA starts at zero: give it a value, so that its gradient depends on the loss's input
            torch.nn.init.normal_(p, std=0.1)
    return llm


def loss_and_grads(llm, projector, compute, ids, mask, labels, z):
    llm.zero_grad(), projector.zero_grad()
    inputs = projector.llm_inputs(llm, z, ids, mask, labels)  # fresh: kv_memory's cache is grown by a forward
    loss = compute(llm, inputs)
    loss.backward()
    params = [p for p in [*llm.parameters(), *projector.parameters()] if p.requires_grad]
    return loss.detach(), [p.grad.clone() for p in params]


@pytest.mark.parametrize("injection", ["soft_prompt", "kv_memory", "input_embed"])
def test_head_at_labelled_positions_gives_the_models_own_loss_and_gradients(lora_llm, injection):
    torch.manual_seed(0)
    projector = build_projector(injection, 16, lora_llm.config, prefix_tokens=4)
    ids = torch.randint(3, 300, (3, 12))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0  # padding
    labels = ids.masked_fill(mask == 0, IGNORE_INDEX)
    labels[0, 2:6] = IGNORE_INDEX  # e.g. forced tokens
    z = torch.randn(3, 16)
    reference, reference_grads = loss_and_grads(lora_llm, projector, lambda llm, inputs: llm(**inputs).loss,
                                                ids, mask, labels, z)
    loss, grads = loss_and_grads(lora_llm, projector, causal_lm_loss, ids, mask, labels, z)
    assert torch.allclose(loss, reference, atol=1e-6)
    for grad, expected in zip(grads, reference_grads):
        assert torch.allclose(grad, expected, atol=1e-6)
    changed = labels.clone()
    changed[2, 3] = IGNORE_INDEX  # one label fewer changes the loss: the labels are read
    assert not torch.isclose(loss_and_grads(lora_llm, projector, causal_lm_loss, ids, mask, changed, z)[0], loss)


@pytest.fixture
def fruit():
    """Categorical columns only, so which bytes the grammar forces is known: the opening quote of each value, the rest
    of a value once its first bytes single it out, the separators, the brackets and the end."""
    table = pd.DataFrame({"fruit": ["apple", "avocado", "banana"], "size": ["big", "small", "big"]})
    schema = infer_schema(table, text_format="array")
    tokenizer = ByT5Tokenizer()
    return schema, tokenizer, RecordConstraint(schema, tokenizer)


def test_forced_flags_are_the_bytes_the_grammar_decides(fruit):
    schema, tokenizer, constraint = fruit
    text = schema.to_text({"fruit": "apple", "size": "big"})
    assert text == '["apple", "big"]'
    ids = tokenizer.encode(text, add_special_tokens=False) + [tokenizer.eos_token_id]
    drawn = {2: "a", 3: "p", 11: "b"}  # apple/avocado/banana, then apple/avocado, then big/small
    expected = [i not in drawn for i in range(len(ids))]
    assert constraint.forced(ids) == expected
    assert [text[i] for i in drawn] == list(drawn.values())


def test_forced_flags_follow_the_compact_formats_separators(fruit):
    schema, tokenizer, _ = fruit
    compact = dataclasses.replace(schema, text_format="compact")
    text = compact.to_text({"fruit": "apple", "size": "big"})
    assert text == '["apple","big"]'
    ids = tokenizer.encode(text, add_special_tokens=False) + [tokenizer.eos_token_id]
    drawn = {2: "a", 3: "p", 10: "b"}
    assert RecordConstraint(compact, tokenizer).forced(ids) == [i not in drawn for i in range(len(ids))]
    assert [text[i] for i in drawn] == list(drawn.values())


def test_nothing_counts_as_forced_from_a_token_the_grammar_refuses(fruit):
    schema, tokenizer, constraint = fruit
    ids = tokenizer.encode('["apple", "huge"]', add_special_tokens=False)
    flags = constraint.forced(ids)
    assert flags[:11] == constraint.forced(tokenizer.encode('["apple", "big"]', add_special_tokens=False))[:11]
    assert not any(flags[11:])  # "h" is no size's first byte


def test_the_collator_takes_the_labels_off_forced_tokens_only(fruit):
    schema, tokenizer, constraint = fruit
    texts = [schema.to_text({"fruit": "banana", "size": "small"}), schema.to_text({"fruit": "apple", "size": "big"})]
    plain = RecordCollator(tokenizer, 64)([{"text": t} for t in texts])
    free = RecordCollator(tokenizer, 64, walk=constraint.walk)([{"text": t} for t in texts])
    assert torch.equal(free["input_ids"], plain["input_ids"])
    kept = free["labels"] != IGNORE_INDEX
    assert bool((free["labels"][kept] == plain["labels"][kept]).all())
    # per row, the labelled tokens are the drawn ones: b|s for banana/small; a, p, b for apple/big
    decoded = [tokenizer.decode(row[keep], skip_special_tokens=True) for row, keep in zip(free["labels"], kept)]
    assert decoded == ["bs", "apb"]


def test_choices_are_what_constrained_decoding_chose_each_drawn_token_from(fruit):
    schema, tokenizer, constraint = fruit
    ids = tokenizer.encode('["apple", "big"]', add_special_tokens=False) + [tokenizer.eos_token_id]
    forced, (columns, allowed) = constraint.walk([ids], 384)
    assert forced == [constraint.forced(ids)] and constraint.walk([ids])[1] is None
    drawn = [i for i, flag in enumerate(forced[0]) if not flag]
    assert drawn == [2, 3, 11] and allowed.shape == (3, len(columns))
    assert [tokenizer.decode(columns[row]) for row in allowed] == ["ab", "pv", "bs"]  # apple/avocado/banana, ...
    _, (columns, allowed) = constraint.walk([ids[:4], ids], 384)  # several records, row-major
    assert [tokenizer.decode(columns[row]) for row in allowed] == ["ab", "pv", "ab", "pv", "bs"]
    refused = tokenizer.encode('["apple", "huge"]', add_special_tokens=False)
    forced, (columns, allowed) = constraint.walk([refused], 384)
    assert [i for i, flag in enumerate(forced[0]) if not flag] == [2, 3, 11, 12, 13, 14, 15, 16]
    assert tokenizer.decode(columns[allowed[2]]) == "bhs" and bool(allowed[3:].all())  # "h" itself; then anything
    assert len(columns) == 384


def test_the_constrained_loss_is_the_likelihood_of_constrained_decoding(fruit, lora_llm):
    schema, tokenizer, constraint = fruit
    texts = [schema.to_text({"fruit": "banana", "size": "small"}), schema.to_text({"fruit": "avocado", "size": "big"})]
    walk = lambda sequences: constraint.walk(sequences, 384)  # noqa: E731
    batch = RecordCollator(tokenizer, 64, walk=walk)([{"text": t} for t in texts])
    labels, columns, mask = batch["labels"], batch["allowed_columns"], batch["allowed_mask"]
    assert bool((labels[:, 0] == IGNORE_INDEX).all()) and mask.shape == ((labels != IGNORE_INDEX).sum(), len(columns))
    assert tokenizer.decode(columns) == "abpsv"  # choices where a byte is drawn: a/b, b/s; a/b, p/v, b/s
    torch.manual_seed(0)
    projector = build_projector("soft_prompt", 16, lora_llm.config, prefix_tokens=4)
    inputs = projector.llm_inputs(lora_llm, torch.randn(2, 16), batch["input_ids"], batch["attention_mask"], labels)
    loss = causal_lm_loss(lora_llm, inputs, columns, mask)
    with torch.no_grad():  # the same by hand: each drawn token's log-probability among the tokens allowed there
        logits = lora_llm(**{k: v for k, v in inputs.items() if k != "labels"}).logits[:, :-1]
        targets = inputs["labels"][:, 1:]
        labelled = targets != IGNORE_INDEX
        allowed = torch.zeros(mask.shape[0], logits.shape[-1], dtype=torch.bool)
        allowed[:, columns] = mask
        log_probs = logits[labelled].masked_fill(~allowed, float("-inf")).log_softmax(-1)
        expected = -log_probs.gather(1, targets[labelled].unsqueeze(1)).mean()
        unconstrained = torch.nn.functional.cross_entropy(logits[labelled], targets[labelled])
    assert torch.isclose(loss, expected, atol=1e-5) and loss < unconstrained
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in lora_llm.named_parameters() if "lora" in n)
    lora_llm.zero_grad()


@pytest.fixture
def table_vae(tiny_cfg, tmp_path):
    """(tiny_cfg, the overrides of a tiny Adult run in array format, its run directory with a trained VAE)."""
    from difflm.pipeline import train
    from difflm.run_dir import RunDir

    base = ("data.max_rows=60", "data.text_format=array", "vae.max_steps=2", "vae.val_every_n_steps=2")
    train(tiny_cfg(*base, "stage=vae"))
    return tiny_cfg, base, RunDir(tmp_path / "run")


@pytest.mark.parametrize("loss_on", ["free", "constrained"])
def test_loss_on_drawn_tokens_trains_a_table_decoder_and_refuses_what_it_cannot(table_vae, loss_on):
    from difflm.pipeline import build_decoder

    tiny_cfg, base, run = table_vae
    module, data = build_decoder(tiny_cfg(*base, f"decoder.loss_on={loss_on}"), run)
    batch = next(iter(data.train_dataloader()))
    labelled = (batch["labels"] != IGNORE_INDEX).sum(1)
    real = batch["attention_mask"].sum(1)
    assert bool((labelled < real / 2).all())  # most of an array row is forced
    assert ("allowed_mask" in batch) == (loss_on == "constrained")
    assert torch.isfinite(module.shared_step(batch, "train"))
    with pytest.raises(UserError, match="decoder.loss_on='some' is not one of all, free, constrained"):
        build_decoder(tiny_cfg(*base, "decoder.loss_on=some"), run)


def test_loss_on_drawn_tokens_needs_a_record_grammar():
    from types import SimpleNamespace

    from difflm.pipeline import label_choices

    code = SimpleNamespace(constraint=lambda: None, schema=SimpleNamespace(record_type="code"))
    assert label_choices("all", code) == {}
    for loss_on in ("free", "constrained"):
        with pytest.raises(UserError, match="code records have none: use decoder.loss_on=all"):
            label_choices(loss_on, code)


def test_the_target_columns_tokens_weigh_more_in_the_loss(fruit, lora_llm):
    schema, tokenizer, _ = fruit
    texts = [schema.to_text({"fruit": "banana", "size": "small"}), schema.to_text({"fruit": "apple", "size": "big"})]
    batch = RecordCollator(tokenizer, 64, weigh=ColumnWeights(tokenizer, 1, 4.0))([{"text": t} for t in texts])
    heavy = batch["label_weights"] == 4.0
    assert bool((batch["label_weights"][~heavy] == 1.0).all())
    assert [tokenizer.decode(row[keep], skip_special_tokens=True) for row, keep in zip(batch["input_ids"], heavy)] \
        == [' "small"]', ' "big"]']  # the size column's tokens (and each record's end), after the comma closing fruit
    torch.manual_seed(0)
    projector = build_projector("soft_prompt", 16, lora_llm.config, prefix_tokens=4)
    inputs = projector.llm_inputs(lora_llm, torch.randn(2, 16), batch["input_ids"], batch["attention_mask"],
                                  batch["labels"])
    weighted = causal_lm_loss(lora_llm, inputs, weights=batch["label_weights"])
    with torch.no_grad():  # the same by hand: per-token cross-entropy, each token's weight, the weighted mean
        # (the last virtual token predicts the start token, which carries a label and weight 1)
        logits = lora_llm(**{k: v for k, v in inputs.items() if k != "labels"}).logits[:, 3:-1]
        targets = batch["labels"]
        labelled = targets != IGNORE_INDEX
        losses = torch.nn.functional.cross_entropy(logits[labelled], targets[labelled], reduction="none")
        weights = batch["label_weights"][labelled]
        expected = (losses * weights).sum() / weights.sum()
    assert torch.isclose(weighted, expected, atol=1e-5) and not torch.isclose(weighted, losses.mean())
    ones = causal_lm_loss(lora_llm, inputs, weights=torch.ones_like(batch["label_weights"]))
    assert torch.isclose(ones, causal_lm_loss(lora_llm, inputs), atol=1e-6)


def test_target_loss_weight_weighs_the_target_in_training_only(table_vae):
    from difflm.pipeline import build_decoder

    tiny_cfg, base, run = table_vae
    assert "label_weights" not in next(iter(build_decoder(tiny_cfg(*base), run)[1].train_dataloader()))
    module, data = build_decoder(tiny_cfg(*base, "decoder.target_loss_weight=3"), run)
    batch = next(iter(data.train_dataloader()))
    heavy = batch["label_weights"] == 3.0
    values = {module.tokenizer.decode(row[keep], skip_special_tokens=True) for row, keep in
              zip(batch["input_ids"], heavy)}
    assert values <= {' "<=50K"]', ' ">50K"]'} and bool((batch["label_weights"][~heavy] == 1.0).all())
    module.eval()  # no dropout: the weights are all that differs between the two splits
    with torch.no_grad():
        assert not torch.isclose(module.shared_step(batch, "train"), module.shared_step(batch, "val"))
    with pytest.raises(UserError, match="decoder.target_loss_weight must be a number > 0, got 0"):
        build_decoder(tiny_cfg(*base, "decoder.target_loss_weight=0"), run)
    no_target = build_decoder(tiny_cfg(*base, "decoder.target_loss_weight=3", "data.target=null"), run)[1]
    assert "label_weights" not in next(iter(no_target.train_dataloader()))
