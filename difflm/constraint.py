"""Schema-constrained decoding (llguidance): at every step the decoder may only pick tokens that keep the text
a prefix of a valid record, so every finished text parses: the schema's keys in order, categories from the
training vocabulary, integers as integers and numbers within the column's range and decimals, null only where the column
has missing values, then end-of-sequence."""

import math
from functools import lru_cache

import llguidance
import llguidance.hf
import llguidance.torch
import numpy
import torch
from transformers import PreTrainedTokenizerFast

from difflm.datamodules.schema import VALUES_ONLY


def guidance_separators(separators):
    """llguidance's settings for exactly these (item, key) separators, the ones of the training texts, so a
    constrained text is tokenized as they were."""
    return {"item_separator": separators[0], "key_separator": separators[1], "whitespace_flexible": False}


def column_json_schema(column, condition=None):
    """The column's values; a condition (difflm.conditions.Condition) narrows them and rules out null."""
    low, high = column.minimum, column.maximum
    if condition is not None and condition.values is None:
        low = max(low, condition.minimum) if condition.minimum is not None else low
        high = min(high, condition.maximum) if condition.maximum is not None else high
    if column.kind == "categorical":
        value = {"enum": [c for c in column.categories if condition is None or c in condition.values]}
    elif column.kind == "boolean":
        value = {"type": "boolean"} if condition is None else {"enum": list(condition.values)}
    elif column.kind == "integer":
        value = {"type": "integer", "minimum": math.ceil(low), "maximum": math.floor(high)}
    else:
        value = {"type": "number", "minimum": low, "maximum": high}
        if column.decimals is not None:  # no more decimals than the training values have
            value["multipleOf"] = float(f"1e-{column.decimals}")
    return {"anyOf": [value, {"type": "null"}]} if column.nullable and condition is None else value


def record_json_schema(schema, conditions=()):
    """The JSON Schema of one record in the schema's text format: every column required, in the schema's order,
    nothing else; the conditioned columns limited to the values their conditions allow."""
    by_column = {c.column: c for c in conditions}
    values = [column_json_schema(c, by_column.get(c.name)) for c in schema.columns]
    separators = guidance_separators(schema.separators)
    if schema.text_format in VALUES_ONLY:
        return {"type": "array", "prefixItems": values, "items": False, "minItems": len(values),
                "maxItems": len(values), "x-guidance": separators}
    return {"type": "object", "properties": dict(zip(schema.names, values)), "required": schema.names,
            "additionalProperties": False, "x-guidance": separators}


def grammar_json_schema(schema, conditions=()):
    """The JSON Schema constrained decoding follows for a record of this schema, or None if its type has none."""
    if schema.record_type == "table":
        return record_json_schema(schema, conditions)
    spec = schema.json_schema(conditions)
    return None if spec is None else {**spec, "x-guidance": guidance_separators(schema.separators)}


def unpack_bitmask(bitmask, vocab_size):
    """(rows, vocab_size) booleans from llguidance's bitmask (bit t % 32 of int32 word t // 32): True where the
    token may be drawn; False past the grammar's vocabulary. Plain tensor ops: llguidance's own helper is
    torch.compile'd, which costs seconds per new batch size on a CPU."""
    bits = torch.arange(32, dtype=torch.int32, device=bitmask.device)
    allowed = ((bitmask.unsqueeze(-1) >> bits) & 1).bool().flatten(1)[:, :vocab_size]
    return torch.nn.functional.pad(allowed, (0, vocab_size - allowed.shape[1]))


