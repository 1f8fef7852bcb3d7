"""Curate a synthetic file: python curate.py run=runs/adult in=synthetic.csv out=curated.csv [seed=0]
[curate.<key>=...], e.g. curate.quality_drop=0.1 curate.near_copies=false.
Drops invalid records, duplicates, exact and near copies of the run's training records and, when asked, the share a
real-vs-synthetic classifier finds most synthetic (difflm/curation.py); writes the kept records to out= and what
each filter dropped to <out>.curation.json."""

import json
import sys
from pathlib import Path

import pandas as pd

from difflm.config import compose, parse_overrides
from difflm.curation import FILTERS, curate
from difflm.datamodules.records import load_run_data
from difflm.errors import UserError, exit_on_user_error
from difflm.run_dir import RunDir, atomic_write_text
from difflm.sampling import checked_output_path, write_table

CURATE_ARGS = ("in", "out", "seed")


def read_synthetic(schema, path):
    """A synthetic .csv / .jsonl file as a frame of the schema's columns (categories read as text)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"in={path} not found: give the synthetic .csv or .jsonl file to curate")
    text_columns = {c.name: str for c in getattr(schema, "columns", ()) if c.kind == "categorical"}
    try:
        if path.suffix.lower() == ".csv":
            frame = pd.read_csv(path, dtype=text_columns)
        elif path.suffix.lower() == ".jsonl":
            frame = pd.read_json(path, lines=True, dtype=False)
        else:
            raise UserError(f"in={path} must end in .csv or .jsonl")
    except UserError:
        raise
    except Exception as error:  # pandas raises many types for a file that is not a table
        raise UserError(f"in={path} is not a readable table: {str(error).splitlines()[0]}") from None
    missing = [name for name in schema.names if name not in frame.columns]
    if missing:
        raise UserError(f"in={path} has no column '{missing[0]}': the run's records have {', '.join(schema.names)}")
    return frame[schema.names]


@exit_on_user_error
def main(argv):
    args = dict(parse_overrides(argv))
    for key in ("run", "in", "out"):
        if key not in args:
            raise UserError(f"{key}= is required: python curate.py run=<run> in=<synthetic file> out=<curated file>")
    run = RunDir(args["run"])
    if not run.config.is_file():
        raise UserError(f"{run.root} is not a run directory (no config.yaml): train one with train.py first")
    out = checked_output_path(args["out"])
    cfg = compose([arg for arg in argv if arg.partition("=")[0] not in CURATE_ARGS])
    schema, frames = load_run_data(run)
    curated, report = curate(schema, read_synthetic(schema, args["in"]), frames, cfg.curate, args.get("seed", 0))
    write_table(schema, curated.to_dict("records"), out)
    report_path = out.with_name(out.name + ".curation.json")
    atomic_write_text(report_path, json.dumps({"in": str(args["in"]), "out": str(out), **report}, indent=2))
    counts = ", ".join(f"{name} {report['dropped'][name]}" for name in FILTERS if name in report["dropped"])
    print(f"kept {report['kept_rows']} of {report['input_rows']} records ({counts} dropped); "
          f"wrote {out}, {report_path}")


if __name__ == "__main__":
    main(sys.argv[1:])
