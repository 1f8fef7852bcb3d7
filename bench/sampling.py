"""Sampling speed and validity on one trained run, same model and latents, CPU:

(a) the reference procedure: one row at a time, no KV cache (a full forward pass over the whole sequence for
    every token), reject and retry until the row parses;
(b) batched KV-cached decoding, unconstrained, reject and retry;
(c) batched KV-cached decoding, schema-constrained, forced tokens read together in ragged passes (no padding
    computed), the vocabulary head only where a token is drawn and only for the tokens the grammar lets some row
    draw there, finished rows leaving the batch.

(a), (b) and (c) decode with the same weights (sample.weights=auto: a plain bfloat16 copy on a CPU with
AVX512-BF16). Variants of (c) show what each choice is worth: the trained 4-bit modules as they are, float32,
a larger batch (128, 256 rows), the head computing every logit where a token is drawn, the grammar's whole bitmask
unpacked each pass; and (a) on the 4-bit modules, as the
paper's code runs it. Each batched setting is timed `--repeats` times after one warm-up batch (median reported).

python bench/sampling.py [--run runs/adult] [--rows 64] [--reference-rows 3] [--only c_batched_cache_constrained ...]
                         [--out bench/results/sampling.json]
"""

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from difflm.constraint import RecordConstraint  # noqa: E402
from difflm.datamodules.records import start_token_id  # noqa: E402
from difflm.metrics.validity import parse_valid  # noqa: E402
from difflm.modules import generate  # noqa: E402
from difflm.modules.generate import sample_token  # noqa: E402
from difflm.run_dir import RunDir, atomic_write_text  # noqa: E402
from difflm.sampling import load_generator, sample_records  # noqa: E402

RESULT = Path(__file__).resolve().parent / "results" / "sampling.json"


@torch.no_grad()
def reference_row(decoder, llm, z, temperature, generator):
    """One row as the paper's reference code decodes it: no KV cache, the whole sequence every step."""
    tokenizer = decoder.tokenizer
    ids = list(decoder.hparams.prompt_ids or [start_token_id(tokenizer)])
    prompt_length, passes = len(ids), 0
    for _ in range(decoder.hparams.max_new_tokens):
        tokens = torch.tensor([ids])
        inputs = decoder.projector.llm_inputs(llm, z, tokens, torch.ones_like(tokens))
        logits = llm(**inputs).logits[:, -1]
        passes += 1
        token = int(sample_token(logits, temperature, generator))
        if token == tokenizer.eos_token_id:
            break
        ids.append(token)
    return tokenizer.decode(ids, skip_special_tokens=True), len(ids) - prompt_length, passes


def reference(schema, prior, decoder, rows, temperature, seed, weights):
    llm = decoder.decoding_llm(weights)
    generator = torch.Generator().manual_seed(seed)
    valid = generated = tokens = passes = 0
    started = time.perf_counter()
    while valid < rows:
        text, new_tokens, row_passes = reference_row(decoder, llm, prior.sample(1, generator=generator),
                                                     temperature, generator)
        generated, tokens, passes = generated + 1, tokens + new_tokens, passes + row_passes
        valid += len(parse_valid(schema, [text])[0])
        print(f"  reference ({weights}): {valid}/{rows} valid of {generated}", flush=True)
    seconds = time.perf_counter() - started
    return {"weights": weights, "valid_rows": valid, "generated": generated, "validity": valid / generated,
            "seconds": round(seconds, 2), "valid_rows_per_second": round(valid / seconds, 4),
            "tokens_per_second": round(tokens / seconds, 1), "forward_passes": passes}


@contextlib.contextmanager
def head_at_every_logit():
    """Decoding inside the block computes every logit of the vocabulary head where a token is drawn."""
    selectable = generate.selectable_head
    generate.selectable_head = lambda llm: contextlib.nullcontext()
    try:
        yield
    finally:
        generate.selectable_head = selectable


