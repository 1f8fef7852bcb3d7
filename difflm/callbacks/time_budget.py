"""Train a stage for a wall-clock budget instead of a fixed number of steps. After `probe_steps` steps the
callback measures the median wall time of a step, plans how many steps fit in the budget (never more than
max_steps), sizes the learning-rate schedule to end on that step (a cosine reaches 0 there) and stops after it.
The first steps run slower than the rest, so the plan is made again every `probe_steps` steps from the latest
speed, until a quarter of it is done (where a cosine has barely moved, so the horizon can still shift).
Lightning validates a step on which training is told to stop, so the best and last checkpoints fall on it.
The plan and the time spent so far travel in the checkpoint: a resumed run keeps the same plan."""

import statistics
import time

import lightning as L
from lightning.pytorch.utilities import rank_zero_info

from difflm.errors import UserError


def budget_seconds(minutes, key="max_minutes"):
    """The budget in seconds, or None for no budget; anything else than a positive number is a clear error."""
    if minutes is None:
        return None
    if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or minutes <= 0:
        raise UserError(f"{key}={minutes!r} must be a positive number of minutes, or null for no time budget")
    return float(minutes) * 60


def plan_steps(step, elapsed, seconds_per_step, budget, max_steps, reserve):
    """How many steps in all fit the budget: the `step` done in `elapsed` seconds, then as many more as the rest
    of the budget (less a `reserve` share of it, for validation and the closing evaluation) holds at
    seconds_per_step; at least one more, at most max_steps."""
    left = budget * (1 - reserve) - elapsed
    more = int(left // seconds_per_step) if seconds_per_step > 0 else max_steps
    return max(step + 1, min(max_steps, step + more))


class TimeBudget(L.Callback):
    def __init__(self, minutes, max_steps, probe_steps=20, reserve=0.03, replan_until=0.25, key="max_minutes",
                 clock=time.perf_counter):
        self.budget = budget_seconds(minutes, key)
        self.clock = clock
        self.max_steps, self.probe_steps = max_steps, probe_steps
        self.reserve, self.replan_until = reserve, replan_until
        self.planned = None
        self.resumed = False  # a plan from the checkpoint is kept as it is
        self.seconds_per_step = None
        self.spent_before = 0.0  # seconds of the earlier sessions of a resumed run
        self._started = None
        self._batch_ends = []

    def elapsed(self):
        return self.spent_before + (self.clock() - self._started if self._started is not None else 0.0)

    def on_train_start(self, trainer, pl_module):
        self._started = self.clock()
        self._batch_ends = [self._started]
        if self.planned is not None:
            self.resumed = True
            pl_module.schedule_steps = self.planned
            trainer.should_stop = trainer.global_step >= self.planned

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._batch_ends.append(self.clock())
        step = trainer.global_step
        timed = len(self._batch_ends) - 2  # the first step (allocation, first calls) is never timed
        if (timed >= self.probe_steps and timed % self.probe_steps == 0 and not self.resumed
                and (self.planned is None or step < self.replan_until * self.planned)):
            recent = self._batch_ends[1:][-(5 * self.probe_steps + 1):]  # from the first step's end on
            self.seconds_per_step = statistics.median(b - a for a, b in zip(recent, recent[1:]))
            # every process of a ddp/fsdp run keeps rank 0's plan, or they would stop at different steps and hang
            planned, self.planned = self.planned, trainer.strategy.broadcast(plan_steps(
                step, self.elapsed(), self.seconds_per_step, self.budget, self.max_steps, self.reserve))
            pl_module.schedule_steps = self.planned
            if self.planned != planned:
                rank_zero_info(f"time budget: {self.planned} steps fit in {self.budget / 60:g} min at "
                               f"{self.seconds_per_step:.2f} s a step (max_steps {self.max_steps})")
                if trainer.logger:
                    trainer.logger.log_metrics({"train/planned_steps": self.planned}, step=step)
        if trainer.strategy.broadcast((self.planned is not None and step >= self.planned)
                                      or self.elapsed() >= self.budget):
            trainer.should_stop = True

    def state_dict(self):
        return {"planned": self.planned, "seconds_per_step": self.seconds_per_step, "spent": self.elapsed(),
                "budget": self.budget}

    def load_state_dict(self, state_dict):
        self.planned = state_dict["planned"]
        self.seconds_per_step = state_dict["seconds_per_step"]
        self.spent_before = state_dict["spent"]