class _ByteTokens:
    """What llguidance needs of a tokenizer that has no fast (Rust) version, e.g. the byte-level ByT5 one:
    the bytes each token id stands for, and an encoder."""

    def __init__(self, tokenizer):
        self.eos_token_id, self.bos_token_id = tokenizer.eos_token_id, None
        self.special_token_ids = list(tokenizer.all_special_ids)
        vocab = {i: tokenizer.convert_ids_to_tokens(i) for i in range(len(tokenizer))}
        self.tokens = [b"" if i in self.special_token_ids else
                       (t.encode("latin-1") if len(t) == 1 and ord(t) < 256 else t.encode()) for i, t in vocab.items()]
        self._tokenizer = tokenizer

    def __call__(self, text):
        text = text.decode("utf-8", errors="replace") if isinstance(text, bytes) else text
        return self._tokenizer.encode(text, add_special_tokens=False)


@lru_cache(maxsize=4)
def _ll_tokenizer(tokenizer):
    if isinstance(tokenizer, PreTrainedTokenizerFast):
        return llguidance.hf.from_tokenizer(tokenizer)  # ~1 s: cached
    return llguidance.LLTokenizer(llguidance.TokenizerWrapper(_ByteTokens(tokenizer)))


class RecordConstraint:
    """One matcher per row being decoded; `mask(logits, rows)` and `advance(tokens, rows)` around each step."""

    def __init__(self, schema, tokenizer, fast_forward=True, conditions=(), grammar=None):
        """The record grammar of `schema` (and `conditions`), or `grammar`, an llguidance grammar of other text."""
        self.fast_forward = fast_forward
        self.ll_tokenizer = _ll_tokenizer(tokenizer)
        self.grammar = grammar or llguidance.LLMatcher.grammar_from_json_schema(grammar_json_schema(schema, conditions))
        self.matchers = []
        self.executor = llguidance.LLExecutor()

    def start(self, rows, prompt_ids):
        """Fresh matchers for `rows` texts that begin with prompt_ids (after the start token)."""
        self.matchers = [llguidance.LLMatcher(self.ll_tokenizer, self.grammar) for _ in range(rows)]
        self.bitmask = llguidance.torch.allocate_token_bitmask(rows, self.ll_tokenizer.vocab_size)
        for matcher in self.matchers:
            if prompt_ids and matcher.consume_tokens(list(prompt_ids)) is False or matcher.is_error():
                raise ValueError(f"the prompt tokens {prompt_ids} do not start a valid record: {matcher.get_error()}")

    def allowed(self, rows, vocab_size, device="cpu"):
        """(len(rows), vocab_size) booleans: the tokens that keep each of these rows' records valid."""
        return unpack_bitmask(self._filled(rows).to(device, non_blocking=True), vocab_size)

    def choices(self, rows, vocab_size, most, device="cpu"):
        """What each of these rows may draw next, as (columns, allowed): the token ids some row may draw (sorted) and
        (len(rows), len(columns)) booleans, read off the bitmask for those ids alone; where more than `most` ids are
        allowed, (None, the full (len(rows), vocab_size) booleans)."""
        words = self._filled(rows)
        columns = bitmask_columns(words, vocab_size)
        if len(columns) > most:
            return None, unpack_bitmask(words.to(device, non_blocking=True), vocab_size)
        return columns.to(device), bits_at(words, columns).to(device, non_blocking=True)

    def _filled(self, rows):
        bitmask = self.bitmask[: len(rows)]
        bitmask.fill_(-1)
        llguidance.torch.fill_next_token_bitmask_par(self.executor, [(self.matchers[r], i) for i, r in enumerate(rows)],
                                                     self.bitmask)
        return bitmask

    def mask(self, logits, rows):
        """The logits (len(rows), V) of these rows with every token that would break their record at -inf."""
        return logits.float().masked_fill_(~self.allowed(rows, logits.shape[-1], logits.device), float("-inf"))

    def advance(self, tokens, rows):
        """Feed each row its new token (a list, aligned with rows); returns, per row, the tokens the grammar then
        forces (consumed already: the caller feeds them to the model without drawing), [] without fast_forward."""
        forced = []
        for row, token in zip(rows, tokens):
            matcher = self.matchers[row]
            if not matcher.consume_token(token):
                raise RuntimeError(f"constrained decoding produced a token the grammar refused: {matcher.get_error()}")
            run = matcher.compute_ff_tokens() if self.fast_forward and not matcher.is_stopped() else []
            if run and matcher.consume_tokens(run) is False:
                raise RuntimeError(f"the grammar refused its own forced tokens: {matcher.get_error()}")
            forced.append(run)
        return forced

    def complete(self, row):
        """Whether the row's record is finished: nothing but end-of-sequence may follow, so it needs no more passes."""
        return self.matchers[row].is_stopped()

    def forced(self, token_ids):
        """For each token of one record's text: whether constrained decoding takes it from the grammar (see `walk`)."""
        return self.walk([token_ids])[0][0]

    def walk(self, sequences, vocab_size=None):
        """How constrained decoding would produce these records: `sequences` are their tokens after the start token,
        end-of-sequence included. Returns (forced, choices). forced: per record, a flag per token, True where decoding
        takes the token from the grammar instead of drawing it: the first of the run the grammar forces there, or
        any token once the record is complete (the model's distribution there is never read). choices, with
        vocab_size (else None): what each drawn token was chosen from, as (columns: the token ids allowed at any drawn
        token, sorted; allowed: (drawn tokens in row-major order, len(columns)) booleans), each token itself allowed
        in its place. From a token the grammar refuses on, every token counts as drawn, from the whole vocabulary."""
        choosing = vocab_size is not None
        bitmask = llguidance.torch.allocate_token_bitmask(sum(map(len, sequences)) if choosing else 0,
                                                          self.ll_tokenizer.vocab_size)  # one row per token, all -1
        forced, drawn_rows, drawn_tokens, offset = [], [], [], 0
        for token_ids in sequences:
            matcher = llguidance.LLMatcher(self.ll_tokenizer, self.grammar)
            flags = []
            for index, token in enumerate(token_ids):
                if matcher.is_error() or matcher.is_stopped():
                    flags.append(not matcher.is_error())
                    continue
                run = matcher.compute_ff_tokens()
                flags.append(bool(run) and run[0] == token)
                if choosing and not flags[-1]:
                    llguidance.torch.fill_next_token_bitmask(matcher, bitmask, offset + index)
                matcher.consume_token(token)
            forced.append(flags)
            drawn = [index for index, flag in enumerate(flags) if not flag]
            drawn_rows.extend(offset + index for index in drawn)
            drawn_tokens.extend(token_ids[index] for index in drawn)
            offset += len(token_ids)
        if not choosing:
            return forced, None
        return forced, choice_columns(bitmask[drawn_rows], torch.tensor(drawn_tokens, dtype=torch.long), vocab_size)


def bitmask_columns(words, vocab_size):
    """The token ids below vocab_size that any row of a bitmask allows, sorted."""
    union = torch.from_numpy(numpy.bitwise_or.reduce(words.numpy(), axis=0, keepdims=True))
    return unpack_bitmask(union, vocab_size)[0].nonzero().squeeze(1)


def bits_at(words, columns):
    """(rows, len(columns)) booleans: each bitmask row's bit for each of these token ids."""
    return ((words[:, columns // 32] >> (columns % 32).to(torch.int32)) & 1).bool()


def choice_columns(words, tokens, vocab_size):
    """Bitmask rows (one per drawn token) -> (the token ids any row allows, sorted; booleans per row and such id),
    each row's own token allowed too."""
    columns = torch.unique(torch.cat([bitmask_columns(words, vocab_size), tokens]))
    return columns, bits_at(words, columns) | (columns == tokens.unsqueeze(1))


def record_constraint(schema, tokenizer, conditions=()):
    """The record grammar's constraint for these conditions (about a second to build); None for a record type that has
    none (code: its texts are checked after decoding, and the sampler rejects those that do not parse)."""
    return RecordConstraint(schema, tokenizer, conditions=conditions) if schema.has_grammar else None
