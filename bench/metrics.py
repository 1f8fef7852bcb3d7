"""Time each metric on the full Adult tables, so the evaluation's cost per call is known.

python bench/metrics.py [--grid]  ->  bench/results/metrics.json
Real train = adult.data (32,561 rows); 'synthetic' = adult.test (16,281 rows, a stand-in of the right shape);
test = adult.test. Each timing is the median of --repeats runs on one process (2 threads).
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from difflm.datamodules.schema import infer_schema  # noqa: E402
from difflm.datamodules.sources import read_adult  # noqa: E402
from difflm.evaluation import privacy_splits  # noqa: E402
from difflm.metrics.coverage import alpha_precision_beta_recall  # noqa: E402
from difflm.metrics.density import density_errors  # noqa: E402
from difflm.metrics.detection import c2st_auc  # noqa: E402
from difflm.metrics.privacy import dcr_share, exact_copy_rate  # noqa: E402
from difflm.metrics.utility import mle  # noqa: E402
from difflm.run_dir import atomic_write_text  # noqa: E402

RESULT = Path(__file__).resolve().parent / "results" / "metrics.json"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", action="store_true", help="also time the 72-setting MLE grid (minutes)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    train, test = read_adult("train"), read_adult("test")
    schema = infer_schema(train)
    synthetic = test
    train_part, holdout, _ = privacy_splits({"train": train, "test": test}, 0)
    metrics = {
        "mle_fast": lambda: mle(schema, synthetic, test, "income"),
        "density": lambda: density_errors(schema, train, synthetic),
        "dcr_share": lambda: dcr_share(schema, synthetic, train_part, holdout),
        "exact_copy_rate": lambda: exact_copy_rate(synthetic, train),
        "c2st_auc": lambda: c2st_auc(schema, train, synthetic),
        "alpha_precision_beta_recall": lambda: alpha_precision_beta_recall(schema, train, synthetic),
    }
    if args.grid:
        metrics["mle_grid"] = lambda: mle(schema, synthetic, test, "income", grid=True)
    result = {"rows": {"real_train": len(train), "synthetic": len(synthetic), "dcr_halves": len(holdout)},
              "threads": torch.get_num_threads(), "median_seconds": {}, "values": {}}
    for name, compute in metrics.items():
        times = []
        for _ in range(1 if name == "mle_grid" else args.repeats):
            started = time.perf_counter()
            value = compute()
            times.append(time.perf_counter() - started)
        result["median_seconds"][name] = round(statistics.median(times), 3)
        result["values"][name] = value
        print(f"{name:16s} {result['median_seconds'][name]:8.3f} s", flush=True)
    atomic_write_text(RESULT, json.dumps(result, indent=2, default=str))
    print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()
