"""Downstream evaluation during training: sample rows through the whole pipeline (prior -> decoder -> schema)
and log their validity and the fast metrics as `eval/...`, every k steps and at the end of fit. Real-vs-synthetic
plots are written under `plots_dir/step-<k>/`; with W&B they are logged as images, with a table of the rows."""

from pathlib import Path

import torch
from lightning.pytorch.loggers import WandbLogger

from difflm.callbacks.periodic import PeriodicEvaluation
from difflm.datamodules.records import load_run_data
from difflm.evaluation import privacy_splits
from difflm.metrics.coverage import alpha_precision_beta_recall
from difflm.metrics.density import density_errors
from difflm.metrics.detection import c2st_auc
from difflm.metrics.plots import plot_columns, plot_pair_trends
from difflm.metrics.privacy import dcr_share
from difflm.metrics.utility import mle
from difflm.metrics.validity import parse_valid

MIN_VALID_ROWS = 10  # fewer valid rows than this: only validity is logged


def fast_metrics(schema, synthetic, frames, target, seed, pair_scores=None):
    """The cheap metrics of a small synthetic table (fast MLE, density, DCR share, C2ST, alpha-precision and
    beta-recall), flat for logging. `pair_scores`, a list, receives the per-pair trend scores."""
    metrics = {}
    if target is not None:
        utility = mle(schema, synthetic, frames["test"], target, seed=seed)
        metrics[f"mle_{utility['metric']}"] = utility["score"]
    density = density_errors(schema, frames["train"], synthetic, pair_scores)
    metrics.update(shape_error=density["shape_error"], trend_error=density["trend_error_all_pairs"])
    train_part, holdout, _ = privacy_splits(frames["train"], frames["test"], seed)
    metrics["dcr_share"] = dcr_share(schema, synthetic, train_part, holdout)
    metrics["c2st_auc"] = c2st_auc(schema, frames["train"], synthetic, seed)
    metrics["alpha_precision"], metrics["beta_recall"] = alpha_precision_beta_recall(
        schema, frames["train"], synthetic, seed)
    return metrics


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

    def __init__(self, run, pick_models, rows, every_n_steps=0, target=None, seed=0, temperature=0.5,
                 plots_dir=None, table_rows=50, constrained=False):
        super().__init__(every_n_steps)
        self.run, self.pick_models, self.rows = run, pick_models, rows
        self.target, self.seed, self.temperature = target, seed, temperature
        self.plots_dir, self.table_rows, self.constrained = plots_dir, table_rows, constrained

    def compute(self, trainer, pl_module):
        models = self.pick_models(pl_module) if self.rows > 0 else None
        if models is None:
            return None
        prior, decoder = models
        schema, frames = load_run_data(self.run)
        generator = torch.Generator().manual_seed(self.seed)
        texts = decoder.generate(prior.sample(self.rows, generator=generator), self.temperature, generator,
                                 constrained=self.constrained)
        records, _ = parse_valid(schema, texts)
        metrics = {"validity": len(records) / len(texts)}
        if len(records) < MIN_VALID_ROWS:
            return metrics
        synthetic, pair_scores = schema.records_to_frame(records), []
        metrics.update(fast_metrics(schema, synthetic, frames, self.target, self.seed, pair_scores))
        if self.plots_dir is not None:
            folder = Path(self.plots_dir) / f"step-{trainer.global_step}"
            plots = {"columns": folder / "columns.png", "pair_trends": folder / "pair_trends.png"}
            plot_columns(schema, frames["train"], synthetic, plots["columns"])
            plot_pair_trends(schema, pair_scores[0], plots["pair_trends"])
            if isinstance(trainer.logger, WandbLogger):
                log_to_wandb(trainer.logger, schema, synthetic, plots, trainer.global_step, self.table_rows)
        return metrics
