"""Sweep files and the local sweep runner."""

import json
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from difflm.config import compose
from difflm.errors import UserError
from difflm.sweep import environment, load_sweep, rank, run_sweep, trial_arguments, trial_parameters

SWEEPS = sorted((Path(__file__).resolve().parent.parent / "configs" / "sweeps").glob("*.yaml"))


def test_one_sweep_per_stage_whose_trials_are_valid_train_commands(tmp_path):
    stages = set()
    for path in SWEEPS:
        sweep = load_sweep(path)
        for parameters in trial_parameters(sweep, count=3):
            arguments = trial_arguments(sweep, parameters, [f"run={tmp_path}/${{oc.env:WANDB_RUN_ID}}"])
            assert not any(a.startswith("${") for a in arguments)
            with environment(WANDB_RUN_ID="trial-7"):
                cfg = compose(arguments)  # every parameter is a config key of the right type
            assert cfg.run == f"{tmp_path}/trial-7" and cfg.logger == "wandb"
            for name, value in parameters.items():
                assert OmegaConf.select(cfg, name) == (pytest.approx(value, rel=1e-5) if isinstance(value, float)
                                                       else value)
        stages.add(cfg.stage)
    assert stages == {"vae", "prior", "decoder"}


def test_grid_is_every_combination_and_random_draws_reproduce():
    grid = load_sweep(next(p for p in SWEEPS if p.stem == "decoder"))
    combos = trial_parameters(grid, "grid")
    assert len(combos) == 6 and len({tuple(c.values()) for c in combos}) == 6
    vae = load_sweep(next(p for p in SWEEPS if p.stem == "vae"))
    with pytest.raises(UserError, match="vae.lr has a range: use method=random"):
        trial_parameters(vae, "grid")
    draws = trial_parameters(vae, "random", count=20, seed=3)
    assert draws == trial_parameters(vae, "random", count=20, seed=3) != trial_parameters(vae, "random", 20, 4)
    assert all(1e-4 <= d["vae.lr"] <= 2e-3 and d["model.prefix_tokens"] in (4, 8, 16) for d in draws)
    assert len({d["vae.lr"] for d in draws}) == 20


def test_ranking_puts_the_best_first_and_failures_last():
    trials = [{"metric": 0.3}, {"metric": None}, {"metric": 0.1}]
    assert [t["metric"] for t in rank(trials, "m", "minimize")] == [0.1, 0.3, None]
    assert [t["metric"] for t in rank(trials, "m", "maximize")] == [0.3, 0.1, None]


def test_local_runner_trains_ranks_and_keeps_finished_trials(tmp_path, capsys):
    vae = next(p for p in SWEEPS if p.stem == "vae")
    extra = ["model=tiny", "data.max_rows=240", "vae.max_steps=2", "vae.val_every_n_steps=2", "evaluation.rows=4",
             "trainer.enable_progress_bar=false", f"run={tmp_path}/vae/${{oc.env:WANDB_RUN_ID}}"]
    summary, folder = run_sweep(vae, count=1, extra=extra)
    assert folder == tmp_path / "vae" and summary["metric"] == "val/recon_accuracy"
    trial = summary["trials"][0]
    assert trial["status"] == "ok" and 0 <= trial["metric"] <= 1 and summary["best"]["id"] == "vae-00"
    config = yaml.safe_load((tmp_path / "vae/vae-00/config.yaml").read_text())
    assert config["wandb_group"] == "sweep-vae"
    assert config["vae"]["lr"] == pytest.approx(trial["parameters"]["vae.lr"], rel=1e-5)
    assert "| 1 | vae-00 |" in (folder / "summary.md").read_text()
    again, _ = run_sweep(vae, count=1, extra=extra)  # a finished trial is not run again
    assert "done before, kept" in capsys.readouterr().out and again["trials"] == summary["trials"]
    assert json.loads((folder / "summary.json").read_text())["best"]["id"] == "vae-00"
