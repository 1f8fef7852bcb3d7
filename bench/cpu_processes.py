"""One process of two threads against two ddp processes of one thread each, on a 2-core CPU: seconds per decoder
step (the same 8 rows a step: batch 8 in one process, 4 in each of two) and rows per second of sampling (--rows 0:
not measured), each setting timed in its own run started from one run's VAE and prior. The settings alternate
--repeats times, so a host whose speed drifts (a shared virtual machine) slows both alike; the speedups are the
medians of each repeat's ratio.

python bench/cpu_processes.py --run runs/cpu60 [--steps 40] [--rows 1024] [--repeats 1] [--name <machine>]
                              [train.py overrides]
-> bench/results/cpu_processes[-<name>].json
"""

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from difflm.run_dir import atomic_write_text  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SETTINGS = {"1 process x 2 threads": (1, "auto", 8), "2 ddp processes x 1 thread": (2, "ddp", 4)}


def run(command):
    done = subprocess.run([sys.executable, *command], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def measure(upstream, folder, devices, strategy, batch, steps, rows, overrides):
    trainer = [f"trainer.devices={devices}", f"trainer.strategy={strategy}", "trainer.accelerator=cpu",
               "trainer.enable_progress_bar=false"]
    decoder_run = folder / f"decoder-{devices}"
    shutil.rmtree(decoder_run, ignore_errors=True)
    run(["train.py", "stage=decoder", f"run={decoder_run}", f"upstream={upstream}", *overrides, *trainer,
         f"decoder.batch_size={batch}", "decoder.max_minutes=null", "training_minutes=null",
         f"decoder.max_steps={steps}", f"decoder.val_every_n_steps={steps}", "evaluation.rows=0", "logger=none"])
    metrics = json.loads((decoder_run / "decoder" / "metrics.json").read_text())
    result = {"decoder_seconds_per_step": metrics["seconds_per_step"], "decoder_steps": metrics["steps"]}
    if rows:
        out = folder / f"rows-{devices}.csv"
        out.unlink(missing_ok=True)
        said = run(["sample.py", f"run={decoder_run}", f"n={rows}", f"out={out}", "seed=0", *trainer])
        result["sampling_rows_per_second"] = float(re.search(r"([\d.]+) rows/s", said).group(1))
    return result


def median_ratio(repeats, key, faster_is_lower):
    ratios = []
    for one, two in repeats:
        if key in one:
            ratios.append(one[key] / two[key] if faster_is_lower else two[key] / one[key])
    return round(statistics.median(ratios), 3) if ratios else None


def cpu_name():
    cpuinfo = Path("/proc/cpuinfo")
    names = re.findall(r"model name\s*: (.*)", cpuinfo.read_text()) if cpuinfo.is_file() else []
    return names[0] if names else platform.machine()


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a run with trained vae and prior stages")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rows", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--name")
    args, overrides = parser.parse_known_args(argv)
    (ROOT / "runs").mkdir(exist_ok=True)
    repeats = []
    with tempfile.TemporaryDirectory(dir=ROOT / "runs") as folder:
        for _ in range(args.repeats):
            repeats.append([measure(Path(args.run).resolve(), Path(folder), *setting, args.steps, args.rows, overrides)
                            for setting in SETTINGS.values()])
            print(json.dumps(repeats[-1]), flush=True)
    result = {"settings": list(SETTINGS), "repeats": repeats,
              "decoder_speedup": median_ratio(repeats, "decoder_seconds_per_step", True),
              "sampling_speedup": median_ratio(repeats, "sampling_rows_per_second", False),
              "steps": args.steps, "rows": args.rows, "overrides": overrides,
              "machine": f"{cpu_name()}, {os.cpu_count()} cores"}
    out = RESULTS / f"cpu_processes{'-' + args.name if args.name else ''}.json"
    atomic_write_text(out, json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
