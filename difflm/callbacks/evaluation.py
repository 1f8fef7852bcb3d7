"""Downstream evaluation during training: sample rows through the whole pipeline (prior -> decoder -> schema)
and log their validity and the fast metrics as `eval/...`, every k steps and at the end of fit."""

import torch
import lightning as L

from difflm.datamodules.records import load_run_data
from difflm.metrics.coverage import alpha_precision_beta_recall
from difflm.metrics.density import density_errors
from difflm.metrics.detection import c2st_auc
from difflm.metrics.privacy import dcr_share
from difflm.metrics.utility import mle
from difflm.metrics.validity import parse_valid
from difflm.evaluation import privacy_splits

MIN_VALID_ROWS = 10  # fewer valid rows than this: only validity is logged


def fast_metrics(schema, synthetic, frames, target, seed):
    """The cheap metrics of a small synthetic table (fast MLE, density, DCR share, C2ST, alpha-precision and
    beta-recall), flat for logging."""
    metrics = {}
    if target is not None:
        utility = mle(schema, synthetic, frames["test"], target, seed=seed)
        metrics[f"mle_{utility['metric']}"] = utility["score"]
    density = density_errors(schema, frames["train"], synthetic)
    metrics.update(shape_error=density["shape_error"], trend_error=density["trend_error_all_pairs"])
    train_part, holdout, _ = privacy_splits(frames["train"], frames["test"], seed)
    metrics["dcr_share"] = dcr_share(schema, synthetic, train_part, holdout)
    metrics["c2st_auc"] = c2st_auc(schema, frames["train"], synthetic, seed)
    metrics["alpha_precision"], metrics["beta_recall"] = alpha_precision_beta_recall(
        schema, frames["train"], synthetic, seed)
    return metrics


class DownstreamEvaluation(L.Callback):
    """`pick_models(pl_module)` returns (prior, decoder) or None when the other stage is not trained yet."""

    def __init__(self, run, pick_models, rows, every_n_steps=0, target=None, seed=0, temperature=0.5):
        self.run, self.pick_models, self.rows, self.every_n_steps = run, pick_models, rows, every_n_steps
        self.target, self.seed, self.temperature = target, seed, temperature
        self.history = []

    def on_validation_end(self, trainer, pl_module):
        step = trainer.global_step
        if self.every_n_steps and step % self.every_n_steps == 0 and not trainer.sanity_checking:
            self.evaluate(trainer, pl_module)

    def on_train_end(self, trainer, pl_module):
        self.evaluate(trainer, pl_module)

    def evaluate(self, trainer, pl_module):
        models = self.pick_models(pl_module) if self.rows > 0 else None
        if models is None:
            return None
        prior, decoder = models
        schema, frames = load_run_data(self.run)
        was_training = pl_module.training
        generator = torch.Generator().manual_seed(self.seed)
        with torch.no_grad():
            texts = decoder.generate(prior.sample(self.rows, generator=generator), self.temperature, generator)
        pl_module.train(was_training)
        records, _ = parse_valid(schema, texts)
        metrics = {"validity": len(records) / len(texts)}
        if len(records) >= MIN_VALID_ROWS:
            metrics.update(fast_metrics(schema, schema.records_to_frame(records), frames, self.target, self.seed))
        self.history.append({"step": trainer.global_step, **metrics})
        if trainer.logger:
            trainer.logger.log_metrics({f"eval/{k}": float(v) for k, v in metrics.items()}, step=trainer.global_step)
        return metrics
