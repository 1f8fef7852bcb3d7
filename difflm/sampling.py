"""Generate records: prior latents -> decoder text -> parse and validate against the schema. Invalid rows are
regenerated (with fresh latents) up to `max_rounds` times; fewer rows than asked is always an error."""

import math
import time
from collections import Counter
from pathlib import Path

import torch

from difflm.datamodules.schema import Schema
from difflm.errors import UserError
from difflm.metrics.validity import parse_valid
from difflm.modules.decoder import DecoderModule
from difflm.modules.generate import generate_in_batches
from difflm.modules.prior import PriorModule
from difflm.run_dir import atomic_write


class SamplingError(UserError):
    pass


def load_generator(run):
    """(schema, prior, decoder) from a run directory's best checkpoints."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    prior = PriorModule.load_from_checkpoint(run.best("prior"), map_location=device).eval()
    decoder = DecoderModule.load_from_checkpoint(run.best("decoder"), map_location=device).to(device).eval()
    return Schema.from_dict(decoder.hparams.schema), prior, decoder


def sample_records(schema, prior, decoder, n, seed=0, batch_size=32, temperature=0.5, max_rounds=10,
                   max_new_tokens=None, progress=True, constrained=False):
    """Exactly n valid records and the sampling statistics, or a SamplingError saying why not. `constrained`:
    schema-constrained decoding, so a row fails only when it runs past max_new_tokens.

    Each regeneration round draws enough rows for the missing ones at the validity seen so far (so a
    decoder with 30% validity needs a few rounds, not dozens); surplus valid rows are dropped."""
    generator = torch.Generator().manual_seed(seed)
    records, failures, generated, valid, decoding = [], Counter(), 0, 0, {}
    started = time.perf_counter()
    for round_ in range(max_rounds + 1):
        missing = n - len(records)
        if missing == 0:
            break
        draws = missing if round_ == 0 else min(math.ceil(1.2 * missing * generated / max(valid, 1)), 20 * missing)
        z = prior.sample(draws, generator=generator)
        texts = generate_in_batches(
            lambda chunk: decoder.generate(chunk, temperature, generator, max_new_tokens, constrained=constrained,
                                           stats=decoding),
            z, batch_size,
            progress, desc="sampling" if round_ == 0 else f"regenerating {missing} invalid rows")
        generated += len(texts)
        round_records, round_failures = parse_valid(schema, texts)
        valid += len(round_records)
        failures.update(round_failures)
        records.extend(round_records[:missing])
    if len(records) < n:
        reasons = ", ".join(f"{kind} ({count})" for kind, count in failures.most_common(3))
        raise SamplingError(f"only {len(records)} of {n} rows were valid after {max_rounds} rounds of regeneration "
                            f"({generated} generated); most common reasons: {reasons}. Train the decoder longer "
                            "or raise sample.max_rounds")
    seconds = time.perf_counter() - started
    stats = {"rows": n, "generated": generated, "validity": valid / generated, "seconds": round(seconds, 2),
             "rows_per_second": round(n / seconds, 3), "failures": dict(failures), "constrained": constrained,
             "decoding": decoding}
    return records, stats


def checked_output_path(out):
    """The output path, if its suffix is one we write (checked before any sampling work)."""
    out = Path(out)
    if out.suffix.lower() not in (".csv", ".jsonl"):
        raise UserError(f"out={out} must end in .csv or .jsonl")
    return out


def write_table(schema, records, out):
    """Write the records as .csv or .jsonl, atomically."""
    out = checked_output_path(out)
    frame = schema.records_to_frame(records)
    if out.suffix.lower() == ".csv":
        atomic_write(out, lambda tmp: frame.to_csv(tmp, index=False))
    else:
        atomic_write(out, lambda tmp: frame.to_json(tmp, orient="records", lines=True, force_ascii=False))
    return out
