"""Conditional sampling on one trained run: for each condition and each way of meeting it,
- guided:   latents resampled towards p(z | condition) (a latent classifier) and the grammar fixes the value;
- decoding: unconditional latents, the grammar alone fixes the value;
- reject:   unconditional latents and decoding, rows that miss the condition regenerated (reject-until-satisfied),
the share of output rows that meet the condition, how many rows were generated per row kept, rows per second,
and how close the other columns are to the real rows that meet the condition: SDMetrics column-shape error
(%, lower is better) against the real conditional rows, next to the same error against all real rows.

python bench/conditional.py [--run runs/adult] [--rows 64]  ->  bench/results/conditional.json
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from difflm.conditions import parse_conditions, satisfied  # noqa: E402
from difflm.datamodules.records import load_run_data  # noqa: E402
from difflm.datamodules.schema import Schema  # noqa: E402
from difflm.guidance import make_conditioning  # noqa: E402
from difflm.metrics.density import density_errors  # noqa: E402
from difflm.run_dir import RunDir, atomic_write_text  # noqa: E402
from difflm.sampling import SamplingError, load_generator, sample_records  # noqa: E402

RESULT = Path(__file__).resolve().parent / "results" / "conditional.json"
CONDITIONS = {"income": ">50K", "sex": "Female"}


def shape_error(schema, conditioned, real, synthetic):
    """Column-shape error (%) over the columns that are not conditioned."""
    others = Schema([c for c in schema.columns if c.name not in conditioned])
    return density_errors(others, real[others.names], synthetic[others.names])["shape_error"]


def run_mode(schema, prior, decoder, frames, latents, column, value, mode, rows, max_rounds, decoding):
    conditions = parse_conditions(schema, {column: value})
    conditioning = make_conditioning(conditions, mode, 20, frames["train"], latents)
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
            "latent_classifier_auc": conditioning.guide.auc if conditioning.guide else None}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/adult")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--reject-rows", type=int, default=16)
    parser.add_argument("--reject-rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run = RunDir(args.run)
    schema, prior, decoder = load_generator(run)
    _, frames = load_run_data(run)
    latents = torch.load(run.latents, weights_only=False)["latents"]["train"][0]
    decoding = dict(temperature=0.5, constrained=True, weights="auto")
    result = {"run": args.run, "threads": args.threads, "rows": args.rows}
    for column, value in CONDITIONS.items():
        real_share = float((frames["train"][column] == value).mean())
        entry = {"real_share": round(real_share, 3)}
        for mode in ("guided", "decoding", "reject"):
            rows = args.reject_rows if mode == "reject" else args.rows
            rounds = args.reject_rounds if mode == "reject" else 10
            entry[mode] = run_mode(schema, prior, decoder, frames, latents, column, value, mode, rows, rounds,
                                   decoding)
            print(column, value, entry[mode], flush=True)
        result[f"{column}={value}"] = entry
    atomic_write_text(RESULT, json.dumps(result, indent=2))
    print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()
