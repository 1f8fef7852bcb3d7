"""Run a W&B sweep file with no W&B server: grid or random search over its parameters, each trial a
`train.py` process given the sweep's own command (as `wandb agent` would run it), logged offline under one
group; a summary ranks the trials by the sweep's metric. A trial that finished is not run again."""

import itertools
import json
import math
import os
import random
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import yaml

from difflm.errors import UserError
from difflm.run_dir import atomic_write_text

AGENT_MACROS = ("${env}", "${interpreter}", "${program}")
ARGS_MACRO = "${args_no_hyphens}"
METHODS = ("grid", "random")
DEFAULT_RANDOM_TRIALS = 5
REPO = Path(__file__).resolve().parent.parent


@contextmanager
def environment(**values):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def load_sweep(path):
    """The sweep file as a dict, checked for what the local runner needs."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"sweep file {path} does not exist: see configs/sweeps/")
    sweep = yaml.safe_load(path.read_text()) or {}
    for key in ("program", "metric", "parameters", "command"):
        if key not in sweep:
            raise UserError(f"sweep file {path} lacks the key '{key}'")
    if ARGS_MACRO not in sweep["command"]:
        raise UserError(f"sweep file {path}: its command must pass the parameters as {ARGS_MACRO}")
    if sweep["metric"].get("goal") not in ("minimize", "maximize") or "name" not in sweep["metric"]:
        raise UserError(f"sweep file {path}: metric needs a name and a goal (minimize or maximize)")
    sweep["name"] = sweep.get("name") or path.stem
    return sweep


def _draw(name, spec, rng):
    """One value of a parameter spec (W&B's forms: value, values, or min/max with a distribution)."""
    if "value" in spec:
        return spec["value"]
    if "values" in spec:
        return rng.choice(spec["values"])
    low, high = spec.get("min"), spec.get("max")
    distribution = spec.get("distribution") or ("int_uniform" if isinstance(low, int) and isinstance(high, int)
                                                else "uniform")
    if low is None or high is None:
        raise UserError(f"sweep parameter '{name}' needs value, values, or min and max")
    if distribution == "uniform":
        return rng.uniform(low, high)
    if distribution == "int_uniform":
        return rng.randint(low, high)
    if distribution == "log_uniform_values":
        return math.exp(rng.uniform(math.log(low), math.log(high)))
    raise UserError(f"sweep parameter '{name}': distribution '{distribution}' is not one of uniform, "
                    "int_uniform, log_uniform_values")


def trial_parameters(sweep, method=None, count=None, seed=0):
    """The parameter sets to run: every combination (grid; only `value`/`values` parameters) or `count` random
    draws (random; default the sweep's run_cap or 5). A grid larger than `count` keeps its first `count`."""
    method = method or sweep.get("method", "random")
    if method not in METHODS:
        raise UserError(f"method='{method}' is not one of {', '.join(METHODS)}")
    parameters = sweep["parameters"]
    if method == "grid":
        ranged = [name for name, spec in parameters.items() if "value" not in spec and "values" not in spec]
        if ranged:
            raise UserError(f"method=grid needs a list of values for every parameter; {', '.join(ranged)} has a "
                            "range: use method=random")
        choices = [spec["values"] if "values" in spec else [spec["value"]] for spec in parameters.values()]
        grid = [dict(zip(parameters, combination)) for combination in itertools.product(*choices)]
        return grid[:count] if count else grid
    rng = random.Random(seed)
    count = count or sweep.get("run_cap") or DEFAULT_RANDOM_TRIALS
    return [{name: _draw(name, spec, rng) for name, spec in parameters.items()} for _ in range(count)]


def _as_arg(value):
    return f"{value:.6g}" if isinstance(value, float) else str(value).lower() if isinstance(value, bool) else str(value)


def trial_arguments(sweep, parameters, extra=()):
    """train.py's arguments for one trial: the sweep command with its agent macros dropped and the parameters
    in place of ${args_no_hyphens}, then `extra` (the runner's own overrides, which win)."""
    arguments = []
    for item in sweep["command"]:
        if item == ARGS_MACRO:
            arguments += [f"{name}={_as_arg(value)}" for name, value in parameters.items()]
        elif item not in AGENT_MACROS:
            arguments.append(str(item))
    return arguments + list(extra)


def rank(trials, metric, goal):
    """Trials sorted best first by `metric`; those without it (failed) last."""
    sign = -1 if goal == "maximize" else 1
    return sorted(trials, key=lambda t: (t.get("metric") is None, sign * (t.get("metric") or 0)))


def format_summary(sweep, trials):
    metric = sweep["metric"]["name"]
    names = list(sweep["parameters"])
    lines = [f"| rank | trial | {metric} | " + " | ".join(names) + " | seconds | status |",
             "|" + "---|" * (len(names) + 5)]
    for position, trial in enumerate(trials, 1):
        value = "—" if trial.get("metric") is None else f"{trial['metric']:.4f}"
        params = " | ".join(_as_arg(trial["parameters"][n]) for n in names)
        lines.append(f"| {position} | {trial['id']} | {value} | {params} | {trial['seconds']} | {trial['status']} |")
    return "\n".join(lines)


def run_sweep(sweep_path, method=None, count=None, seed=0, extra=()):
    """Run every trial not finished yet; write and return the ranked summary (sweep dir: the trials' parent)."""
    from difflm.config import compose

    sweep = load_sweep(sweep_path)
    metric, goal = sweep["metric"]["name"], sweep["metric"]["goal"]
    env = {**os.environ, "WANDB_RUN_GROUP": f"sweep-{sweep['name']}"}
    env.setdefault("WANDB_MODE", "offline")
    program = Path(sweep["program"]) if Path(sweep["program"]).is_file() else REPO / sweep["program"]
    trials, folder = [], None
    for index, parameters in enumerate(trial_parameters(sweep, method, count, seed)):
        trial_id = f"{sweep['name']}-{index:02d}"
        arguments = trial_arguments(sweep, parameters, [f"wandb_group=sweep-{sweep['name']}", *extra])
        env["WANDB_RUN_ID"] = trial_id  # what `wandb agent` sets for each run; the trial's run= may use it
        with environment(WANDB_RUN_ID=trial_id):
            cfg = compose(arguments)
        run_dir = Path(cfg.run)
        folder = folder or run_dir.parent
        metrics_file = run_dir / cfg.stage / "metrics.json"
        done = folder / "trials" / f"{trial_id}.json"
        if done.is_file() and json.loads(done.read_text())["parameters"] == parameters and metrics_file.is_file():
            trials.append(json.loads(done.read_text()))
            print(f"{trial_id}: done before, kept", flush=True)
            continue
        print(f"{trial_id}: {' '.join(f'{k}={_as_arg(v)}' for k, v in parameters.items())}", flush=True)
        log = folder / "trials" / f"{trial_id}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        with open(log, "w") as output:
            code = subprocess.call([sys.executable, str(program), *arguments], env=env, stdout=output,
                                   stderr=subprocess.STDOUT)
        logged = json.loads(metrics_file.read_text()) if code == 0 and metrics_file.is_file() else {}
        trial = {"id": trial_id, "parameters": parameters, "run": str(run_dir), "metric": logged.get(metric),
                 "seconds": round(time.perf_counter() - started, 1),
                 "status": "ok" if code == 0 else f"exit {code}, see {log}"}
        if code == 0 and trial["metric"] is None:
            trial["status"] = f"did not log {metric}"
        print(f"{trial_id}: {metric}={trial['metric']} ({trial['status']}, {trial['seconds']} s)", flush=True)
        if code == 0:
            atomic_write_text(done, json.dumps(trial, indent=2))
        trials.append(trial)
    ranked = rank(trials, metric, goal)
    summary = {"sweep": str(sweep_path), "metric": metric, "goal": goal, "method": method or sweep.get("method"),
               "trials": ranked, "best": ranked[0] if ranked and ranked[0]["metric"] is not None else None}
    atomic_write_text(folder / "summary.json", json.dumps(summary, indent=2))
    atomic_write_text(folder / "summary.md", format_summary(sweep, ranked) + "\n")
    return summary, folder
