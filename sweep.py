"""Run a sweep file without a W&B server: python sweep.py configs/sweeps/vae.yaml [method=grid|random] [count=8]
[seed=0] [any train.py override for every trial, e.g. model=tiny]. Trials run one after another, each logged
offline under the group sweep-<name>; <sweep dir>/summary.md and summary.json rank them by the sweep's metric.
Run it again to add trials or to finish an interrupted sweep: finished trials are kept."""

import sys

from difflm.config import parse_overrides
from difflm.errors import UserError, exit_on_user_error
from difflm.sweep import run_sweep

RUNNER_ARGS = ("method", "count", "seed")


@exit_on_user_error
def main(argv):
    if not argv or "=" in argv[0]:
        raise UserError("the first argument is the sweep file, e.g. python sweep.py configs/sweeps/vae.yaml")
    ours = [arg for arg in argv[1:] if arg.partition("=")[0] in RUNNER_ARGS]
    options = dict(parse_overrides(ours))
    count, seed = options.get("count"), options.get("seed", 0)
    if count is not None and (not isinstance(count, int) or count < 1):
        raise UserError(f"count={count!r} must be a positive integer")
    extra = [arg for arg in argv[1:] if arg not in ours]
    summary, folder = run_sweep(argv[0], options.get("method"), count, seed, extra)
    print((folder / "summary.md").read_text())
    best = summary["best"]
    print(f"best: {best['id']} ({summary['metric']}={best['metric']:.4f}, run {best['run']})" if best else
          f"no trial logged {summary['metric']}: see {folder}/trials/*.log")
    print(f"wrote {folder / 'summary.md'} and {folder / 'summary.json'}")


if __name__ == "__main__":
    main(sys.argv[1:])
