import math
from pathlib import Path

import pytest
import torch

from difflm.config import compose
from difflm.errors import UserError
from difflm.modules.base import lr_factor


def test_constant_schedule_warms_up_linearly_then_holds():
    factor = lr_factor("constant", 4, 100)
    assert [factor(s) for s in (0, 1, 3, 50, 99)] == [0.25, 0.5, 1.0, 1.0, 1.0]
    assert lr_factor("constant", 0, 100)(0) == 1.0


def test_cosine_schedule_decays_to_zero_at_max_steps():
    factor = lr_factor("cosine", 0, 100)
    assert factor(0) == 1.0 and factor(50) == pytest.approx(0.5) and factor(100) == pytest.approx(0.0, abs=1e-12)
    assert factor(150) == pytest.approx(0.0, abs=1e-12)  # a resumed run past max_steps does not climb back
    warm = lr_factor("cosine", 10, 100)
    assert warm(4) == pytest.approx(0.5 * 0.5 * (1 + math.cos(math.pi * 4 / 100)))


def test_a_horizon_given_as_a_function_is_read_at_every_step():
    horizon = {"steps": 100}
    factor = lr_factor("cosine", 0, lambda: horizon["steps"])
    assert factor(50) == pytest.approx(0.5)
    horizon["steps"] = 50  # a TimeBudget planned fewer steps after the optimizer was built
    assert factor(50) == pytest.approx(0.0, abs=1e-12) and factor(25) == pytest.approx(0.5)


def test_the_scheduler_moves_the_optimizer_each_step():
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor("cosine", 0, 4))
    rates = []
    for _ in range(4):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.5 * (1 + math.cos(3 * math.pi / 4))])


def test_an_unknown_schedule_is_a_clear_error():
    with pytest.raises(UserError, match="lr_schedule='linear' is not one of constant, cosine"):
        lr_factor("linear", 0, 10)


@pytest.mark.parametrize("data", ["adult", "code", "tools"])
@pytest.mark.parametrize("budget", sorted(p.stem for p in (Path(__file__).parent.parent / "configs/budget").glob("*.yaml")))
def test_every_budget_preset_composes_with_schedules_train_accepts(budget, data):
    cfg = compose([f"budget={budget}", f"data={data}"])
    for stage in ("vae", "prior", "decoder"):
        factor = lr_factor(cfg[stage].lr_schedule, cfg[stage].warmup_steps, cfg[stage].max_steps)
        assert 0 < factor(cfg[stage].warmup_steps) <= 1 and factor(cfg[stage].max_steps // 2) > 0
        assert cfg[stage].warmup_steps < cfg[stage].max_steps  # the warm-up ends inside the stage
        # the last step is validated, so the best checkpoint can be the fully decayed one (a time budget's last
        # step always is: tests/test_time_budget.py)
        if cfg[stage].max_minutes is None:
            assert cfg[stage].max_steps % cfg[stage].val_every_n_steps == 0, stage
