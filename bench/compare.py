"""The ways to synthesise a table, side by side on one run: the same data, split, model, sample size and measures.

python bench/compare.py --run runs/cpu60-v4 [--rows 1000] [--tables 1] [--curate]
                        [--methods difflm,vae,finetune,prompt,prompt+by_column,prompt+steer]
                        [sample.py / curate overrides, e.g. sample.prompt.examples=8]
-> bench/results/compare-<run name>.json and .md

Methods (sample.py method=...): difflm (diffusion prior -> decoder), vae (N(0, I) latents -> the same decoder),
finetune (the decoder fine-tuned with no latent: `python train.py stage=finetune run=<run>` first), prompt (the
instruct LLM prompted with examples and conditions, no training); prompt+by_column and prompt+steer switch on
sample.prompt's multi-step options (one chat turn per column; conditions steered to under-covered values), and
prompt+by_column+steer both. --curate also scores each method's table after
curate.py's filters (the `curate` config section), with the share of rows it kept. The real-data row is the
protocol's reference (bench/fidelity.py real_scores). Tables are sampled once and kept under <run>/fidelity/<method>/
(difflm's and vae's are bench/fidelity.py's difflm and no_prior tables: the same generators, seeds and settings; a
prompt variant's folder names its examples and conditions too).
"""

import argparse
import json
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from difflm.config import compose, plain  # noqa: E402
from difflm.curation import curate  # noqa: E402
from difflm.datamodules.records import load_run_data  # noqa: E402
from difflm.evaluation import evaluate  # noqa: E402
from difflm.run_dir import RunDir, atomic_write_text  # noqa: E402
from difflm.sampling import METHOD_STAGES, load_generator  # noqa: E402
from fidelity import RESULTS, markdown_rows, real_scores, sample_table, scores, summarise  # noqa: E402

CACHE_NAMES = {"difflm": "difflm", "vae": "no_prior"}  # bench/fidelity.py's names for the same tables
PROMPT_OPTIONS = ("by_column", "steer")  # sample.prompt's switches a method name may add: prompt+by_column


def method_settings(name, prompt):
    """(sample.method, sample.prompt settings, folder of its tables) of a --methods entry such as prompt+steer."""
    method, *options = name.split("+")
    if method not in METHOD_STAGES or set(options) - set(PROMPT_OPTIONS) or (options and method != "prompt"):
        raise SystemExit(f"--methods: '{name}' is none of {', '.join(METHOD_STAGES)}, "
                         f"prompt+{'+'.join(PROMPT_OPTIONS)} or one of those options")
    if method != "prompt":
        return method, prompt, CACHE_NAMES.get(method, method)
    prompt = {**prompt, **{option: True for option in options}}
    switched = "".join(f"+{option}" for option in PROMPT_OPTIONS if prompt[option])
    return method, prompt, f"prompt{switched}-{prompt['examples']}examples-{prompt['conditions']}conditions"


def method_rows(cfg, run, schema, frames, name, tables, rows, curated):
    """{row title: summary} for one method: its tables as sampled and, with `curated`, after curation."""
    method, prompt, folder = method_settings(name, plain(cfg.sample.prompt))
    _, prior, decoder = load_generator(run, method=method, prompt=prompt)
    raw, kept, shares = [], [], []
    for seed in range(tables):
        table, stats = sample_table(cfg, run, schema, prior, decoder, folder, seed, rows)
        report = evaluate(schema, table, frames, cfg.data.target, seed, grid=True, references=False)
        raw.append(scores(report, stats))
        print(name, seed, json.dumps(raw[-1]), flush=True)
        if curated:
            filtered, curation = curate(schema, table, frames, cfg.curate, seed)
            report = evaluate(schema, filtered, frames, cfg.data.target, seed, grid=True, references=False)
            kept.append({**scores(report, stats), "kept_share": len(filtered) / len(table)})
            shares.append(curation["dropped"])
            print(f"{name} curated", seed, json.dumps(kept[-1]), json.dumps(curation["dropped"]), flush=True)
    result = {name: summarise(raw)}
    if curated:
        result[f"{name}, curated"] = {**summarise(kept), "dropped": shares}
    return result


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--tables", type=int, default=1)
    parser.add_argument("--methods", default=",".join(METHOD_STAGES), help="comma-separated sample.py methods; "
                        "prompt+by_column, prompt+steer: prompt with its multi-step options")
    parser.add_argument("--curate", action="store_true", help="also score each table after curate.py's filters")
    args, overrides = parser.parse_known_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    run = RunDir(args.run)
    cfg = compose([f"run={run.root}", *overrides])
    for name in methods:  # every name checked before any sampling
        method_settings(name, plain(cfg.sample.prompt))
    schema, frames = load_run_data(run)
    if schema.record_type != "table":
        parser.error(f"{run.root} holds {schema.record_type} records: this comparison scores tables")
    torch.set_num_threads(min(os.cpu_count(), torch.get_num_threads()))
    rows = {}
    for method in methods:
        rows.update(method_rows(cfg, run, schema, frames, method, args.tables, args.rows, args.curate))
    reference = evaluate(schema, frames["holdout"].head(args.rows) if len(frames["holdout"]) else frames["test"],
                         frames, cfg.data.target, 0, grid=True)
    rows[f"real data ({args.rows} rows)"] = summarise([real_scores(schema, frames, reference, args.rows,
                                                                   cfg.data.target, 0)])
    result = {"rows": rows, "tables": args.tables, "rows_per_table": args.rows, "methods": methods,
              "curated": args.curate, "config": plain(cfg), "overrides": overrides,
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"}
    RESULTS.mkdir(exist_ok=True)
    name = f"compare-{run.root.name}"
    atomic_write_text(RESULTS / f"{name}.json", json.dumps(result, indent=2, default=str))
    text = markdown_rows(rows, extra=[("kept_share", "kept", "{:.1%}")] if args.curate else ())
    atomic_write_text(RESULTS / f"{name}.md", text + f"\n{args.tables} table(s) of {args.rows} rows per method; "
                      f"{result['machine']}.\n")
    print(text)


if __name__ == "__main__":
    main(sys.argv[1:])
