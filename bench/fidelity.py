"""Fidelity on real data by the evaluation protocol of METHOD.md: train a run (or reuse the stages it has), sample
K tables with different seeds, score each, and write one table (JSON + Markdown): mean ± std of every metric for
the full pipeline, its ablations and the real data, the time and peak memory of each stage, and the config.

python bench/fidelity.py --run runs/cpu60 [--tables 5] [--rows N] [--ablations no_prior,no_decoder_stage,no_latent]
                         [--baselines tvae] [--stages vae,prior,decoder] [train.py overrides, e.g. budget=cpu60]
python bench/fidelity.py --run runs/cpu60-lr --stages decoder upstream=runs/cpu60 decoder.lr=1e-4
                         (trains only the decoder; the data, VAE and prior are the upstream run's)
python bench/fidelity.py --run runs/cpu60 --sampling-devices 2 budget=cpu60 trainer.devices=2 trainer.strategy=ddp
                         vae.batch_size=4 prior.batch_size=128 decoder.batch_size=4
                         (stages and tables in two processes of one thread each, 8 rows a step: ddp on the CPU)
-> bench/results/fidelity-<run name, or --name>.json and .md

Protocol: data.holdout_fraction=0.5 trains on one half of Adult's training file and holds the other half out for
DCR; MLE is XGBoost (the protocol's grid) trained on each synthetic table and scored on the real test file.
--rows defaults to the size of the run's training split. Ablations (same run, same seeds):
  no_prior          latents from N(0, I), the VAE's own prior, instead of the diffusion prior
  no_decoder_stage  the decoder as its stage starts (the VAE's frozen LLM and projector, LoRA at zero)
  no_latent         fine-tune only: a decoder trained with the same budget on z = 0 (decoder.use_latent=false),
                    in <run>-no_latent, which takes its data and other stages from the run
  posterior_means   a perfect prior: the encoder means of random training rows, what the diffusion prior learns
                    to imitate (a diagnostic: it decodes near copies of training rows, so its DCR means nothing)
Each stage runs in its own process, so its peak memory is its own (a SIGTERM to the benchmark stops it too); a
stage the run has is not trained again, and every sampled table is kept under <run>/fidelity/, so an interrupted
benchmark continues where it stopped.
--previous <result.json> takes the scores of the tables an earlier result has (the same seeds of every variant) and
samples only the rest, provided its models are the same as the run's, weight for weight (its "fingerprint"): where
a machine trains the same run again bit for bit, five full-size tables can be gathered over two sittings (and
with the same sampling settings).
sample.* overrides (e.g. sample.temperature=1.1) sample the same models otherwise; their tables have their own
folders (<run>/fidelity/difflm@sample.temperature=1.1/), and every table records the settings it was sampled with.
Below the metrics: each column's shape error, and the share each categorical column's most common real value takes
in every variant's tables (where sampling sharpens a column towards its mode, or flattens it).
"""

