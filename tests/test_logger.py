from lightning.pytorch.loggers import CSVLogger, WandbLogger

from difflm.run_dir import RunDir
from difflm.trainer import make_logger


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
