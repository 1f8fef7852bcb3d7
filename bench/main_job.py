"""Time and peak memory of the README's main job (train all stages, sample, summarise), written as JSON.

python bench/main_job.py [run=runs/bench-main] [any train.py overrides]
-> bench/results/main_job.json: wall seconds, peak RSS, seconds and median seconds per step of each stage,
   sampling validity and rows/s, the machine and the config overrides.
"""

import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from difflm import __version__  # noqa: E402
from difflm.config import compose  # noqa: E402
from difflm.errors import UserError, exit_on_user_error  # noqa: E402
from difflm.pipeline import train  # noqa: E402
from difflm.run_dir import atomic_write_text  # noqa: E402

RESULT = Path(__file__).resolve().parent / "results" / "main_job.json"


@exit_on_user_error
def main(argv):
    argv = argv if any(a.startswith("run=") for a in argv) else ["run=runs/bench-main", *argv]
    cfg = compose(["stage=all", *argv])
    if Path(cfg.run).exists():
        raise UserError(f"{cfg.run} exists: a timing needs a fresh run directory (delete it or pass another run=)")
    started = time.perf_counter()
    result = train(cfg)
    result.update(
        wall_seconds=round(time.perf_counter() - started, 1),
        peak_rss_gib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        overrides=argv, difflm=__version__, torch=torch.__version__, threads=torch.get_num_threads(),
        machine=f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
    )
    atomic_write_text(RESULT, json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
