"""What every stage's LightningModule shares: one step for train/val/test, logging as `split/name`,
an optimizer over the trainable parameters only, and checkpoints that describe themselves."""

import warnings

import lightning as L
import torch

from difflm import __version__


# Stages around a frozen pretrained model leave its weights out of their checkpoints on purpose;
# on_load_checkpoint checks instead that every trained weight is there.
warnings.filterwarnings("ignore", message="Found keys that are in the model state dict but not in the checkpoint")


class StageModule(L.LightningModule):
    stage = None
    saves_trainable_only = False  # stages around a frozen pretrained LLM save only what trained

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
                      batch_size=batch_size)

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.hparams.train["lr"], weight_decay=self.hparams.train["weight_decay"])

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
