"""Compare structured-generation libraries on this project's workload: the Adult record's JSON Schema and the
SmolLM2 tokenizer. For each library: time to compile the grammar, time to compute the next-token mask
(median over every position of real records' token sequences), and correctness (every real record accepted
to the end; invalid records, one per failure kind, refused).

python bench/constraint_libraries.py  ->  bench/results/constraint_libraries.json
llguidance is a project dependency; the others are bench-only: pip install -r bench/requirements-constraints.txt
(xgrammar with --no-deps: it asks for triton, which it needs only on a GPU). A missing library is skipped.
"""

import json
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from difflm.constraint import record_json_schema  # noqa: E402
from difflm.datamodules.schema import infer_schema  # noqa: E402
from difflm.datamodules.sources import read_adult  # noqa: E402
from difflm.modules.llm import load_tokenizer  # noqa: E402
from difflm.run_dir import atomic_write_text  # noqa: E402

RESULT = Path(__file__).resolve().parent / "results" / "constraint_libraries.json"
RECORDS = 40  # real records replayed token by token for the mask timing


def invalid_texts(texts):
    """One invalid variant of a valid record text per failure kind (Adult: age has no missing values)."""
    text = next(t for t in texts if '"workclass": "Private"' in t)
    age = re.match(r'{"age": (\d+)', text).group(1)
    return {
        "unseen category": text.replace('"Private"', '"Spaceship"'),
        "out of range": text.replace(f'"age": {age}', '"age": 270'),
        "not an integer": text.replace(f'"age": {age}', f'"age": {age}.5'),
        "null where none": text.replace(f'"age": {age}', '"age": null'),
        "missing key": text.replace(f'"age": {age}, ', "", 1),
        "keys out of order": text.replace(f'{{"age": {age}, "workclass": "Private"',
                                          f'{{"workclass": "Private", "age": {age}'),
    }


class Llguidance:
    name = "llguidance"

    def __init__(self, tokenizer, json_schema):
        import llguidance
        import llguidance.hf
        import llguidance.torch

        self.torch_api = llguidance.torch
        self.ll_tokenizer = llguidance.hf.from_tokenizer(tokenizer)
        self.grammar = llguidance.LLMatcher.grammar_from_json_schema(json_schema)
        self.matcher_class = llguidance.LLMatcher
        self.bitmask = llguidance.torch.allocate_token_bitmask(1, self.ll_tokenizer.vocab_size)

    def new(self):
        return self.matcher_class(self.ll_tokenizer, self.grammar)

    def mask(self, state):
        self.torch_api.fill_next_token_bitmask(state, self.bitmask, 0)

    def advance(self, state, token):
        return state.consume_token(token) and not state.is_error()

    def finished(self, state):
        return state.is_accepting()


class Xgrammar:
    name = "xgrammar"

    def __init__(self, tokenizer, json_schema):
        import xgrammar as xgr

        self.xgr = xgr
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=len(tokenizer))
        compiler = xgr.GrammarCompiler(info)
        self.compiled = compiler.compile_json_schema(json.dumps(json_schema), any_whitespace=False,
                                                     separators=(", ", ": "), strict_mode=True)
        self.bitmask = xgr.allocate_token_bitmask(1, info.vocab_size)

    def new(self):
        return self.xgr.GrammarMatcher(self.compiled)

    def mask(self, state):
        state.fill_next_token_bitmask(self.bitmask)

    def advance(self, state, token):
        return state.accept_token(token)

    def finished(self, state):
        return state.is_completed() if hasattr(state, "is_completed") else state.is_terminated()


class OutlinesCore:
    name = "outlines-core"

    def __init__(self, tokenizer, json_schema):
        from outlines_core import Guide, Index, Vocabulary
        from outlines_core.json_schema import build_regex_from_schema
        from transformers.convert_slow_tokenizer import bytes_to_unicode

        byte_of = {c: b for b, c in bytes_to_unicode().items()}
        special = set(tokenizer.all_special_ids)
        tokens = {}
        for token, token_id in tokenizer.get_vocab().items():
            if token_id in special:
                continue
            as_bytes = bytes(byte_of[c] for c in token) if all(c in byte_of for c in token) else token.encode()
            tokens.setdefault(as_bytes, []).append(token_id)
        regex = build_regex_from_schema(json.dumps(json_schema), whitespace_pattern=" ?")
        self.index = Index(regex, Vocabulary(tokenizer.eos_token_id, tokens))
        self.guide_class = Guide

    def new(self):
        return self.guide_class(self.index)

    def mask(self, state):
        state.get_tokens()

    def advance(self, state, token):
        try:
            state.advance(token)
        except Exception:  # outlines-core raises on a token the guide does not allow
            return False
        return True

    def finished(self, state):
        return state.is_finished()


