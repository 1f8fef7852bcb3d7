import json

import torch
from lightning.pytorch.loggers import CSVLogger, WandbLogger

from difflm.run_dir import RunDir
from difflm.trainer import make_logger, wandb_online


def test_loggers_by_name_and_wandb_never_needs_a_server(tiny_cfg, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    run = RunDir(tmp_path)
    assert make_logger(tiny_cfg("logger=none"), run, "vae") is False
    csv = make_logger(tiny_cfg("logger=csv"), run, "vae")
    assert isinstance(csv, CSVLogger)
    csv.save()
    assert "max_steps" in (tmp_path / "logs" / "vae" / "hparams.yaml").read_text()  # the resolved config
    logger = make_logger(tiny_cfg("logger=wandb"), run, "vae")
    assert isinstance(logger, WandbLogger)
    logger.log_metrics({"train/loss": 1.0}, step=0)  # disabled mode: returns at once, no network
    logger.experiment.finish()


def test_wandb_offline_gets_the_samples_table_and_plots(tiny_cfg, tmp_path, monkeypatch):
    """An offline W&B run of the downstream evaluation holds the generated rows as a table and the plots."""
    import pandas as pd

    from difflm.callbacks.evaluation import DownstreamEvaluation
    from difflm.datamodules.records import prepare_run_data

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = tiny_cfg("logger=wandb", "data.max_rows=240")
    run = RunDir(cfg.run)
    schema, frames = prepare_run_data(cfg.data, run, 0)
    real_rows = [schema.to_text(r) for r in frames["train"].to_dict("records")][:12]

    class RealRows:  # stands in for prior and decoder: the evaluation sees real rows
        def sample(self, n, generator=None):
            return [None] * n

        def generate(self, z, generator=None, stats=None, **options):
            return real_rows[: len(z)]

    class Trainer:
        global_step, sanity_checking, callback_metrics = 3, False, {}
        logger = make_logger(cfg, run, "decoder")

    callback = DownstreamEvaluation(run, lambda module: (RealRows(), RealRows()), rows=12, target="income",
                                    plots_dir=run.stage("decoder") / "eval", table_rows=5)
    callback.evaluate(Trainer(), torch.nn.Linear(1, 1))
    Trainer.logger.experiment.finish()
    assert (run.stage("decoder") / "eval/step-3/columns.png").is_file()
    media = next((run.root / "wandb").glob("offline-run-*")) / "files/media"
    table = json.loads(next(media.glob("table/eval/samples_*.table.json")).read_text())
    assert table["columns"] == schema.names and len(table["data"]) == 5
    assert all(isinstance(v, str) for row in table["data"] for v in row)
    assert {p.name.split("_")[0] for p in media.glob("images/eval/*.png")} == {"columns", "pair"}
    assert pd.read_parquet(run.split("train")).shape[0] > 0


def test_wandb_goes_online_only_when_asked(monkeypatch):
    for name in ("WANDB_API_KEY", "WANDB_SWEEP_ID", "WANDB_MODE"):
        monkeypatch.delenv(name, raising=False)
    assert not wandb_online()
    monkeypatch.setenv("WANDB_SWEEP_ID", "abc")  # a sweep agent's trial reports to its server
    assert wandb_online()
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert not wandb_online()
