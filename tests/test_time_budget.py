import lightning as L
import pytest
import torch
from omegaconf import OmegaConf

from difflm.callbacks.time_budget import TimeBudget, budget_seconds, plan_steps
from difflm.config import compose
from difflm.errors import UserError
from difflm.modules.base import StageModule
from difflm.run_dir import RunDir
from difflm.trainer import make_trainer, resume_path


def test_the_plan_fills_the_rest_of_the_budget_within_max_steps():
    # 20 steps took 40 s; 100 s at 2 s a step leave room for 30 more
    assert plan_steps(20, 40.0, 2.0, 100.0, 1000, reserve=0.0) == 50
    assert plan_steps(20, 40.0, 2.0, 100.0, 1000, reserve=0.1) == 45  # 90 s usable: 25 more
    assert plan_steps(20, 40.0, 2.0, 100.0, 30, reserve=0.0) == 30  # max_steps caps it
    assert plan_steps(20, 120.0, 2.0, 100.0, 1000, reserve=0.0) == 21  # already over: stop after the next step


@pytest.mark.parametrize("minutes", [0, -5, "ten", True])
def test_a_budget_that_is_not_a_positive_number_is_a_clear_error(minutes):
    with pytest.raises(UserError, match=r"decoder.max_minutes=.* must be a positive number of minutes, or null"):
        budget_seconds(minutes, "decoder.max_minutes")
    assert budget_seconds(None) is None and budget_seconds(1.5) == 90.0


class FakeClock:
    """Wall time that moves only when a training step runs: `step_seconds` a step, `slow_seconds` for each of the
    first `slow_steps`."""

    def __init__(self, step_seconds=1.0, slow_steps=0, slow_seconds=None):
        self.now, self.steps = 0.0, 0
        self.step_seconds, self.slow_steps, self.slow_seconds = step_seconds, slow_steps, slow_seconds

    def __call__(self):
        return self.now

    def step(self):
        self.steps += 1
        self.now += self.slow_seconds if self.steps <= self.slow_steps else self.step_seconds


class Quadratic(StageModule):
    stage = "quadratic"

    def __init__(self, train):
        super().__init__()
        self.save_hyperparameters("train")
        self.weight = torch.nn.Parameter(torch.ones(2))
        self.clock = None
        self.validated_at = []

    def shared_step(self, batch, split):
        if split == "train":
            self.clock.step()
        loss = (batch[0] * self.weight).sum(dim=1).pow(2).mean()
        self.log_split(split, {"loss": loss}, len(batch[0]))
        return loss

    def on_validation_end(self):
        self.validated_at.append(self.trainer.global_step)


def fit(tmp_path, clock, stop_at=None, minutes=0.5, max_steps=1000, val_every=400):
    """Fit Quadratic for `minutes` budgeted minutes (at most max_steps; None: max_steps exactly) in the run
    tmp_path, resuming if it has a last checkpoint; stop_at interrupts the fit after that step. Returns (trainer,
    module, budget), budget None without minutes."""
    cfg = compose(["logger=none", "trainer.enable_progress_bar=false"])
    stage_cfg = OmegaConf.create({"max_steps": max_steps, "val_every_n_steps": val_every, "val_batches": 1,
                                  "max_minutes": minutes, "precision": "32-true"})
    run = RunDir(tmp_path)
    module = Quadratic({"max_steps": max_steps, "lr": 0.1, "weight_decay": 0.0, "lr_schedule": "cosine",
                        "warmup_steps": 0})
    module.clock = clock
    interrupt = [Interrupt(stop_at)] if stop_at else []
    trainer = make_trainer(cfg, run, "quadratic", stage_cfg, interrupt)
    budget = next((c for c in trainer.callbacks if isinstance(c, TimeBudget)), None)
    if budget:
        budget.clock, budget.probe_steps, budget.reserve = clock, 5, 0.0
    data = torch.utils.data.TensorDataset(torch.randn(200, 2))
    loader = torch.utils.data.DataLoader(data, batch_size=2)
    trainer.fit(module, loader, loader, ckpt_path=resume_path(run, "quadratic"))
    return trainer, module, budget


class Interrupt(L.Callback):
    def __init__(self, step):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step >= self.step:
            trainer.should_stop = True