class LmFormatEnforcer:
    name = "lm-format-enforcer"

    def __init__(self, tokenizer, json_schema):
        from lmformatenforcer import JsonSchemaParser, TokenEnforcer, TokenEnforcerTokenizerData

        # its transformers integration does not import under transformers 5 (it imports a module that moved),
        # so the tokenizer data is built here as that integration builds it: each token's text, and whether
        # it starts a word (decoded after a "0" token it gains a leading space)
        zero = tokenizer.encode("0", add_special_tokens=False)[-1]
        special = set(tokenizer.all_special_ids)
        regular = []
        for token_id in range(len(tokenizer)):
            if token_id not in special:
                after_zero = tokenizer.decode([zero, token_id])[1:]
                regular.append((token_id, after_zero, len(after_zero) > len(tokenizer.decode([token_id]))))
        self.data = TokenEnforcerTokenizerData(regular, lambda ids: tokenizer.decode(ids).rstrip("\ufffd"),
                                               tokenizer.eos_token_id, False, len(tokenizer))
        self.eos = tokenizer.eos_token_id
        self.schema = {k: v for k, v in json_schema.items() if k != "x-guidance"}
        self.parser_class, self.enforcer_class = JsonSchemaParser, TokenEnforcer

    def new(self):
        return {"enforcer": self.enforcer_class(self.data, self.parser_class(self.schema)), "prefix": []}

    def mask(self, state):
        return state["enforcer"].get_allowed_tokens(state["prefix"])

    def advance(self, state, token):
        allowed = state["enforcer"].get_allowed_tokens(state["prefix"]).allowed_tokens
        state["prefix"].append(token)
        return token in allowed

    def finished(self, state):
        return self.eos in state["enforcer"].get_allowed_tokens(state["prefix"]).allowed_tokens


def accepts(library, token_ids):
    state = library.new()
    return all(library.advance(state, t) for t in token_ids) and library.finished(state)


def measure(library_class, tokenizer, json_schema, texts, bad):
    started = time.perf_counter()
    library = library_class(tokenizer, json_schema)
    compile_seconds = time.perf_counter() - started
    mask_seconds = []
    for text in texts[:RECORDS]:
        state = library.new()
        for token in tokenizer.encode(text, add_special_tokens=False):
            started = time.perf_counter()
            library.mask(state)
            mask_seconds.append(time.perf_counter() - started)
            library.advance(state, token)
    encoded = [tokenizer.encode(t, add_special_tokens=False) for t in texts]
    refused = {kind: not accepts(library, tokenizer.encode(t, add_special_tokens=False)) for kind, t in bad.items()}
    return {"compile_seconds": round(compile_seconds, 3),
            "median_mask_ms": round(1000 * statistics.median(mask_seconds), 4),
            "p90_mask_ms": round(1000 * statistics.quantiles(mask_seconds, n=10)[-1], 4),
            "real_records_accepted": sum(accepts(library, ids) for ids in encoded) / len(encoded),
            "invalid_refused": refused}


def main():
    torch.set_num_threads(2)
    train = read_adult("train").sample(n=3000, random_state=0)
    schema = infer_schema(train)
    texts = [schema.to_text(r) for r in train.iloc[:200].to_dict("records")]
    bad = invalid_texts(texts)
    tokenizer = load_tokenizer("smollm2")
    json_schema = record_json_schema(schema)
    result = {"tokenizer": "SmolLM2-135M", "vocab": len(tokenizer), "records": len(texts),
              "mask_timed_over_records": RECORDS, "libraries": {}}
    for library_class in (Llguidance, Xgrammar, OutlinesCore, LmFormatEnforcer):
        try:
            result["libraries"][library_class.name] = measure(library_class, tokenizer, json_schema, texts, bad)
        except ImportError as error:
            result["libraries"][library_class.name] = {"skipped": str(error)}
        print(library_class.name, result["libraries"][library_class.name], flush=True)
    atomic_write_text(RESULT, json.dumps(result, indent=2))
    print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()
