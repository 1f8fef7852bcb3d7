"""An evaluation that runs every k training steps (after that step's validation) and at the end of fit, and
logs its metrics as `<prefix>/<name>`: to the logger, and into trainer.callback_metrics (so checkpoints, the
sweep runner and the stage's metrics.json see them)."""

from contextlib import contextmanager

import lightning as L
import torch


@contextmanager
def evaluation_mode(module):
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was_training)


class PeriodicEvaluation(L.Callback):
    prefix = "eval"

    def __init__(self, every_n_steps=0):
        self.every_n_steps = every_n_steps
        self.history = []

    def compute(self, trainer, pl_module):
        """The metrics to log, or None to skip this evaluation."""
        raise NotImplementedError

    def on_validation_end(self, trainer, pl_module):
        step = trainer.global_step
        if self.every_n_steps and step % self.every_n_steps == 0 and not trainer.sanity_checking:
            self.evaluate(trainer, pl_module)

    def on_train_end(self, trainer, pl_module):
        self.evaluate(trainer, pl_module)

    def evaluate(self, trainer, pl_module):
        with evaluation_mode(pl_module):
            metrics = self.compute(trainer, pl_module)
        if metrics is None:
            return None
        self.history.append({"step": trainer.global_step, **metrics})
        named = {f"{self.prefix}/{k}": float(v) for k, v in metrics.items() if v is not None}
        if trainer.logger:
            trainer.logger.log_metrics(named, step=trainer.global_step)
        trainer.callback_metrics.update({k: torch.tensor(v) for k, v in named.items()})
        return metrics
