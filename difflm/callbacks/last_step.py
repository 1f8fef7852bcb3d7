"""Validate (and so checkpoint) the last step of a fixed-step stage. Lightning stops at max_steps without a
validation unless max_steps is a multiple of the validation interval, and the checkpoints (best and last) are saved
only on validation: a 700-step stage validated every 550 steps kept step 550, losing the cosine schedule's tail.
Lightning validates a step on which training is told to stop, so the callback tells it so at max_steps."""

import lightning as L


class ValidateLastStep(L.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps:
            trainer.should_stop = True
