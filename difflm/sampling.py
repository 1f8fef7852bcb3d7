"""Generate records: prior latents -> decoder text -> parse and validate against the schema.

Rows are made in chunks of `batch_size`. Chunk k draws its latents and decodes with its own generator, seeded
by (seed, k), so a chunk's rows are the same whichever process makes it and in whatever order: the same seed
gives the same rows on one device or many, and an interrupted run can continue chunk by chunk. Invalid rows
are regenerated (with fresh latents) up to `max_rounds` times; fewer rows than asked is always an error."""

import math
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from difflm.column_temperature import with_target_named
from difflm.config import plain
from difflm.datamodules.record_types import schema_from_dict
from difflm.datamodules.schema import InvalidRecord
from difflm.errors import UserError
from difflm.modules.decoder import DecoderModule
from difflm.modules.prior import PriorModule, StandardNormalPrior
from difflm.prompting import prompt_generator
from difflm.run_dir import atomic_write

DECODING_KEYS = ("temperature", "column_temperature", "max_new_tokens", "constrained", "weights")


class SamplingError(UserError):
    pass


# sample.method: the stages each reads. difflm: the diffusion prior's latents -> the decoder; vae: N(0, I) latents ->
# the same decoder (what the prior adds); finetune: the decoder fine-tuned with no latent (train.py stage=finetune);
# prompt: the instruct LLM prompted with examples, no training (difflm.prompting)
METHOD_STAGES = {"difflm": ("prior", "decoder"), "vae": ("decoder",), "finetune": ("finetune",), "prompt": ()}


def method_stages(method):
    """The run stages sample.method reads, or a UserError naming the methods."""
    if method not in METHOD_STAGES:
        raise UserError(f"method='{method}' is not one of {', '.join(METHOD_STAGES)}")
    return METHOD_STAGES[method]