@contextlib.contextmanager
def whole_bitmask_unpacked():
    """Decoding inside the block unpacks every row's whole bitmask (all 49,152 token ids) each pass and then keeps the
    ids some row may draw, as before adfe434 (now: read at those ids alone)."""
    choices = RecordConstraint.choices

    def unpacked(constraint, rows, vocab_size, most, device="cpu"):
        allowed = constraint.allowed(rows, vocab_size, device)
        columns = allowed.any(0).nonzero().squeeze(1)
        return (None, allowed) if len(columns) > most else (columns, allowed[:, columns])

    RecordConstraint.choices = unpacked
    try:
        yield
    finally:
        RecordConstraint.choices = choices


def batched(schema, prior, decoder, rows, seed, batch_size, repeats, **decoding):
    runs = []
    for repeat in range(repeats):
        started = time.perf_counter()
        _, stats = sample_records(schema, prior, decoder, rows, seed + repeat, batch_size, max_rounds=10,
                                  progress=False, **decoding)
        runs.append((time.perf_counter() - started, stats))
    seconds, stats = sorted(runs, key=lambda run: run[0])[len(runs) // 2]
    decoding_stats = stats["decoding"]
    tokens = decoding_stats["drawn_tokens"] + decoding_stats["forced_tokens"]
    return {**{k: v for k, v in decoding.items() if k != "temperature"}, "batch_size": batch_size,
            "valid_rows": rows, "generated": stats["generated"], "validity": stats["validity"],
            "seconds": round(seconds, 2), "all_seconds": [round(run[0], 2) for run in runs],
            "valid_rows_per_second": round(rows / seconds, 4), "tokens_per_second": round(tokens / seconds, 1),
            "forward_passes": decoding_stats["forward_passes"],
            "forced_token_share": round(decoding_stats["forced_tokens"] / tokens, 3)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/adult")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--reference-rows", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--temperature", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="+", help="these settings alone (the names the result uses)")
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    schema, prior, decoder = load_generator(RunDir(args.run))
    common = dict(temperature=args.temperature, weights="auto")
    result = {"run": args.run, "threads": args.threads, "temperature": args.temperature,
              "auto_weights_dtype": str(decoder.decoding_llm("auto").dtype)}
    decoder.constraint()  # built once (about a second), as a long sampling run would
    sample_records(schema, prior, decoder, 8, 99, 8, progress=False, constrained=True, **common)  # warm-up

    def batched_with(constrained=True, scale=1, repeats=args.repeats, **changes):
        return lambda: batched(schema, prior, decoder, scale * args.rows, 0, scale * args.batch_size, repeats,
                               **dict(common, **changes), constrained=constrained)

    def inside(block, measure):
        with block():
            return measure()

    settings = {  # name: how it is measured
        "c_batched_cache_constrained": batched_with(),
        "c_head_at_every_logit": lambda: inside(head_at_every_logit, batched_with()),
        "c_whole_bitmask_unpacked": lambda: inside(whole_bitmask_unpacked, batched_with()),
        "b_batched_cache_unconstrained": batched_with(constrained=False),
        "c_float32_weights": batched_with(weights="float32"),
        "c_as_trained_4bit_weights": batched_with(weights="as_trained"),
        "c_batch_128": batched_with(scale=2, repeats=1),
        "c_batch_256": batched_with(scale=4, repeats=1),
        "a_reference": lambda: reference(schema, prior, decoder, args.reference_rows, args.temperature, 0, "auto"),
        "a_reference_as_trained_4bit": lambda: reference(schema, prior, decoder, args.reference_rows,
                                                         args.temperature, 0, "as_trained"),
    }
    unknown = sorted(set(args.only or ()) - set(settings))
    if unknown:
        parser.error(f"--only {' '.join(unknown)}: no such setting; the settings are {', '.join(settings)}")
    for name, measure in settings.items():
        if not args.only or name in args.only:
            result[name] = measure()
            print(name, result[name], flush=True)
    speed = {k: result[k]["valid_rows_per_second"] for k in result if isinstance(result[k], dict)}
    for reference_name in ("a_reference", "a_reference_as_trained_4bit"):
        if reference_name in speed:
            result[f"speedup_over_{reference_name.removeprefix('a_')}"] = {
                k: round(v / speed[reference_name], 1) for k, v in speed.items()}
    atomic_write_text(args.out, json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
