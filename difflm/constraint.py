"""Schema-constrained decoding (llguidance): at every step the decoder may only pick tokens that keep the text
a prefix of a valid record, so every finished text parses: the schema's keys in order, categories from the
training vocabulary, integers as integers and numbers within the column's range, null only where the column
has missing values, then end-of-sequence."""

from functools import lru_cache

import llguidance
import llguidance.hf
import llguidance.torch
import torch
from transformers import PreTrainedTokenizerFast

# the exact separators of Schema.to_text, so a constrained text is tokenized as the training texts were
SEPARATORS = {"item_separator": ", ", "key_separator": ": ", "whitespace_flexible": False}


def column_json_schema(column):
    if column.kind == "categorical":
        value = {"enum": list(column.categories)}
    elif column.kind == "boolean":
        value = {"type": "boolean"}
    elif column.kind == "integer":
        value = {"type": "integer", "minimum": int(column.minimum), "maximum": int(column.maximum)}
    else:
        value = {"type": "number", "minimum": column.minimum, "maximum": column.maximum}
    return {"anyOf": [value, {"type": "null"}]} if column.nullable else value


def record_json_schema(schema):
    """The JSON Schema of one record: every column required, in the schema's order, nothing else."""
    return {"type": "object", "properties": {c.name: column_json_schema(c) for c in schema.columns},
            "required": schema.names, "additionalProperties": False, "x-guidance": SEPARATORS}


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

    def __init__(self, schema, tokenizer, fast_forward=True):
        self.fast_forward = fast_forward
        self.ll_tokenizer = _ll_tokenizer(tokenizer)
        self.grammar = llguidance.LLMatcher.grammar_from_json_schema(record_json_schema(schema))
        self.matchers = []
        self.executor = llguidance.LLExecutor()

    def start(self, rows, prompt_ids):
        """Fresh matchers for `rows` texts that begin with prompt_ids (after the start token)."""
        self.matchers = [llguidance.LLMatcher(self.ll_tokenizer, self.grammar) for _ in range(rows)]
        self.bitmask = llguidance.torch.allocate_token_bitmask(rows, self.ll_tokenizer.vocab_size)
        for matcher in self.matchers:
            if prompt_ids and matcher.consume_tokens(list(prompt_ids)) is False or matcher.is_error():
                raise ValueError(f"the prompt tokens {prompt_ids} do not start a valid record: {matcher.get_error()}")

    def mask(self, logits, active):
        """The logits (B, V) with every token that would break the record at -inf, in rows where `active`
        (the others may draw anything: they have ended and their tokens are dropped)."""
        rows = torch.nonzero(active).flatten().tolist()
        self.bitmask.fill_(-1)
        llguidance.torch.fill_next_token_bitmask_par(self.executor, [(self.matchers[r], r) for r in rows],
                                                     self.bitmask)
        logits = logits.float().contiguous()
        llguidance.torch.apply_token_bitmask_inplace(logits, self.bitmask.to(logits.device, non_blocking=True))
        return logits

    def advance(self, tokens, active):
        """Feed each active row its new token; returns, per row, the tokens the grammar then forces (consumed
        already: the caller feeds them to the model without sampling), or [] for rows that ended or without
        fast_forward."""
        fast_forward, tokens = self.fast_forward, tokens.tolist()  # one device sync, not one per row
        forced = [[] for _ in self.matchers]
        for row in torch.nonzero(active).flatten().tolist():
            matcher = self.matchers[row]
            if not matcher.consume_token(tokens[row]):
                raise RuntimeError(f"constrained decoding produced a token the grammar refused: {matcher.get_error()}")
            if fast_forward and not matcher.is_stopped():
                forced[row] = matcher.compute_ff_tokens()
                if forced[row] and matcher.consume_tokens(forced[row]) is False:
                    raise RuntimeError(f"the grammar refused its own forced tokens: {matcher.get_error()}")
        return forced