def load_generator(run, device=None, method="difflm", prompt=None):
    """(schema, prior, decoder) of a sampling method from a run directory's best checkpoints, on `device` (default:
    cuda if available); method=prompt takes `prompt`, the sample.prompt settings."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if method_stages(method) == ():
        return prompt_generator(run, device, prompt)
    *prior_stage, decoder_stage = method_stages(method)
    decoder = DecoderModule.load_from_checkpoint(run.best(decoder_stage), map_location=device).to(device).eval()
    if prior_stage:
        prior = PriorModule.load_from_checkpoint(run.best("prior"), map_location=device).eval()
    else:
        prior = StandardNormalPrior(decoder.hparams.model["latent_dim"], device)
    return schema_from_dict(decoder.hparams.schema), prior, decoder


def decoding_options(cfg):
    """DecoderModule.generate's keyword arguments from a config's sample section (a column temperature for `target`
    given to data.target's column)."""
    options = {key: plain(cfg["sample"][key]) for key in DECODING_KEYS}
    options["column_temperature"] = with_target_named(options["column_temperature"], cfg["data"]["target"])
    return options


def chunk_generator(seed, chunk):
    """The generator of chunk `chunk` of a sampling run seeded `seed`: independent streams for every pair."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, chunk]).generate_state(1)[0]))


def chunk_sizes(n, batch_size):
    return [min(batch_size, n - start) for start in range(0, n, batch_size)]


def accept(schema, text, conditions=()):
    """The record a text stands for, if it is valid and meets the conditions; else InvalidRecord."""
    record = schema.parse(text)
    for condition in conditions:
        if not condition.holds(record[condition.column]):
            raise InvalidRecord(f"condition not met ({condition})", repr(record[condition.column]))
    return record


def sample_chunk(schema, prior, decoder, rows, generator, batch_size, max_rounds=10, conditioning=None,
                 **decoding):
    """`rows` valid records (meeting the conditioning's conditions), the latents they were decoded from
    (rows, latent_dim) and the chunk's statistics, or a SamplingError saying why not. Each regeneration round
    draws enough rows for the missing ones at the validity seen so far (a decoder with 30% validity needs a few
    rounds, not dozens); surplus rows are dropped."""
    records, latents, failures, generated, valid, decoded = [], [], Counter(), 0, 0, {}
    conditions = conditioning.conditions if conditioning else ()
    if conditioning:
        decoding["conditions"] = conditioning.decoding_conditions
    for round_ in range(max_rounds + 1):
        missing = rows - len(records)
        if missing == 0:
            break
        draws = missing if round_ == 0 else min(math.ceil(1.2 * missing * generated / max(valid, 1)), 20 * missing)
        z = conditioning.latents(prior, draws, generator) if conditioning else prior.sample(draws, generator=generator)
        texts = [text for part in z.split(batch_size)
                 for text in decoder.generate(part, generator, decoded, **decoding)]
        generated += len(texts)
        accepted = []
        for text, latent in zip(texts, z.cpu()):
            try:
                accepted.append((accept(schema, text, conditions), latent))
            except InvalidRecord as error:
                failures[error.kind] += 1
        valid += len(accepted)
        chosen = (conditioning.choose([record for record, _ in accepted], missing, generator) if conditioning
                  else range(min(missing, len(accepted))))
        records += [accepted[i][0] for i in chosen]
        latents += [accepted[i][1] for i in chosen]
    if len(records) < rows:
        reasons = ", ".join(f"{kind} ({count})" for kind, count in failures.most_common(3))
        if failures.most_common(1)[0][0].startswith("condition not met"):
            fix = ("Use sample.condition_mode=records, guided or decoding: with constrained=true the grammar writes "
                   "the condition")
        elif not schema.has_grammar:
            fix = (f"{schema.record_type} records have no grammar, so every text must pass on its own: train the "
                   "decoder longer or raise sample.max_rounds")
        else:
            fix = "Train the decoder longer, use sample.constrained=true, or raise sample.max_rounds"
        raise SamplingError(f"only {len(records)} of {rows} rows were valid after {max_rounds} rounds of "
                            f"regeneration ({generated} generated); most common reasons: {reasons}. {fix}")
    stats = {"rows": rows, "generated": generated, "valid": valid, "failures": dict(failures), "decoding": decoded}
    return records, torch.stack(latents), stats


def merge_stats(chunks, seconds, constrained):
    """One statistics dict for a sampling run from its chunks' statistics."""
    rows, generated, valid = (sum(c[key] for c in chunks) for key in ("rows", "generated", "valid"))
    failures, decoding = Counter(), Counter()
    for chunk in chunks:
        failures.update(chunk["failures"])
        decoding.update(chunk["decoding"])
    return {"rows": rows, "generated": generated, "validity": valid / generated if generated else None,
            "seconds": round(seconds, 2), "rows_per_second": round(rows / seconds, 3) if seconds else None,
            "failures": dict(failures), "constrained": constrained, "decoding": dict(decoding)}


def sample_records(schema, prior, decoder, n, seed=0, batch_size=32, max_rounds=10, progress=True,
                   conditioning=None, **decoding):
    """Exactly n valid records and the sampling statistics, in this process (sample_to_file: on many devices).
    `conditioning`: difflm.guidance.Conditioning; `decoding`: DecoderModule.generate's options (temperature,
    constrained, weights, ...)."""
    started, records, chunks = time.perf_counter(), [], []
    with tqdm(total=n, desc="sampling", unit="row", disable=not progress) as bar:
        for chunk, rows in enumerate(chunk_sizes(n, batch_size)):
            chunk_records, _, stats = sample_chunk(schema, prior, decoder, rows, chunk_generator(seed, chunk),
                                                   batch_size, max_rounds, conditioning, **decoding)
            records += chunk_records
            chunks.append(stats)
            bar.update(rows)
    return records, merge_stats(chunks, time.perf_counter() - started, decoding.get("constrained", False))


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