def test_a_budgeted_stage_plans_its_steps_ends_its_schedule_there_and_validates_the_last_step(tmp_path):
    trainer, module, budget = fit(tmp_path, FakeClock(1.0))
    # timed at 1 s a step over steps 2-6, 30 s hold 30 steps: the cosine reaches 0 on step 30, which is validated
    assert budget.planned == 30 and budget.seconds_per_step == 1.0
    assert trainer.global_step == 30 and module.validated_at == [30]
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-9)
    assert torch.load(tmp_path / "quadratic" / "last.ckpt", weights_only=False)["global_step"] == 30


def test_a_fixed_step_stage_validates_and_checkpoints_its_last_step_off_the_validation_interval(tmp_path):
    # 70 steps validated every 55: without the closing validation both checkpoints would hold step 55
    trainer, module, budget = fit(tmp_path, FakeClock(1.0), minutes=None, max_steps=70, val_every=55)
    assert budget is None and trainer.global_step == 70 and module.validated_at == [55, 70]
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-9)
    for name in ("last", "best"):  # the loss still falls at step 70, so best is the last step too
        assert torch.load(tmp_path / "quadratic" / f"{name}.ckpt", weights_only=False)["global_step"] == 70


def test_a_slow_step_count_is_planned_from_the_measured_speed(tmp_path):
    trainer, _, budget = fit(tmp_path, FakeClock(3.0))
    assert budget.planned == 10 and trainer.global_step == 10  # 30 s at 3 s a step


def test_the_plan_follows_the_speed_once_the_slow_first_steps_are_past(tmp_path):
    # steps 1-6 take 2 s, the rest 1 s: planned at step 6 from 2 s a step (6 + 108 s / 2 = 60 steps), then again
    # every 5 steps from the latest speed until a quarter of the plan is done: 114 steps fill the 120 s
    trainer, module, budget = fit(tmp_path, FakeClock(1.0, slow_steps=6, slow_seconds=2.0), minutes=2)
    assert budget.planned == 114 and trainer.global_step == 114 and module.validated_at == [114]
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-9)


def test_a_resumed_budgeted_stage_keeps_its_plan_and_its_spent_time(tmp_path):
    trainer, module, budget = fit(tmp_path, FakeClock(1.0), stop_at=12)
    assert trainer.global_step == 12 and budget.planned == 30
    resumed, module, budget = fit(tmp_path, FakeClock(1.0))
    assert budget.planned == 30 and budget.spent_before == pytest.approx(12.0)
    assert resumed.global_step == 30 and module.validated_at == [30]
    assert resumed.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-9)
    finished, module, _ = fit(tmp_path, FakeClock(1.0))  # a finished stage trains no further
    assert finished.global_step == 30 and module.validated_at == []


def test_training_minutes_caps_the_decoder_by_what_the_earlier_stages_left(tmp_path):
    import json

    from difflm.pipeline import stage_minutes

    run = RunDir(tmp_path / "run")

    def spent(vae, prior):
        for stage, seconds in (("vae", vae), ("prior", prior)):
            run.stage(stage).mkdir(parents=True, exist_ok=True)
            record = {"steps": 100} if seconds is None else {"steps": 100, "seconds": seconds}
            (run.stage(stage) / "metrics.json").write_text(json.dumps(record))

    cfg = compose([f"run={run.root}", "model=tiny", "training_minutes=57", "decoder.max_minutes=45"])
    spent(640.0, 740.0)  # a slow machine: 23 minutes before the decoder
    assert stage_minutes(cfg, run, "decoder") == pytest.approx(57 - 23)
    assert stage_minutes(cfg, run, "finetune") == pytest.approx(57 - 23)  # the decoder's budget, for equal cost
    assert stage_minutes(cfg, run, "vae") is None  # no budget of its own: none from the run either
    spent(194.0, 260.0)  # a fast one: the decoder's own 45 minutes fit
    assert stage_minutes(cfg, run, "decoder") == 45
    spent(None, 260.0)  # a stage saved before stages recorded their seconds counts 0
    assert stage_minutes(cfg, run, "decoder") == 45
    assert stage_minutes(compose([f"run={run.root}", "model=tiny", "decoder.max_minutes=45"]), run, "decoder") == 45
    spent(3000.0, 500.0)
    with pytest.raises(UserError, match=r"training_minutes=57 leaves 0 s for the decoder stage after vae \(3000 s\), "
                                        r"prior \(500 s\): raise training_minutes, or set it to null"):
        stage_minutes(cfg, run, "decoder")
