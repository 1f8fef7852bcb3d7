"""Sample records from a trained run: python sample.py run=runs/adult n=1000 out=synthetic.csv seed=0
[method=difflm|vae|finetune] [condition.<column>=<value | [values] | lo..hi> ...] [resume=true]
[evaluate=true [grid=true]]
[sample.<key>=...] [trainer.devices=N trainer.strategy=ddp]
condition: every row meets it (e.g. condition.income='>50K' condition.age=30..40), see sample.condition_mode;
resume: continue an interrupted run from its finished chunks (<out>.parts/); evaluate: also write report.json
and plots beside the samples (grid: the full MLE grid)."""

import sys
from pathlib import Path

from difflm.conditions import parse_conditions, satisfied
from difflm.config import compose, parse_overrides
from difflm.datamodules.records import load_run_data
from difflm.evaluation import evaluate, format_report, write_report
from difflm.errors import UserError, exit_on_user_error
from difflm.predict import sample_to_file
from difflm.run_dir import RunDir


SAMPLE_ARGS = ("n", "out", "seed", "evaluate", "grid", "resume")


@exit_on_user_error
def main(argv):
    args = dict(parse_overrides(argv))
    if "run" not in args:
        raise UserError("run= is required: the run directory to sample from (e.g. run=runs/adult)")
    run = RunDir(args["run"])
    if not run.config.is_file():
        raise UserError(f"{run.root} is not a run directory (no config.yaml): train one with train.py first")
    n, out, seed = args.pop("n", 100), args.pop("out", "synthetic.csv"), args.pop("seed", 0)
    evaluate_, grid, resume = args.pop("evaluate", False), args.pop("grid", False), args.pop("resume", False)
    if not isinstance(n, int) or n < 1:
        raise UserError(f"n={n!r} must be a positive integer")
    if not all(isinstance(flag, bool) for flag in (evaluate_, grid, resume)):
        raise UserError("evaluate=, grid= and resume= take true or false")
    conditions = {key.partition(".")[2]: value for key, value in args.items() if key.startswith("condition.")}
    if "condition" in args or "" in conditions:
        raise UserError("give a condition as condition.<column>=<value>, e.g. condition.income='>50K'")
    # every other argument is a key of the run's config, e.g. sample.temperature=0.7 (a misspelt
    # conditions.<column>= lands here too, and is refused as an unknown key)
    # method=finetune is short for sample.method=finetune
    cfg = compose([f"sample.{arg}" if arg.startswith("method=") else arg for arg in argv
                   if arg.partition("=")[0] not in SAMPLE_ARGS and not arg.startswith("condition.")])
    sampled = sample_to_file(cfg, run, n, out, seed, resume, conditions)
    if sampled is None:  # another process of a multi-device run: the first one writes and reports
        return
    schema, records, stats = sampled
    print(f"wrote {n} rows to {out} (validity {stats['validity']:.1%}, {stats['rows_per_second']} rows/s, "
          f"{stats['processes']} processes)")
    if evaluate_:  # under conditions, against the real rows that meet them
        _, frames = load_run_data(run)
        meets = parse_conditions(schema, conditions)
        frames = {split: frame[satisfied(meets, frame)] for split, frame in frames.items()}
        synthetic = schema.records_to_frame(records)
        report = evaluate(schema, synthetic, frames, cfg.data.target, seed, grid, stats)
        if conditions:
            report["conditioning"] = stats["conditioning"]
        paths = write_report(schema, report, synthetic, frames["train"], Path(out).parent)
        print(format_report(report))
        print(f"wrote {', '.join(str(p) for p in paths.values())}")


if __name__ == "__main__":
    main(sys.argv[1:])
