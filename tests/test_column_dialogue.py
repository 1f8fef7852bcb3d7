"""sample.prompt.by_column: a table row written one chat turn per column, under one grammar (issue 7)."""

import json
import types

import llguidance
import pytest
import torch

from difflm.column_dialogue import ANSWER_END, ColumnDialogue, question
from difflm.constraint import _ll_tokenizer
from difflm.datamodules.records import load_run_data, start_token_id
from difflm.errors import UserError
from difflm.modules.generate import generate_texts
from difflm.modules.llm import load_llm, load_tokenizer
from difflm.modules.projectors import NoLatent
from difflm.prompting import PromptSource

# a chat template whose end of turn is the tokenizer's EOS, as SmolLM2's <|im_end|> is (no newline after it: the
# byte-level tokenizer drops newlines next to a special token)
CHAT_TEMPLATE = ("{% for m in messages %}{{ m.role }}: {{ m.content }}</s>{% endfor %}"
                 "{% if add_generation_prompt %}assistant: {% endif %}")


@pytest.fixture(scope="module")
def chat_tokenizer():
    tokenizer = load_tokenizer("tiny")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


@pytest.fixture(scope="module")
def adult(trained):
    run, _, _ = trained
    return load_run_data(run)


def test_the_dialogue_is_the_chat_of_one_question_per_column_and_reads_back_as_the_record(adult, chat_tokenizer):
    schema, frames = adult
    record = frames["train"].iloc[0]
    dialogue = ColumnDialogue(schema, chat_tokenizer)
    answers = [json.dumps(value, ensure_ascii=False) for value in schema.fields(schema.to_text(record)).values()]
    text = answers[0] + "".join(sep + answer for sep, answer in zip(dialogue.separators, answers[1:])) + ANSWER_END
    # the same text as the chat template renders for these turns, asked and answered one at a time
    turns = [{"role": "user", "content": dialogue.instruction()}]
    for column, answer in zip(schema.columns, answers):
        if column is not schema.columns[0]:
            turns.append({"role": "user", "content": question(column)})
        turns.append({"role": "assistant", "content": answer + ANSWER_END})  # each value on a line of its own
    prompt = chat_tokenizer.apply_chat_template(turns[:1], add_generation_prompt=True, tokenize=False)
    assert chat_tokenizer.apply_chat_template(turns, tokenize=False).startswith(prompt + text)
    # the grammar takes exactly that text, with the end-of-turn token where the template puts it
    matcher = llguidance.LLMatcher(_ll_tokenizer(chat_tokenizer), dialogue.grammar())
    pieces = [chat_tokenizer(piece, add_special_tokens=False).input_ids for piece in text.split("</s>")]
    tokens = [*pieces[0], *(token for piece in pieces[1:] for token in [chat_tokenizer.eos_token_id, *piece])]
    assert chat_tokenizer.eos_token_id in tokens and matcher.consume_tokens(tokens) and matcher.is_accepting()
    decoded = chat_tokenizer.decode([start_token_id(chat_tokenizer), *tokens], skip_special_tokens=True)
    assert dialogue.record_text(decoded) == schema.to_text(record)


def test_an_unfinished_dialogue_stays_as_it_is_so_the_sampler_rejects_it(adult, chat_tokenizer):
    schema, _ = adult
    dialogue = ColumnDialogue(schema, chat_tokenizer)
    unfinished = "39" + dialogue.decoded[0] + '"Private"'
    assert dialogue.record_text(unfinished) == unfinished
    unfinished = "39" + dialogue.decoded[0][:-3]
    assert dialogue.record_text(unfinished) == unfinished


def test_an_end_of_turn_that_is_also_eos_is_forced_never_drawn_so_every_row_finishes(adult, chat_tokenizer):
    schema, _ = adult
    dialogue = ColumnDialogue(schema, chat_tokenizer)
    prompt = chat_tokenizer("user: a row?</s>assistant: ", add_special_tokens=False).input_ids
    llm, eos = load_llm("tiny"), chat_tokenizer.eos_token_id
    # EOS, which ends a turn here as in SmolLM2, would be drawn wherever the grammar offered it, e.g. after a digit
    llm.lm_head.register_forward_hook(lambda module, inputs, logits: logits.index_fill_(-1, torch.tensor([eos]), 1e4))
    z = torch.zeros(6, 1, dtype=torch.long)
    texts = generate_texts(llm, NoLatent(), chat_tokenizer, z, 4000, 1.0,
                           torch.Generator().manual_seed(0), [start_token_id(chat_tokenizer)],
                           dialogue.constraint(), prompts=[prompt] * 6)
    records = [schema.parse(dialogue.record_text(text)) for text in texts]  # raises if a row is not a record
    assert len(records) == 6 and all(text.count(question(schema.columns[-1])) == 1 for text in texts)


def test_by_column_is_refused_for_records_that_are_not_table_rows():
    with pytest.raises(UserError, match="sample.prompt.by_column writes table rows, not code records"):
        PromptSource(types.SimpleNamespace(record_type="code"), None, None, "code", 2, 0, False, "cpu",
                     by_column=True)