import argparse
import hashlib
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from difflm import __version__  # noqa: E402
from difflm.config import compose, plain, upstream_notice  # noqa: E402
from difflm.datamodules.records import load_run_data  # noqa: E402
from difflm.evaluation import evaluate  # noqa: E402
from difflm.latents import cached_latents  # noqa: E402
from difflm.metrics.density import density_errors, mode_shares  # noqa: E402
from difflm.metrics.utility import TargetModel, label_agreement, mle  # noqa: E402
from difflm.modules.prior import StandardNormalPrior  # noqa: E402
from difflm.pipeline import build_decoder, train  # noqa: E402
from difflm.predict import launched_rank, sample_to_file  # noqa: E402
from difflm.run_dir import STAGES, RunDir, atomic_write, atomic_write_text  # noqa: E402
from difflm.sampling import decoding_options, load_generator, sample_records  # noqa: E402
from difflm import seeded  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
ABLATIONS = ("no_prior", "no_decoder_stage", "no_latent", "posterior_means")
# (key, column title, format): the protocol's metrics, then sampling's
METRICS = [
    ("mle_auc", "MLE AUC", "{:.3f}"),
    ("label_agreement_auc", "label agreement AUC", "{:.3f}"),
    ("shape_error", "shape err %", "{:.2f}"),
    ("trend_error_all_pairs", "trend err % (all pairs)", "{:.2f}"),
    ("trend_error", "trend err % (sdmetrics)", "{:.2f}"),
    ("dcr_share", "DCR share", "{:.1%}"),
    ("exact_copy_rate", "exact copies", "{:.3%}"),
    ("c2st_auc", "C2ST AUC", "{:.3f}"),
    ("alpha_precision", "alpha-precision", "{:.3f}"),
    ("beta_recall", "beta-recall", "{:.3f}"),
    ("validity", "validity", "{:.1%}"),
    ("rows_per_second", "rows/s", "{:.2f}"),
]
# compared seed by seed with each baseline: (key, title, format, higher is better)
PAIRED = [("mle_auc", "MLE AUC", "{:+.3f}", True), ("shape_error", "shape err %", "{:+.2f}", False),
          ("trend_error_all_pairs", "trend err % (all pairs)", "{:+.2f}", False)]


