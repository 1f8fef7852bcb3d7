"""Conditional sampling on one trained run: for each condition and each way of meeting it,
- records:  4 (and 8) rows decoded per row kept, the grammar fixing the value, resampled by p(condition | the
            columns written before it), a classifier fitted on the real training rows;
- guided:   latents resampled towards p(z | condition) (a latent classifier) and the grammar fixes the value;
- decoding: unconditional latents, the grammar alone fixes the value;
- reject:   unconditional latents and decoding, rows that miss the condition regenerated (reject-until-satisfied),
the share of output rows that meet the condition, how many rows were generated per row kept, rows per second,
and how close the other columns are to the real rows that meet the condition: SDMetrics column-shape error
(%, lower is better) against the real conditional rows, next to the same error against all real rows. Two
references at the same number of rows: real rows that meet the condition (the floor: sampling noise alone)
and real rows drawn regardless of it (what ignoring the condition scores).

python bench/conditional.py [--run runs/adult] [--rows 128] [--modes records decoding ...] [--temperature T]
    ->  bench/results/conditional.json
Decoding follows the run's sample config (temperature, weights), as sample.py would; every mode draws the same
number of rows (reject included, with sample.max_rounds regeneration rounds).
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from difflm.conditions import parse_conditions, satisfied  # noqa: E402
from difflm.config import compose  # noqa: E402
from difflm.datamodules.records import load_run_data  # noqa: E402
from difflm.datamodules.schema import Schema  # noqa: E402
from difflm.guidance import make_conditioning  # noqa: E402
from difflm.latents import cached_latents  # noqa: E402
from difflm.metrics.density import density_errors  # noqa: E402
from difflm.run_dir import RunDir, atomic_write_text  # noqa: E402
from difflm.sampling import SamplingError, decoding_options, load_generator, sample_records  # noqa: E402

RESULT = Path(__file__).resolve().parent / "results" / "conditional.json"
CONDITIONS = {"income": ">50K", "sex": "Female"}


def shape_error(schema, conditioned, real, synthetic):
    """Column-shape error (%) over the columns that are not conditioned."""
    others = Schema([c for c in schema.columns if c.name not in conditioned])
    return density_errors(others, real[others.names], synthetic[others.names])["shape_error"]


def real_references(schema, frames, column, value, rows, draws=5):
    """Shape error vs the real conditional rows of `rows` real rows that meet the condition and of `rows`
    real rows drawn regardless (means of `draws` draws)."""
    conditions = parse_conditions(schema, {column: value})
    train = frames["train"]
    meeting = train[satisfied(conditions, train)]
    errors = {"real_rows_meeting_it": [], "real_rows_regardless": []}
    for draw in range(draws):
        for key, pool in (("real_rows_meeting_it", meeting), ("real_rows_regardless", train)):
            errors[key].append(shape_error(schema, {column}, meeting, pool.sample(rows, random_state=draw)))
    return {key: round(sum(values) / draws, 2) for key, values in errors.items()}


def run_mode(schema, prior, decoder, frames, latents, column, value, mode, oversample, rows, max_rounds, decoding):
    conditions = parse_conditions(schema, {column: value})
    conditioning = make_conditioning(conditions, mode, oversample, schema, frames["train"], latents)
    started = time.perf_counter()
    try:
        records, stats = sample_records(schema, prior, decoder, rows, 0, 64, max_rounds, progress=False,
                                        conditioning=conditioning, **decoding)
    except SamplingError as error:
        return {"mode": mode, "rows": rows, "failed": str(error), "seconds": round(time.perf_counter() - started, 1)}
    seconds = time.perf_counter() - started
    synthetic = schema.records_to_frame(records)
    real_conditional = frames["train"][satisfied(conditions, frames["train"])]
    return {"mode": mode, "rows": rows, "generated": stats["generated"],
            "generated_per_row": round(stats["generated"] / rows, 2),
            "meets_condition": float(satisfied(conditions, synthetic).mean()),
            "seconds": round(seconds, 1), "rows_per_second": round(rows / seconds, 3),
            "shape_error_vs_real_conditional": shape_error(schema, {column}, real_conditional, synthetic),
            "shape_error_vs_all_real": shape_error(schema, {column}, frames["train"], synthetic),
            "oversample": conditioning.oversample, "classifier_auc": conditioning.describe()["classifier_auc"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/adult")
    parser.add_argument("--rows", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=None, help="default: the run's sample.temperature")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--modes", nargs="+", default=["records", "records_x8", "guided", "decoding", "reject"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run = RunDir(args.run)
    cfg = compose([f"run={run.root}"])
    schema, prior, decoder = load_generator(run)
    _, frames = load_run_data(run)
    latents = cached_latents(run, schema, frames, cfg.prior.encode_batch_size)["train"][0]
    decoding = {**decoding_options(cfg), "constrained": True}
    if args.temperature is not None:
        decoding["temperature"] = args.temperature
    result = {"run": args.run, "threads": args.threads, "rows": args.rows, "decoding": decoding}
    for column, value in CONDITIONS.items():
        real_share = float((frames["train"][column] == value).mean())
        entry = {"real_share": round(real_share, 3),
                 "shape_error_references": real_references(schema, frames, column, value, args.rows)}
        print(column, value, entry, flush=True)
        for name, mode, oversample in (("records", "records", 4), ("records_x8", "records", 8),
                                       ("guided", "guided", 20), ("decoding", "decoding", 1),
                                       ("reject", "reject", 1)):
            if name not in args.modes:
                continue
            entry[name] = run_mode(schema, prior, decoder, frames, latents, column, value, mode, oversample,
                                   args.rows, cfg.sample.max_rounds, decoding)
            print(column, value, name, entry[name], flush=True)
            result[f"{column}={value}"] = entry
            atomic_write_text(RESULT, json.dumps(result, indent=2))  # after each mode: a long run keeps what it did
    print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()
