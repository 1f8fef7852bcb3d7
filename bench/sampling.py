"""Sampling speed and validity on one trained run, same model and latents, CPU:

(a) the reference procedure: one row at a time, no KV cache (a full forward pass over the whole sequence for
    every token), reject and retry until the row parses;
(b) batched KV-cached decoding, unconstrained, reject and retry;
(c) batched KV-cached decoding, schema-constrained, forced tokens read together in ragged passes (no padding
    computed), the vocabulary head only where a token is drawn, finished rows leaving the batch.

(a), (b) and (c) decode with the same weights (sample.weights=auto: a plain bfloat16 copy on a CPU with
AVX512-BF16). Variants of (c) show what each choice is worth: the trained 4-bit modules as they are, float32,
a larger batch; and (a) on the 4-bit modules, as the paper's code runs it. Each batched setting is timed
`--repeats` times after one warm-up batch (median reported).

python bench/sampling.py [--run runs/adult] [--rows 64] [--reference-rows 3]  ->  bench/results/sampling.json
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from difflm.datamodules.records import start_token_id  # noqa: E402
from difflm.metrics.validity import parse_valid  # noqa: E402
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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    schema, prior, decoder = load_generator(RunDir(args.run))
    common = dict(temperature=args.temperature, weights="auto")
    result = {"run": args.run, "threads": args.threads, "temperature": args.temperature,
              "auto_weights_dtype": str(decoder.decoding_llm("auto").dtype)}
    decoder.constraint()  # built once (about a second), as a long sampling run would
    sample_records(schema, prior, decoder, 8, 99, 8, progress=False, constrained=True, **common)  # warm-up
    settings = {
        "c_batched_cache_constrained": dict(common, constrained=True),
        "b_batched_cache_unconstrained": dict(common, constrained=False),
        "c_float32_weights": dict(common, constrained=True, weights="float32"),
        "c_as_trained_4bit_weights": dict(common, constrained=True, weights="as_trained"),
    }
    for name, decoding in settings.items():
        result[name] = batched(schema, prior, decoder, args.rows, 0, args.batch_size, args.repeats, **decoding)
        print(name, result[name], flush=True)
    result["c_batch_128"] = batched(schema, prior, decoder, 2 * args.rows, 0, 2 * args.batch_size, 1,
                                    **dict(common, constrained=True))
    print("c_batch_128", result["c_batch_128"], flush=True)
    result["a_reference"] = reference(schema, prior, decoder, args.reference_rows, args.temperature, 0, "auto")
    result["a_reference_as_trained_4bit"] = reference(schema, prior, decoder, args.reference_rows,
                                                      args.temperature, 0, "as_trained")
    print(result["a_reference"], result["a_reference_as_trained_4bit"], flush=True)
    speed = {k: result[k]["valid_rows_per_second"] for k in result if isinstance(result[k], dict)}
    result["speedup_over_reference"] = {k: round(v / speed["a_reference"], 1) for k, v in speed.items()}
    result["speedup_over_reference_as_trained_4bit"] = {
        k: round(v / speed["a_reference_as_trained_4bit"], 1) for k, v in speed.items()}
    atomic_write_text(RESULT, json.dumps(result, indent=2))
    print(json.dumps(result["speedup_over_reference"]))
    print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()