def peak_memory():
    """Peak resident memory of this process and peak CUDA memory allocated, in GiB."""
    cuda = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    return {"peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            "peak_cuda_gib": round(cuda, 2) if cuda is not None else None}


def run_stage(stage, run, overrides):
    """Train one stage in a child process (its own peak memory); its seconds and memory, saved in the run."""
    record = run.root / "fidelity" / f"stage-{stage}.json"
    if record.is_file() and run.has(stage):
        return json.loads(record.read_text())
    run_child([sys.executable, __file__, "--train-stage", stage, "--run", str(run.root), *overrides])
    return json.loads(record.read_text())


def run_child(command):
    """subprocess.run(command, check=True) that passes a SIGTERM on to the child and then exits: killing the
    benchmark stops the stage it trains (Lightning stops between steps) instead of leaving it training alone."""
    child, received = subprocess.Popen(command), []

    def forward(signum, frame):
        received.append(signum)
        child.send_signal(signum)
    previous = signal.signal(signal.SIGTERM, forward)
    try:
        code = child.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
    if received:
        sys.exit(128 + received[0])
    if code:
        raise subprocess.CalledProcessError(code, command)


def upstream_stage(stage, upstream):
    """The time and memory of a stage taken from the upstream run, as its own benchmark recorded them."""
    record = RunDir(upstream).root / "fidelity" / f"stage-{stage}.json"
    return {"from": upstream, **(json.loads(record.read_text()) if record.is_file() else {"seconds": None})}


def train_stage_here(stage, run, overrides):
    argv = [f"stage={stage}", f"run={run.root}", *overrides]
    cfg = compose(argv)
    notice = upstream_notice(cfg, argv)
    if notice:
        print(notice, file=sys.stderr, flush=True)
    started = time.perf_counter()
    result = train(cfg)
    record = {"seconds": round(time.perf_counter() - started, 1), "seconds_per_step": result["seconds_per_step"][stage],
              "steps": result["metrics"][stage].get("steps"), **peak_memory()}
    if launched_rank() != 0:  # another process of a ddp stage (trainer.devices=N): the first one records it
        return
    atomic_write_text(run.root / "fidelity" / f"stage-{stage}.json", json.dumps(record, indent=2))


def fingerprint(run, stages):
    """{stage: the first 16 hex digits of a SHA-256 over its best checkpoint's weights}: equal when two runs trained
    the same models (a checkpoint's other fields, e.g. times, do not count)."""
    prints = {}
    for stage in stages:
        state = torch.load(run.best(stage), map_location="cpu", weights_only=False)["state_dict"]
        digest = hashlib.sha256()
        for key in sorted(state):
            digest.update(key.encode())
            digest.update(state[key].detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        prints[stage] = digest.hexdigest()[:16]
    return prints


def previous_tables(path, prints, rows, options):
    """({variant: [scores of table 0, 1, ...]}, [real scores]) of an earlier result of the same models and size."""
    if not path:
        return {}, []
    previous = json.loads(Path(path).read_text())
    if "per_table" not in previous:
        raise SystemExit(f"--previous {path} has no per-table scores (it predates them): sample its tables again")
    if previous["rows_per_table"] != rows:
        raise SystemExit(f"--previous {path} has tables of {previous['rows_per_table']} rows, not {rows}: give "
                         f"--rows {previous['rows_per_table']} or sample them again")
    if previous.get("fingerprint") != prints:
        raise SystemExit(f"--previous {path} scored other models (fingerprint {previous.get('fingerprint')}, this "
                         f"run's {prints}): its tables cannot stand for this run's")
    sampled_with = sampling_options(previous["config"])
    if sampled_with != options:
        raise SystemExit(f"--previous {path} sampled with {sampled_with}, not {options}: give the same sample.* "
                         "overrides")
    return previous["per_table"], previous["real_per_table"]


class PosteriorMeans:
    """Draws the cached encoder means of random training records (the posterior_means diagnostic)."""

    def __init__(self, means):
        self.means = means

    def sample(self, n, generator=None):
        return self.means[seeded.randint(len(self.means), (n,), generator, self.means.device)]


def no_latent_run(run):
    return RunDir(f"{run.root}-no_latent")


def generators(cfg, run, schema, frames, variants):
    """{variant: (prior, decoder)}; the trained models shared between variants."""
    _, prior, decoder = load_generator(run)
    models = {"difflm": (prior, decoder),
              "no_prior": (StandardNormalPrior(prior.hparams.latent_dim, prior.device), decoder)}
    if "no_decoder_stage" in variants:
        untrained, _ = build_decoder(cfg, run)
        models["no_decoder_stage"] = (prior, untrained.to(decoder.device).eval())
    if "posterior_means" in variants:
        means = cached_latents(run, schema, frames, cfg.prior.encode_batch_size)["train"][0]  # re-encoded if stale
        models["posterior_means"] = (PosteriorMeans(means.to(prior.device)), decoder)
    if "no_latent" in variants:
        models["no_latent"] = load_generator(no_latent_run(run))[1:]
    return {variant: models[variant] for variant in variants}


# sampling settings added since tables were first kept, at the value those tables were sampled with
ADDED_SINCE = {"column_temperature": {}}


def sampling_options(cfg):
    """What a sampled table depends on besides the models and the seed, from a config (today's, or an earlier
    result's saved one, which may predate some settings)."""
    cfg = plain(cfg)
    sample = {**ADDED_SINCE, **cfg["sample"]}
    return {**decoding_options({**cfg, "sample": sample}), "batch_size": sample["batch_size"],
            "max_rounds": sample["max_rounds"]}


def table_folder(variant, sampling_overrides):
    """A variant's table folder under <run>/fidelity/: sample.* overrides name their own, so tables sampled
    otherwise are never read back as theirs (e.g. difflm@sample.temperature=1.1)."""
    return variant + "".join(f"@{override}" for override in sorted(sampling_overrides))


def sample_table(cfg, run, schema, prior, decoder, folder, seed, rows, on_devices=None):
    """Table `seed` of a variant (sampled once, then read back) and its sampling statistics. `on_devices`: the
    command of a child that samples it into place in several processes instead (sample_on_devices)."""
    table, stats_path = run.fidelity_table(folder, seed, rows)
    options = sampling_options(cfg)
    if on_devices and not (table.is_file() and stats_path.is_file()):
        run_child(on_devices)
    if table.is_file() and stats_path.is_file():
        stats = json.loads(stats_path.read_text())
        stats["options"] = {**ADDED_SINCE, **stats.get("options", options)}  # none saved (older tables): today's
        if stats["options"] != options:
            raise SystemExit(f"{table} was sampled with {stats['options']}, not {options}: move it away, or give "
                             "the sample.* override that made it")
        return pd.read_parquet(table), stats
    records, stats = sample_records(schema, prior, decoder, rows, seed=seed, batch_size=options["batch_size"],
                                    max_rounds=options["max_rounds"], **decoding_options(cfg))
    return save_table(schema, records, stats, options, table, stats_path)


def save_table(schema, records, stats, options, table, stats_path):
    frame = schema.records_to_frame(records)
    stats["options"] = options
    atomic_write(table, lambda tmp: frame.to_parquet(tmp, index=False))
    atomic_write_text(stats_path, json.dumps(stats, indent=2))
    return frame, stats


def sample_on_devices(run, seed, rows, overrides):
    """Table `seed` of the full pipeline sampled through Lightning's predict loop on the overrides' trainer.devices
    (a child of the benchmark, launched again for every further process): the rows sample_table makes in one
    process, as chunks are seeded alike (on this project's 2-core CPU no sooner, README "Training")."""
    cfg = compose([f"run={run.root}", *overrides])
    table, stats_path = run.fidelity_table(table_folder("difflm", [o for o in overrides if o.startswith("sample.")]),
                                           seed, rows)
    out = table.with_suffix(".jsonl")
    sampled = sample_to_file(cfg, run, rows, out, seed)
    if sampled is None:  # another process: the first one writes the table
        return
    schema, records, stats = sampled
    save_table(schema, records, stats, sampling_options(cfg), table, stats_path)
    out.unlink()


def baseline_table(schema, run, variant, seed, rows):
    """Table `seed` of an SDV baseline, as bench/sdv_baselines.py wrote it, with the schema's dtypes."""
    table, stats = run.fidelity_table(variant, seed, rows)
    if not (table.is_file() and stats.is_file()):
        raise SystemExit(f"{table} is missing: run bench/sdv_baselines.py --run {run.root} "
                         f"--rows {rows} --models {variant.removeprefix('sdv_')} first (see its docstring)")
    return schema.records_to_frame(pd.read_parquet(table).to_dict("records")), json.loads(stats.read_text())


def scores(report, stats):
    """The metrics of one synthetic table's report."""
    return {"mle_auc": report["mle"]["synthetic"]["score"],
            "label_agreement_auc": report["mle"]["label_agreement"]["score"],
            **{k: report["density"][k] for k in ("shape_error", "trend_error_all_pairs", "trend_error")},
            **{k: report["privacy"][k] for k in ("dcr_share", "exact_copy_rate")},
            "c2st_auc": report["detection"]["c2st_auc"],
            **{k: report["coverage"][k] for k in ("alpha_precision", "beta_recall")},
            "validity": stats["validity"], "rows_per_second": stats["rows_per_second"], "seconds": stats["seconds"]}


def column_scores(schema, train, table, report):
    """{column: {"shape_error", "mode_share"}}: each column's shape error and, for a categorical or boolean one, the
    share of the table that takes the training split's most common value."""
    shares = mode_shares(schema, train, table)
    return {name: {"shape_error": error, **({"mode_share": shares[name][2]} if name in shares else {})}
            for name, error in report["density"]["column_shape_errors"].items()}


def real_scores(schema, frames, report, rows, target, seed):
    """The real-data row at the synthetic tables' size: MLE of `rows` training rows, density and label agreement of
    `rows` holdout rows against the training split, DCR share and exact copies of real rows neither half saw (the
    test split, as evaluate's real_holdout_reference)."""
    holdout = frames["holdout"] if len(frames["holdout"]) else frames["test"]
    train_rows = frames["train"].sample(n=min(rows, len(frames["train"])), random_state=seed)
    holdout_rows = holdout.sample(n=min(rows, len(holdout)), random_state=seed)
    density = density_errors(schema, frames["train"], holdout_rows)
    reference = report["privacy"]["real_holdout_reference"]
    return {"mle_auc": mle(schema, train_rows, frames["test"], target, grid=True, seed=seed)["score"],
            "mle_auc_whole_training_split": report["mle"]["real_train"]["score"],
            "label_agreement_auc": label_agreement(TargetModel(schema, frames["train"], target, True, seed),
                                                   holdout_rows)["score"],
            **{k: density[k] for k in ("shape_error", "trend_error_all_pairs", "trend_error")},
            "dcr_share": reference["dcr_share"], "exact_copy_rate": reference["exact_copy_rate"],
            **report["coverage"]["real_holdout_reference"]}


def summarise(per_table):
    """{metric: {"mean", "std", "values"}} over tables."""
    summary = {}
    for key in {key for table in per_table for key in table}:
        values = [table[key] for table in per_table if isinstance(table.get(key), (int, float))]
        if values:
            summary[key] = {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1
                            else 0.0, "values": values}
    return summary


def column_summary(per_table):
    """{column: {measure: mean}} over the tables that have per-column scores (results before them have none)."""
    tables = [table["columns"] for table in per_table if "columns" in table]
    return {name: {measure: statistics.fmean(table[name][measure] for table in tables) for measure in measures}
            for name, measures in (tables[0] if tables else {}).items()}


def paired_differences(ours, theirs):
    """{metric: {"mean", "std", "sem", "values", "ahead"}} of ours - theirs over the seeds both have (tables are
    paired by seed); `ahead` counts the seeds where ours is the better (higher AUC, lower error), `sem` is the
    standard error of the mean difference."""
    paired = {}
    for key, _, _, higher_is_better in PAIRED:
        values = [a[key] - b[key] for a, b in zip(ours, theirs)]
        if values:
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            paired[key] = {"mean": statistics.fmean(values), "std": std, "sem": std / len(values) ** 0.5,
                           "values": values, "ahead": sum((v > 0) == higher_is_better and v != 0 for v in values)}
    return paired


def markdown_paired(paired):
    """One line per baseline: the mean difference ± its standard error, and on how many seeds DiffLM is ahead."""
    lines = []
    for baseline, differences in paired.items():
        cells = [f"{title} {fmt.format(d['mean'])} ± {fmt.format(d['sem']).lstrip('+')} (ahead on {d['ahead']} of "
                 f"{len(d['values'])})" for key, title, fmt, _ in PAIRED if (d := differences.get(key))]
        lines.append(f"DiffLM - {baseline}, paired by seed (mean ± standard error): " + "; ".join(cells) + ".")
    return lines


def stage_title(stage, record):
    return f"{stage} (from {record['from']})" if "from" in record else stage


def markdown_rows(rows, extra=()):
    """A Markdown table of {row title: summarise(...)}: mean ± std of METRICS and the `extra` (key, title, format)."""
    metrics = [*METRICS, *extra]
    header = ["", *[title for _, title, _ in metrics]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, summary in rows.items():
        cells = [name]
        for key, _, fmt in metrics:
            entry = summary.get(key)
            cells.append("—" if entry is None else f"{fmt.format(entry['mean'])} ± {fmt.format(entry['std'])}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def markdown_columns(columns):
    """Shape error by column, and the share of each categorical column's real mode, for every row that has them."""
    rows = {title: summary for title, summary in columns["rows"].items() if summary}
    if not rows:
        return []
    names = next(iter(rows.values()))
    lines = ["Shape error % by column (mean over tables):", "", "| column | " + " | ".join(rows) + " |",
             "|" + "---|" * (len(rows) + 1)]
    lines += [f"| {name} | " + " | ".join(f"{summary[name]['shape_error']:.2f}" for summary in rows.values()) + " |"
              for name in names]
    modes = columns["real_modes"]
    lines += ["", "Share of each categorical column's most common real value (mean over tables):", "",
              "| column | real | " + " | ".join(rows) + " |", "|" + "---|" * (len(rows) + 2)]
    lines += [f"| {name} = {value} | {share:.1%} | " +
              " | ".join(f"{summary[name]['mode_share']:.1%}" for summary in rows.values()) + " |"
              for name, (value, share) in modes.items()]
    return lines


def markdown(result):
    lines = [markdown_rows(result["rows"]).rstrip("\n")]
    if result.get("paired"):
        lines += ["", *markdown_paired(result["paired"])]
    if result.get("columns"):
        lines += ["", *markdown_columns(result["columns"])]
    stages = result["stages"]
    lines += ["", "| stage | seconds | steps | s/step | peak RSS GiB | peak CUDA GiB |", "|" + "---|" * 6]
    lines += [f"| {stage_title(s, v)} | {v['seconds']} | {v.get('steps') or '—'} | {v.get('seconds_per_step')} | "
              f"{v.get('peak_rss_gib')} | {v.get('peak_cuda_gib') or '—'} |" for s, v in stages.items()]
    lines += ["", f"{result['tables']} tables of {result['rows_per_table']} rows each (seeds 0..{result['tables'] - 1}), "
              f"{result['ablation_tables']} per ablation; "
              f"training split {result['train_rows']} rows; train {result['train_seconds']} s end to end "
              f"(stages), sampling {result['sampling_seconds']} s; {result['machine']}."]
    return "\n".join(lines) + "\n"


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--tables", type=int, default=5)
    parser.add_argument("--rows", type=int, default=None, help="rows per table (default: the training split's size)")
    parser.add_argument("--ablations", default=",".join(ABLATIONS), help=f"comma-separated, of {', '.join(ABLATIONS)}")
    parser.add_argument("--ablation-tables", type=int, default=None, help="tables per ablation (default: --tables)")
    parser.add_argument("--name", help="of the result files, fidelity-<name>.json and .md (default: the run's name)")
    parser.add_argument("--baselines", default="", help="comma-separated SDV models whose tables "
                        "bench/sdv_baselines.py wrote into the run: tvae, ctgan, gaussian_copula")
    parser.add_argument("--stages", default=",".join(STAGES), help="the stages this run trains, comma-separated; "
                        "the others are those of the run given as upstream=<run> among the overrides")
    parser.add_argument("--previous", help="an earlier result JSON of the same models whose tables to reuse")
    parser.add_argument("--sampling-devices", type=int, default=1, help="processes that sample the full "
                        "pipeline's tables (Lightning ddp on the CPU, cores shared among them; 1: in this process)")
    parser.add_argument("--train-stage", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--sample-table", type=int, help=argparse.SUPPRESS)
    args, overrides = parser.parse_known_args(argv)
    run = RunDir(args.run)
    args.ablations = [a for a in args.ablations.split(",") if a]
    if set(args.ablations) - set(ABLATIONS):
        parser.error(f"--ablations takes a comma-separated list of {', '.join(ABLATIONS)}")
    trained = [s for s in STAGES if s in args.stages.split(",")]
    upstream = next((o.split("=", 1)[1] for o in overrides if o.startswith("upstream=")), None)
    if not trained or set(args.stages.split(",")) - set(STAGES):
        parser.error(f"--stages takes a comma-separated list of {', '.join(STAGES)}")
    if len(trained) < len(STAGES) and not upstream:
        parser.error(f"--stages {args.stages} leaves stages out: give upstream=<run> to take them from")
    if args.train_stage:
        return train_stage_here(args.train_stage, run, overrides)
    if args.sample_table is not None:
        return sample_on_devices(run, args.sample_table, args.rows, overrides)
    torch.set_num_threads(min(os.cpu_count(), torch.get_num_threads()))
    stages = {stage: run_stage(stage, run, overrides) if stage in trained else upstream_stage(stage, upstream)
              for stage in STAGES}
    if "no_latent" in args.ablations:
        stages["decoder (no_latent)"] = run_stage("decoder", no_latent_run(run), [
            f"upstream={run.root}", *overrides, "decoder.use_latent=false"])
    sampling = [o for o in overrides if o.startswith("sample.")]
    cfg = compose([f"run={run.root}", *sampling])
    schema, frames = load_run_data(run)
    rows = args.rows or len(frames["train"])
    variants = ["difflm", *args.ablations]
    models = generators(cfg, run, schema, frames, variants)
    baselines = [f"sdv_{b}" for b in args.baselines.split(",") if b]
    prints = fingerprint(run, STAGES)
    if "no_latent" in args.ablations:
        prints["decoder (no_latent)"] = fingerprint(no_latent_run(run), ["decoder"])["decoder"]
    previous, previous_real = previous_tables(args.previous, prints, rows, sampling_options(cfg))
    per_variant, real, sampling_seconds = {v: [] for v in [*variants, *baselines]}, [], 0.0
    for seed in range(args.tables):
        for variant in [*variants, *baselines]:
            if variant in args.ablations and seed >= (args.ablation_tables or args.tables):
                continue
            if seed < len(previous.get(variant, [])):
                per_variant[variant].append(previous[variant][seed])
                sampling_seconds += per_variant[variant][-1]["seconds"] if variant == "difflm" else 0
                real += previous_real[seed:seed + 1] if variant == "difflm" else []
                continue
            if variant in baselines:
                table, stats = baseline_table(schema, run, variant, seed, rows)
            else:
                on_devices = [sys.executable, __file__, "--sample-table", str(seed), "--run", str(run.root),
                              "--rows", str(rows), *sampling, "trainer.accelerator=cpu",
                              f"trainer.devices={args.sampling_devices}", "trainer.strategy=ddp"]
                table, stats = sample_table(cfg, run, schema, *models[variant], table_folder(variant, sampling),
                                            seed, rows, on_devices if variant == "difflm" and
                                            args.sampling_devices > 1 else None)
            sampling_seconds += stats["seconds"] if variant == "difflm" else 0
            report = evaluate(schema, table, frames, cfg.data.target, seed, grid=True, references=variant == "difflm")
            per_variant[variant].append({**scores(report, stats),
                                         "columns": column_scores(schema, frames["train"], table, report)})
            if variant == "difflm":
                real.append(real_scores(schema, frames, report, rows, cfg.data.target, seed))
            print(variant, seed, json.dumps(per_variant[variant][-1]), flush=True)
    titles = {"DiffLM (this run)": "difflm", **{f"ablation: {v}": v for v in args.ablations},
              **{f"SDV {b.removeprefix('sdv_')}, same split": b for b in baselines}}
    result = {
        "rows": {**{title: summarise(per_variant[v]) for title, v in titles.items()},
                 f"real data ({rows} rows)": summarise(real)},
        "columns": {"real_modes": {name: [value, share] for name, (value, share, _) in
                                   mode_shares(schema, frames["train"], frames["train"]).items()},
                    "rows": {title: column_summary(per_variant[v]) for title, v in titles.items()}},
        "paired": {f"SDV {b.removeprefix('sdv_')}": paired_differences(per_variant["difflm"], per_variant[b])
                   for b in baselines},
        "tables": args.tables, "ablation_tables": min(args.ablation_tables or args.tables, args.tables),
        "per_table": per_variant, "real_per_table": real, "fingerprint": prints, "previous": args.previous,
        "rows_per_table": rows, "train_rows": len(frames["train"]),
        "stages": stages, "train_seconds": round(sum(stages[s]["seconds"] or 0 for s in STAGES), 1),
        "sampling_seconds": round(sampling_seconds, 1), "config": plain(cfg), "overrides": overrides,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
                   f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}",
        "difflm": __version__,
    }
    name = args.name or run.root.name
    RESULTS.mkdir(exist_ok=True)
    atomic_write_text(RESULTS / f"fidelity-{name}.json", json.dumps(result, indent=2))
    atomic_write_text(RESULTS / f"fidelity-{name}.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main(sys.argv[1:])
