"""SDV baselines on a run's own split, for bench/fidelity.py's table: fit TVAE, CTGAN or GaussianCopula on the run's
training split and sample K tables, saved where bench/fidelity.py --baselines reads them.

SDV pins its own sdmetrics, so it lives in a virtual environment of its own:
    python3 -m venv .venv-sdv && .venv-sdv/bin/pip install torch==2.13.0 && \\
        .venv-sdv/bin/pip install -r bench/requirements-baselines.txt
    .venv-sdv/bin/python bench/sdv_baselines.py --run runs/cpu60 --tables 5 --rows 1000 --models tvae
-> <run>/fidelity/sdv_<model>/table-<k>-<rows>rows.parquet and .json (rows, seconds, fit seconds). Fitted once per model
   (TVAE 300 epochs, CTGAN 150 epochs: the settings of issue 5's reference numbers) and seeded per table.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from difflm.metrics.density import SDTYPES, plain_frame  # noqa: E402  (light: numpy, pandas, sdmetrics)
from difflm.run_dir import RunDir, atomic_write, atomic_write_text  # noqa: E402

SYNTHESIZERS = {"tvae": ("TVAESynthesizer", {"epochs": 300}), "ctgan": ("CTGANSynthesizer", {"epochs": 150}),
                "gaussian_copula": ("GaussianCopulaSynthesizer", {})}


def main(argv):
    import sdv.single_table
    from sdv.metadata import Metadata

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--tables", type=int, default=5)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--models", default="tvae", help=f"comma-separated, of {', '.join(SYNTHESIZERS)}")
    args = parser.parse_args(argv)
    torch.set_num_threads(min(os.cpu_count(), 2))
    run = RunDir(args.run)
    train = plain_frame(pd.read_parquet(run.split("train")))
    schema = json.loads(run.schema.read_text())
    integers = [c["name"] for c in schema["columns"] if c["kind"] == "integer"]
    metadata = Metadata.load_from_dict({"METADATA_SPEC_VERSION": "V1", "tables": {"table": {"columns": {
        c["name"]: {"sdtype": SDTYPES[c["kind"]]} for c in schema["columns"]}}}})
    for name in [m for m in args.models.split(",") if m]:
        class_name, settings = SYNTHESIZERS[name]
        torch.manual_seed(0)
        started = time.perf_counter()
        synthesizer = getattr(sdv.single_table, class_name)(metadata, **settings)
        synthesizer.fit({"table": train})  # SDV 2 takes {table name: DataFrame}
        fit_seconds = round(time.perf_counter() - started, 1)
        print(f"{name}: fitted in {fit_seconds} s", flush=True)
        for seed in range(args.tables):
            torch.manual_seed(seed)
            np.random.seed(seed)
            started = time.perf_counter()
            table = synthesizer.sample(num_rows=args.rows)
            table = table["table"] if isinstance(table, dict) else table
            seconds = time.perf_counter() - started
            table[integers] = table[integers].round()
            table_path, stats_path = run.fidelity_table(f"sdv_{name}", seed, args.rows)
            atomic_write(table_path, lambda tmp, t=table: t.to_parquet(tmp, index=False))
            stats = {"rows": args.rows, "seconds": round(seconds, 2), "rows_per_second": round(args.rows / seconds, 1),
                     "validity": 1.0, "fit_seconds": fit_seconds, "synthesizer": class_name, **settings}
            atomic_write_text(stats_path, json.dumps(stats))
        print(f"{name}: {args.tables} tables of {args.rows} rows in {table_path.parent}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
