"""A Lightning Trainer for one stage: step budget, periodic validation, best/last checkpoints, logger."""

import os

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from omegaconf import OmegaConf

from difflm.callbacks.last_step import ValidateLastStep
from difflm.callbacks.time_budget import TimeBudget
from difflm.callbacks.timing import StepTimer
from difflm.errors import UserError
from difflm.modules.llm import native_dtype


def wandb_online():
    """W&B goes online only when asked to (an API key, WANDB_MODE=online, or a sweep agent's run); otherwise it
    logs offline, so it never waits on a network it may not have (`wandb sync` uploads later)."""
    mode = os.environ.get("WANDB_MODE")
    if mode in ("offline", "disabled", "dryrun"):
        return False
    return bool(os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_SWEEP_ID") or mode == "online")


def make_logger(cfg, run, stage):
    """The stage's logger, with the resolved config sent to it; W&B runs offline unless wandb_online()."""
    if cfg.logger == "none":
        return False
    if cfg.logger == "csv":
        logger = CSVLogger(save_dir=str(run.root), name="logs", version=stage)
    elif cfg.logger == "wandb":
        from lightning.pytorch.loggers import WandbLogger

        logger = WandbLogger(project=cfg.wandb_project, name=f"{run.root.name}-{stage}",
                             group=cfg.wandb_group or run.root.name,
                             save_dir=str(run.root), offline=not wandb_online())
    else:
        raise UserError(f"logger='{cfg.logger}' is not one of csv, wandb, none")
    logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    return logger


def resolve_precision(precision, accelerator):
    """Lightning's precision, with `auto`: bf16-mixed where the device computes bfloat16 natively (a GPU that
    supports it, a CPU with AVX512-BF16), else 32-true. Elsewhere autocast's bfloat16 is emulated: on the AVX2
    machine measured, a matrix product ran 8 times slower than in float32 and a decoder step about 27 times."""
    if precision != "auto":
        return precision
    on_gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return "bf16-mixed" if native_dtype("cuda" if on_gpu else "cpu") == torch.bfloat16 else "32-true"


def make_trainer(cfg, run, stage, stage_cfg, callbacks=()):
    """A Trainer for the stage; its StepTimer is `trainer.step_timer`. With stage_cfg.max_minutes, max_steps is
    a cap and a TimeBudget decides where the stage ends. The last step is always validated and checkpointed."""
    checkpoint = ModelCheckpoint(dirpath=str(run.stage(stage)), filename="best", monitor="val/loss", mode="min",
                                 save_last=True, enable_version_counter=False, auto_insert_metric_name=False)
    timer = StepTimer()
    if stage_cfg.get("max_minutes") is not None:
        callbacks = [*callbacks, TimeBudget(stage_cfg.max_minutes, stage_cfg.max_steps, key=f"{stage}.max_minutes")]
    trainer = L.Trainer(
        max_steps=stage_cfg.max_steps,
        val_check_interval=min(stage_cfg.val_every_n_steps, stage_cfg.max_steps),
        check_val_every_n_epoch=None,
        limit_val_batches=stage_cfg.get("val_batches", 1.0),
        num_sanity_val_steps=0,
        accelerator=cfg.trainer.accelerator,
        devices=cfg.trainer.devices,
        strategy=cfg.trainer.strategy,
        precision=resolve_precision(stage_cfg.get("precision") or cfg.trainer.precision, cfg.trainer.accelerator),
        log_every_n_steps=cfg.trainer.log_every_n_steps,
        enable_progress_bar=cfg.trainer.enable_progress_bar,
        logger=make_logger(cfg, run, stage),
        callbacks=[checkpoint, timer, ValidateLastStep(), *callbacks],
        default_root_dir=str(run.root),
        enable_model_summary=False,
    )
    trainer.step_timer = timer
    return trainer


def resume_path(run, stage):
    """The stage's last checkpoint if an earlier run of it was interrupted (or finished), else None."""
    last = run.last(stage)
    return str(last) if last.is_file() else None
