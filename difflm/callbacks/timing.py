"""Log the wall time of each training step as `train/seconds_per_step` (median kept for the run summary)."""

import statistics
import time

import lightning as L


class StepTimer(L.Callback):
    def __init__(self):
        self.seconds = []
        self._started = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._started = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.seconds.append(time.perf_counter() - self._started)
        pl_module.log("train/seconds_per_step", self.seconds[-1], on_step=True, on_epoch=False)

    @property
    def median(self):
        return round(statistics.median(self.seconds), 3) if self.seconds else None
