"""Sampling temperature by column: each drawn token gets the temperature of the column its record has reached."""

import json
import re

import pandas as pd
import pytest
import torch
from transformers import ByT5Tokenizer

from difflm.column_temperature import column_temperatures, decoding_temperature, with_target_named
from difflm.columns import ColumnWeights, TokenTexts, token_columns
from difflm.config import compose
from difflm.constraint import RecordConstraint
from difflm.datamodules.schema import VALUES_ONLY, infer_schema
from difflm.datamodules.text_schema import TextSchema
from difflm.errors import UserError
from difflm.modules.generate import generate_texts, sample_token
from difflm.modules.llm import load_llm
from difflm.modules.projectors import build_projector
from difflm.sampling import decoding_options

# separators and quotes inside a category must not move the column on
TRICKY = pd.DataFrame({"age": [25, 38], "score": [0.5, 1.25], "city": ['Paris, "TX"', "Lyon [x]"],
                       "member": [True, False], "label": ["yes", "no"]})


def expected_columns(schema, record):
    """The column of each character of the record's text, for the token that starts there: a separator decides
    that the value before it has ended, so it is that value's; the opening bracket is the first column's."""
    columns, last = [0], len(schema.names) - 1
    for index, column in enumerate(schema.columns):
        value = json.dumps(record[column.name], ensure_ascii=False)
        item, key = schema.separators
        piece = value if schema.text_format in VALUES_ONLY else f"{json.dumps(column.name)}{key}{value}"
        columns += ([index - 1] + [index] * (len(item) - 1) if index else []) + [index] * len(piece)
    return columns + [last]


def test_a_columns_name_wins_over_its_kind_which_wins_over_the_default(small_table):
    schema = infer_schema(small_table)  # age integer, score float, city categorical, member boolean, label categorical
    assert column_temperatures(schema, 1.0, {"categorical": 1.2, "label": 0.7, "float": 0}) == [1.0, 0, 1.2, 1.0, 0.7]


def test_target_is_the_column_downstream_evaluation_predicts(tmp_path):
    assert with_target_named({"target": 0.7, "categorical": 1.1}, "income") == {"income": 0.7, "categorical": 1.1}
    assert with_target_named({"target": 0.7, "income": 0.9}, "income") == {"income": 0.9}  # its own entry wins
    assert with_target_named({"target": 0.7, "float": 1.2}, None) == {"float": 1.2}  # no target: no column to give
    cfg = compose([f"run={tmp_path}", "data=adult", "sample.column_temperature.target=0.7"])
    assert decoding_options(cfg)["column_temperature"] == {"income": 0.7}


@pytest.mark.parametrize("by_column, message", [
    ({"town": 1.1}, "'town' is neither a column (age, score, city, member, label) nor a column kind"),
    ({"city": -0.5}, "sample.column_temperature.city must be a number >= 0, got -0.5"),
    ({"city": "hot"}, "must be a number >= 0, got 'hot'")])
def test_bad_entries_are_named(small_table, by_column, message):
    with pytest.raises(UserError, match=re.escape(message)):
        column_temperatures(infer_schema(small_table), 1.0, by_column)


def test_records_without_columns_sample_at_the_one_temperature():
    assert column_temperatures(TextSchema("code"), 1.0, {"categorical": 1.1}) is None
    assert decoding_temperature(TextSchema("tool"), None, 0.8, {"categorical": 1.1}) == 0.8


@pytest.mark.parametrize("text_format", ["array", "object", "compact"])
def test_every_token_gets_the_temperature_of_the_column_it_is_in(text_format):
    schema = infer_schema(TRICKY, text_format=text_format)
    tokenizer = ByT5Tokenizer()  # one token a byte: every position of the text is a token boundary
    temperatures = decoding_temperature(schema, tokenizer, 1.0, {name: i / 10 for i, name in enumerate(schema.names)})
    for record in TRICKY.to_dict("records"):
        ids = tokenizer.encode(schema.to_text(record), add_special_tokens=False)
        temperatures.start(1, ids[:1])  # the opening bracket as the prompt, the rest read as drawn
        seen = [0]
        for token in ids[1:]:
            seen.append(round(temperatures.at([0])[0] * 10))
            temperatures.advance([0], [[token]])
        assert seen == expected_columns(schema, record)


@pytest.mark.parametrize("text_format", ["array", "object", "compact"])
def test_training_weighs_the_tokens_of_the_columns_sampling_reads(text_format):
    schema = infer_schema(TRICKY, text_format=text_format)
    tokenizer = ByT5Tokenizer()
    last = len(schema.names) - 1
    for record in TRICKY.to_dict("records"):
        ids = tokenizer.encode(schema.to_text(record), add_special_tokens=False) + [tokenizer.eos_token_id]
        expected = expected_columns(schema, record) + [last]  # the end of the record is the last column's
        assert token_columns(TokenTexts(tokenizer), ids) == expected
        [weights] = ColumnWeights(tokenizer, 2, 4.0)([ids])  # city: quotes, a comma and a bracket inside its values
        assert weights == [4.0 if column == 2 else 1.0 for column in expected]


def test_rows_at_temperature_zero_are_greedy_and_the_others_draw_as_they_would_alone():
    logits, temperatures = torch.randn(6, 50), torch.tensor([1.0, 0, 1.0, 0, 1.0, 1.0])
    together = sample_token(logits, temperatures, torch.Generator().manual_seed(0))
    alone = sample_token(logits, 1.0, torch.Generator().manual_seed(0))
    greedy = temperatures == 0
    assert torch.equal(together[greedy], logits.argmax(-1)[greedy])
    assert torch.equal(together[~greedy], alone[~greedy])


def test_decoding_by_column_matches_one_temperature_when_every_column_has_it(small_table):
    """Every kind at 0 over a hot default decodes what temperature 0 decodes, and every kind at 3 over 0 what 3
    decodes: the per-row temperatures reach the sampler, for every column."""
    schema = infer_schema(small_table, text_format="array")
    tokenizer = ByT5Tokenizer()
    torch.manual_seed(0)
    llm = load_llm("tiny")
    projector = build_projector("input_embed", 16, llm.config, prefix_tokens=0, output_std=3.0)
    z = torch.randn(6, 16)
    kinds = ("integer", "float", "categorical", "boolean")

    def decode(temperature, seed=0):
        return generate_texts(llm, projector, tokenizer, z, 400, temperature, torch.Generator().manual_seed(seed),
                              constraint=RecordConstraint(schema, tokenizer))

    assert decode(decoding_temperature(schema, tokenizer, 3.0, dict.fromkeys(kinds, 0))) == decode(0)
    hot = decode(3.0)
    assert decode(decoding_temperature(schema, tokenizer, 0, dict.fromkeys(kinds, 3.0))) == hot != decode(0)
    first_hot = decode(decoding_temperature(schema, tokenizer, 0, {"age": 3.0}))
    assert [schema.parse(t)["age"] for t in first_hot] == [schema.parse(t)["age"] for t in hot]
