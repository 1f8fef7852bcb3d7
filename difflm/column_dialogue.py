"""method=prompt, column by column (sample.prompt.by_column, the field's sample-wise decomposition): the LLM writes a
table row in one chat turn per column, each turn answering the question for one column with the row so far in its
context. The user's turns are known in advance, so one grammar holds the whole dialogue: each column's value as JSON
(constrained like that column of a record) on a line of its own, then the end of the assistant's turn, the next
question and the start of the next answer, which the grammar forces and the decoder reads in one pass without drawing
them. One KV-cached decoding of the dialogue is therefore the same as asking the questions one call at a time, with
no prompt read twice. The answers are then assembled into the row's record text.

The line break ends a number as a comma does in a record: llguidance 1.x fails on a number ended by a drawn special
token, such as SmolLM2's end of turn, which is also its EOS (tests/test_column_dialogue.py)."""

import json
import re

import llguidance

from difflm.constraint import column_json_schema, RecordConstraint

ANSWER_MARK = "\x1e"  # stands for an answer while the chat template renders the turns around it
ANSWER_END = "\n"  # after every answer's value


def question(column):
    return f"Its {column.name}?"


def turn_separator(tokenizer, text):
    """What follows an assistant answer up to the next answer: the end of its turn, the user's `text` and the start
    of the next assistant turn, in the tokenizer's chat template (plain lines for a model without one)."""
    if not getattr(tokenizer, "chat_template", None):
        return f"\n{text}\n"
    turns = [{"role": "user", "content": "?"}, {"role": "assistant", "content": ANSWER_MARK},
             {"role": "user", "content": text}]
    rendered = tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=False)
    return rendered[rendered.index(ANSWER_MARK) + len(ANSWER_MARK):]


def _lark_text(text, special_ids):
    """A Lark sequence matching `text`, its special tokens (e.g. <|im_end|>) as those tokens, the rest as strings."""
    if not special_ids:
        return json.dumps(text)
    parts = re.split("(" + "|".join(map(re.escape, special_ids)) + ")", text)
    return " ".join(f"<[{special_ids[p]}]>" if p in special_ids else json.dumps(p) for p in parts if p)


class ColumnDialogue:
    """The dialogue's grammar for a table schema, and the record its decoded text stands for."""

    def __init__(self, schema, tokenizer):
        self.schema, self.tokenizer = schema, tokenizer
        self.special_ids = {t: i for t, i in zip(tokenizer.all_special_tokens, tokenizer.all_special_ids)}
        self.separators = [ANSWER_END + turn_separator(tokenizer, question(c)) for c in schema.columns[1:]]
        # the separators as they read once decoded (special tokens skipped)
        self.decoded = [re.sub("|".join(map(re.escape, self.special_ids)), "", s) if self.special_ids else s
                        for s in self.separators]
        self.separator_tokens = sum(len(tokenizer(s, add_special_tokens=False).input_ids) for s in self.separators)

    def instruction(self):
        """The end of the first user turn: how to answer, and the first column's question."""
        return ("Write the new row one column at a time: answer each question with that column's value only, as "
                f"JSON. {question(self.schema.columns[0])}")

    def grammar(self, conditions=()):
        by_column = {c.column: c for c in conditions}
        values = [f"%json {json.dumps(column_json_schema(c, by_column.get(c.name)))}" for c in self.schema.columns]
        rules = [f"start: {' '.join(f'v{k}' if k == 0 else f's{k} v{k}' for k in range(len(values)))} "
                 f"{json.dumps(ANSWER_END)}"]
        rules += [f"v{k}: {value}" for k, value in enumerate(values)]
        rules += [f"s{k + 1}: {_lark_text(s, self.special_ids)}" for k, s in enumerate(self.separators)]
        return llguidance.grammar_from("lark", "\n".join(rules) + "\n")

    def constraint(self, conditions=()):
        return RecordConstraint(self.schema, self.tokenizer, grammar=self.grammar(conditions))

    def record_text(self, text):
        """The record text of a decoded dialogue; an unfinished dialogue as it is (the sampler rejects it)."""
        decoder, values, position = json.JSONDecoder(), [], 0
        for k in range(len(self.schema.columns)):
            if k:
                if not text.startswith(self.decoded[k - 1], position):
                    return text
                position += len(self.decoded[k - 1])
            try:
                value, position = decoder.raw_decode(text, position)
            except json.JSONDecodeError:
                return text
            values.append(value)
        return self.schema.to_text(dict(zip(self.schema.names, values)))
