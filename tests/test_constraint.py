"""Schema-constrained decoding: the grammar accepts exactly the valid records."""

import llguidance
import pytest
from transformers import ByT5Tokenizer

from difflm.constraint import RecordConstraint, record_json_schema
from difflm.datamodules.schema import infer_schema


@pytest.fixture
def table_constraint(small_table):
    schema = infer_schema(small_table)
    tokenizer = ByT5Tokenizer()
    return schema, tokenizer, RecordConstraint(schema, tokenizer)


def accepted(constraint, tokenizer, text):
    """Whether the grammar takes the whole text and then may end."""
    matcher = llguidance.LLMatcher(constraint.ll_tokenizer, constraint.grammar)
    ids = tokenizer.encode(text, add_special_tokens=False)
    return matcher.validate_tokens(ids) == len(ids) and matcher.consume_tokens(ids) and matcher.is_accepting()


def test_record_json_schema_follows_the_table_schema(small_table):
    schema = infer_schema(small_table)
    json_schema = record_json_schema(schema)
    assert list(json_schema["properties"]) == json_schema["required"] == list(small_table.columns)
    assert json_schema["additionalProperties"] is False
    age = json_schema["properties"]["age"]  # has a missing value: integer or null
    assert age == {"anyOf": [{"type": "integer", "minimum": 25, "maximum": 52}, {"type": "null"}]}
    assert json_schema["properties"]["label"] == {"enum": ["no", "yes"]}
    assert json_schema["properties"]["score"]["type"] == "number"


def test_grammar_accepts_every_real_record_and_refuses_invalid_ones(table_constraint, small_table):
    schema, tokenizer, constraint = table_constraint
    for record in small_table.to_dict("records"):
        assert accepted(constraint, tokenizer, schema.to_text(record))
    good = schema.to_text(small_table.iloc[0].to_dict())
    for bad in (good.replace('"Paris"', '"Berlin"'),  # unseen category
                good.replace('"age": 25', '"age": 99'),  # out of range
                good.replace('"age": 25', '"age": 25.5'),  # not an integer
                good.replace('"member": true', '"member": null'),  # null where the column has none
                good.replace('"score": 0.5, ', ''),  # a key missing
                good.replace('{"age": 25, "score": 0.5', '{"score": 0.5, "age": 25')):  # keys out of order
        assert not accepted(constraint, tokenizer, bad), bad


@pytest.mark.parametrize("text_format", ["array", "compact"])
def test_values_only_grammar_accepts_the_values_in_order_with_its_separators_and_nothing_else(small_table,
                                                                                               text_format):
    schema = infer_schema(small_table, text_format=text_format)
    tokenizer = ByT5Tokenizer()
    constraint = RecordConstraint(schema, tokenizer)
    for record in small_table.to_dict("records"):
        assert accepted(constraint, tokenizer, schema.to_text(record))
    good = schema.to_text(small_table.iloc[0].to_dict())  # [25, 0.5, "Paris", true, "yes"] or without the spaces
    comma = schema.separators[0]
    other_spacing = good.replace(comma, ",") if text_format == "array" else good.replace(",", ", ")
    for bad in (good.replace('"Paris"', '"Berlin"'), good.replace("25,", "99,"), good.replace("true", "null"),
                good.replace(f'0.5{comma}', ''), good.replace('"yes"]', f'"yes"{comma}"no"]'),
                good.replace(f'25{comma}0.5', f'0.5{comma}25'), other_spacing):
        assert not accepted(constraint, tokenizer, bad), bad


def test_a_prompt_that_is_not_a_record_prefix_is_refused(table_constraint):
    _, tokenizer, constraint = table_constraint
    with pytest.raises(ValueError, match="do not start a valid record"):
        constraint.start(2, tokenizer.encode('{"city": ', add_special_tokens=False))


