"""What every stage's LightningModule shares: one step for train/val/test, logging as `split/name`,
an optimizer over the trainable parameters only, and checkpoints that describe themselves."""

import math
import warnings

import lightning as L
import torch

from difflm import __version__
from difflm.errors import UserError


# Stages around a frozen pretrained model leave its weights out of their checkpoints on purpose;
# on_load_checkpoint checks instead that every trained weight is there.
warnings.filterwarnings("ignore", message="Found keys that are in the model state dict but not in the checkpoint")


def lr_factor(schedule, warmup_steps, max_steps):
    """step -> the learning rate's multiplier: a linear warm-up over warmup_steps, then constant, or a cosine
    decay to 0 at max_steps (one short run ends on small steps instead of wherever a constant rate left it).
    max_steps may be a function that returns it, read at every step: a TimeBudget plans the horizon late."""
    if schedule not in ("constant", "cosine"):
        raise UserError(f"lr_schedule='{schedule}' is not one of constant, cosine")
    horizon = max_steps if callable(max_steps) else lambda: max_steps

    def factor(step):
        warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
        steps = horizon()
        if schedule == "constant" or not steps or steps < 0:
            return warm
        return warm * 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))
    return factor


class StageModule(L.LightningModule):
    stage = None
    saves_trainable_only = False  # stages around a frozen pretrained LLM save only what trained
    schedule_steps = None  # the learning-rate schedule's horizon where a TimeBudget planned one; else max_steps

    def shared_step(self, batch, split):
        raise NotImplementedError

    def on_fit_start(self):
        # from_pretrained leaves models in eval mode and Lightning keeps each module's mode: without this,
        # the encoder's and the LoRA adapters' dropout would be off while training
        self.train()

    def training_step(self, batch, batch_idx):
        return self.shared_step(batch, "train")

    def validation_step(self, batch, batch_idx):
        return self.shared_step(batch, "val")

    def test_step(self, batch, batch_idx):
        return self.shared_step(batch, "test")

    def log_split(self, split, metrics, batch_size):
        self.log_dict({f"{split}/{name}": float(value) if isinstance(value, (int, float)) else value.detach()
                       for name, value in metrics.items()},
                      on_step=split == "train", on_epoch=split != "train", prog_bar=split == "train",
                      batch_size=batch_size, sync_dist=split != "train")  # ddp: val/test over every process's rows

    def param_groups(self):
        return [dict(params=[p for p in self.parameters() if p.requires_grad], lr=self.hparams.train["lr"])]

    def configure_optimizers(self):
        train = self.hparams.train
        optimizer = torch.optim.AdamW(self.param_groups(), weight_decay=train["weight_decay"])
        schedule, warmup = train.get("lr_schedule", "constant"), train.get("warmup_steps", 0)
        factor = lr_factor(schedule, warmup, lambda: self.schedule_steps or train["max_steps"])
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    @property
    def strict_loading(self):
        return not self.saves_trainable_only

    def trainable_state_keys(self):
        return {name for name, p in self.named_parameters() if p.requires_grad}

    def on_load_checkpoint(self, checkpoint):
        """A trainable-only checkpoint must still hold every weight that trains."""
        if self.saves_trainable_only:
            missing = sorted(self.trainable_state_keys() - set(checkpoint["state_dict"]))
            if missing:
                raise RuntimeError(f"checkpoint lacks {len(missing)} trained weights, e.g. {missing[:3]}: "
                                   "it was written by a different model configuration")

    def on_save_checkpoint(self, checkpoint):
        if self.saves_trainable_only:
            keep = self.trainable_state_keys()
            checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}
        checkpoint["difflm"] = {"version": __version__, "stage": self.stage}
