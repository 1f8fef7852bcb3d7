"""Downstream evaluation during training: sample rows through the whole pipeline (prior -> decoder -> schema)
and log their validity and the fast metrics as `eval/...`, every k steps and at the end of fit. Real-vs-synthetic
plots are written under `plots_dir/step-<k>/`; with W&B they are logged as images, with a table of the rows."""

from pathlib import Path

import torch
from lightning.pytorch.loggers import WandbLogger

from difflm.callbacks.periodic import PeriodicEvaluation
from difflm.datamodules.records import load_run_data
from difflm.evaluation import evaluate
from difflm.metrics.plots import plot_columns, plot_pair_trends
from difflm.metrics.validity import parse_valid

MIN_VALID_ROWS = 10  # fewer valid rows than this: only validity is logged


def fast_metrics(schema, synthetic, frames, target, seed):
    """The metrics of a small synthetic table (difflm.evaluation.evaluate with the fast MLE setting and no real
    references), flat for logging; and the per-pair trend scores, for the plot."""
    report = evaluate(schema, synthetic, frames, target, seed, references=False)
    if schema.record_type != "table":  # code / tool measures, the numeric ones
        return {k: v for k, v in report["measures"].items() if isinstance(v, (int, float))}, None
    metrics = {}
    if "mle" in report:
        metrics[f"mle_{report['mle']['synthetic']['metric']}"] = report["mle"]["synthetic"]["score"]
        agreement = report["mle"]["label_agreement"]
        if agreement["score"] is not None:  # None: the rows hold one class
            metrics[f"label_agreement_{agreement['metric']}"] = agreement["score"]
    metrics.update(shape_error=report["density"]["shape_error"],
                   trend_error=report["density"]["trend_error_all_pairs"],
                   dcr_share=report["privacy"]["dcr_share"], c2st_auc=report["detection"]["c2st_auc"],
                   alpha_precision=report["coverage"]["alpha_precision"],
                   beta_recall=report["coverage"]["beta_recall"])
    return metrics, report["_pair_scores"]


def log_to_wandb(logger, schema, synthetic, plots, step, table_rows):
    """The generated rows as a W&B table (values as strings) and the plots as images."""
    rows = synthetic.head(table_rows).astype(object).where(synthetic.notna(), None)
    logger.log_table("eval/samples", columns=schema.names,
                     data=[["" if v is None else str(v) for v in row] for row in rows.itertuples(index=False)],
                     step=step)
    for name, path in plots.items():
        logger.log_image(f"eval/{name}", images=[str(path)], step=step)


class DownstreamEvaluation(PeriodicEvaluation):
    """`pick_models(pl_module)` returns (prior, decoder) or None when the other stage is not trained yet."""

    def __init__(self, run, pick_models, rows, every_n_steps=0, target=None, seed=0, decoding=None,
                 plots_dir=None, table_rows=50):
        super().__init__(every_n_steps)
        self.run, self.pick_models, self.rows = run, pick_models, rows
        self.target, self.seed, self.decoding = target, seed, decoding or {}  # DecoderModule.generate's options
        self.plots_dir, self.table_rows = plots_dir, table_rows
        self.real = None

    def compute(self, trainer, pl_module):
        models = self.pick_models(pl_module) if self.rows > 0 else None
        if models is None:
            return None
        prior, decoder = models
        if self.real is None:  # the run's splits do not change during fit
            self.real = load_run_data(self.run)
        schema, frames = self.real
        generator = torch.Generator().manual_seed(self.seed)
        texts = decoder.generate(prior.sample(self.rows, generator=generator), generator, **self.decoding)
        records, _ = parse_valid(schema, texts)
        metrics = {"validity": len(records) / len(texts)}
        if len(records) < MIN_VALID_ROWS:
            return metrics
        synthetic = schema.records_to_frame(records)
        fast, pair_scores = fast_metrics(schema, synthetic, frames, self.target, self.seed)
        metrics.update(fast)
        if self.plots_dir is not None and schema.record_type == "table":
            folder = Path(self.plots_dir) / f"step-{trainer.global_step}"
            plots = {"columns": folder / "columns.png", "pair_trends": folder / "pair_trends.png"}
            plot_columns(schema, frames["train"], synthetic, plots["columns"])
            plot_pair_trends(schema, pair_scores, plots["pair_trends"])
            if isinstance(trainer.logger, WandbLogger):
                log_to_wandb(trainer.logger, schema, synthetic, plots, trainer.global_step, self.table_rows)
        return metrics