def test_forced_runs_read_in_one_pass_decode_what_token_by_token_recompute_decodes(table_constraint):
    """Rows decode different values (a random model, a latent each), so their forced runs differ in length
    pass after pass; the ragged passes must still give each row what a whole-sequence recompute per row,
    one chosen token at a time, gives."""
    import torch

    from difflm.datamodules.records import start_token_id
    from difflm.modules.generate import generate_texts
    from difflm.modules.llm import load_llm
    from difflm.modules.projectors import build_projector

    schema, tokenizer, constraint = table_constraint
    torch.manual_seed(0)
    llm = load_llm("tiny")
    projector = build_projector("input_embed", 16, llm.config, prefix_tokens=0, output_std=3.0)
    z = torch.randn(5, 16)
    stats = {}
    texts = generate_texts(llm, projector, tokenizer, z, 400, 0, constraint=constraint, stats=stats)
    assert len(set(texts)) > 1 and all(schema.parse(text) for text in texts)
    assert stats["forced_tokens"] > stats["drawn_tokens"] and stats["forward_passes"] <= stats["drawn_tokens"]

    for row, text in enumerate(texts):
        constraint.start(1, [])
        ids = [start_token_id(tokenizer)]
        with torch.no_grad():
            while not constraint.complete(0):
                tensor = torch.tensor([ids])
                logits = llm(**projector.llm_inputs(llm, z[row:row + 1], tensor, torch.ones_like(tensor))).logits
                token = int(constraint.mask(logits[:, -1], [0]).argmax())
                ids += [token, *constraint.advance([token], [0])[0]]
        assert tokenizer.decode(ids[1:], skip_special_tokens=True) == text


def test_the_head_computes_only_the_drawable_tokens_and_the_rows_drawn_are_those_of_every_logit(table_constraint,
                                                                                               monkeypatch):
    """Sampled at temperature 1 from a seed: restricting the vocabulary head to the tokens some row may draw next
    changes what is computed, not what is drawn."""
    import contextlib

    import torch

    from difflm.modules import generate
    from difflm.modules.llm import load_llm
    from difflm.modules.projectors import build_projector

    schema, tokenizer, constraint = table_constraint
    torch.manual_seed(0)
    llm = load_llm("tiny")
    projector = build_projector("input_embed", 16, llm.config, prefix_tokens=0, output_std=3.0)
    z = torch.randn(6, 16)
    widths = []
    forward = generate.SelectedColumnsHead.forward

    def recording(head, hidden):
        widths.append(llm.config.vocab_size if head.columns is None else len(head.columns))
        return forward(head, hidden)

    monkeypatch.setattr(generate.SelectedColumnsHead, "forward", recording)
    selected = generate.generate_texts(llm, projector, tokenizer, z, 400, 1.0, torch.Generator().manual_seed(1),
                                       constraint=constraint)
    assert widths and max(widths) <= llm.config.vocab_size // 4 and all(schema.parse(text) for text in selected)
    assert llm.get_output_embeddings().__class__ is torch.nn.Linear  # the model's own head is back

    monkeypatch.setattr(generate, "selectable_head", lambda llm: contextlib.nullcontext())
    every_logit = generate.generate_texts(llm, projector, tokenizer, z, 400, 1.0, torch.Generator().manual_seed(1),
                                          constraint=constraint)
    assert selected == every_logit and len(set(selected)) > 1


def test_a_selected_columns_head_gives_those_columns_of_the_full_logits():
    import torch

    from difflm.modules.generate import SelectedColumnsHead

    torch.manual_seed(0)
    head = SelectedColumnsHead(torch.nn.Linear(8, 50))
    hidden = torch.randn(3, 8)
    full = head(hidden)
    head.columns = torch.tensor([2, 7, 49])
    assert head(hidden).shape == (3, 3)
    torch.testing.assert_close(head(hidden), full[:, [2, 7, 49]])


def test_choices_read_the_bitmask_at_the_ids_some_row_allows_and_give_every_id_past_the_limit(table_constraint):
    """Rows at different points of their records: choices(...) are the full booleans' allowed columns, read off the
    bitmask for those ids alone, or the full booleans where more ids are allowed than the limit."""
    import torch

    schema, tokenizer, constraint = table_constraint
    constraint.start(3, [])
    vocab_size = len(tokenizer)
    for row, text in ((1, '{"age": 25, "score": 0.5, "city": "'), (2, '{"age": ')):
        assert constraint.matchers[row].consume_tokens(tokenizer.encode(text, add_special_tokens=False))
    full = constraint.allowed([0, 1, 2], vocab_size)
    expected = full.any(0).nonzero().squeeze(1)
    columns, allowed = constraint.choices([0, 1, 2], vocab_size, len(expected))
    assert torch.equal(columns, expected) and torch.equal(allowed, full[:, expected])
    assert not torch.equal(allowed[0], allowed[1])  # the rows are at different places in their records
    columns, allowed = constraint.choices([0, 1, 2], vocab_size, len(expected) - 1)
    assert columns is None and torch.equal(allowed, full)
