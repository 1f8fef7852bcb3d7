"""train(cfg): run the chosen stage(s) in a run directory; stage=all also samples and prints a summary."""

import json
import time
from functools import partial

import lightning as L
import torch
from omegaconf import OmegaConf

from difflm import config as config_io
from difflm.config import plain
from difflm.callbacks.beta import BetaBacktracking
from difflm.callbacks.evaluation import DownstreamEvaluation
from difflm.callbacks.reconstruction import ReconstructionAccuracy
from difflm.callbacks.time_budget import budget_seconds
from difflm.columns import ColumnWeights
from difflm.datamodules.records import (RecordCollator, RecordDataModule, decoding_setup, load_run_data,
                                        prepare_run_data, record_texts)
from difflm.datamodules.record_types import load_schema
from difflm.errors import UserError
from difflm.latents import cached_latents
from difflm.modules.base import lr_factor
from difflm.modules.decoder import DecoderModule
from difflm.modules.llm import load_tokenizer
from difflm.modules.prior import PriorModule, StandardNormalPrior
from difflm.modules.vae import VAEModule, load_vae_parts
from difflm.run_dir import BASELINE_STAGES, STAGES, RunDir, atomic_write_text, link_upstream, unlink_borrowed
from difflm.predict import sample_to_file
from difflm.sampling import decoding_options
from difflm.summary import print_summary
from difflm.trainer import make_trainer, resume_path


def stage_config(cfg, stage):
    """A stage's config section. finetune is the decoder stage reading no latent (GReaT-style fine-tuning), with the
    decoder's budget, so the two compare at equal cost."""
    if stage == "finetune":
        return OmegaConf.merge(cfg.decoder, {"use_latent": False})
    return cfg[stage]


def stage_minutes(cfg, run, stage):
    """The wall-clock budget of a stage in minutes: its own `<stage>.max_minutes`, capped by what is left of the
    run's `training_minutes` after the stages trained before it (vae, then prior; the finetune baseline counts as the
    decoder), as their <run>/<stage>/metrics.json record them ("seconds"; a stage saved without them counts 0).
    None: no budget. A slower machine thus gives the decoder fewer minutes instead of running past the budget."""
    own = stage_config(cfg, stage).get("max_minutes")
    if own is None or cfg.training_minutes is None:
        return own
    before = STAGES[:STAGES.index(stage if stage in STAGES else "decoder")]
    spent = {s: stage_seconds(run, s) for s in before}
    left = budget_seconds(cfg.training_minutes, "training_minutes") - sum(spent.values())
    if left < 60:
        raise UserError(f"training_minutes={cfg.training_minutes} leaves {max(left, 0):.0f} s for the {stage} stage "
                        f"after {', '.join(f'{s} ({v:.0f} s)' for s, v in spent.items())}: raise training_minutes, "
                        f"or set it to null to give {stage}.max_minutes whole")
    return min(own, left / 60)


def stage_seconds(run, stage):
    record = run.stage(stage) / "metrics.json"
    return json.loads(record.read_text()).get("seconds", 0.0) if record.is_file() else 0.0


def fit_stage(cfg, run, stage, module, data, callbacks=()):
    """Fit one stage (resuming from its last checkpoint if there is one); returns its final metrics (the last value
    of everything it logged) with the median seconds per step and the steps, which train() saves."""
    section = OmegaConf.merge(stage_config(cfg, stage), {"max_minutes": stage_minutes(cfg, run, stage)})
    trainer = make_trainer(cfg, run, stage, section, callbacks)
    trainer.fit(module, data, ckpt_path=resume_path(run, stage))
    metrics = {name: round(float(value), 6) for name, value in sorted(trainer.callback_metrics.items())}
    metrics["seconds_per_step"] = trainer.step_timer.median
    metrics["steps"] = trainer.global_step
    return metrics


def downstream_evaluation(cfg, run, this_stage):
    """The eval/... callback of the prior, decoder or finetune stage; the first two need the other trained already."""
    other_stage, other_class = ("decoder", DecoderModule) if this_stage == "prior" else ("prior", PriorModule)
    loaded = {}

    def pick_models(module):
        if this_stage == "finetune":  # its decoder reads no latent
            return StandardNormalPrior(module.hparams.model["latent_dim"], module.device), module
        if other_stage not in loaded:
            loaded[other_stage] = (other_class.load_from_checkpoint(run.best(other_stage), map_location=module.device)
                                   .eval() if run.has(other_stage) else None)
        other = loaded[other_stage]
        if other is None:
            return None
        return (module, other) if this_stage == "prior" else (other, module)

    e = cfg.evaluation
    return DownstreamEvaluation(run, pick_models, e.rows, e.every_n_steps, cfg.data.target, cfg.seed,
                                decoding_options(cfg), run.stage(this_stage) / "eval", e.table_rows)


def train_vae(cfg, run):
    schema, frames = prepare_run_data(cfg.data, run, cfg.seed)
    module = VAEModule(plain(cfg.model), plain(cfg.vae), schema.to_dict())
    collate = RecordCollator(module.tokenizer, cfg.model.max_length, module.encoder_tokenizer,
                             cfg.model.encoder.max_length)
    texts = {s: record_texts(schema, frames[s]) for s in ("train", "val")}
    data = RecordDataModule(*[[{"text": t} for t in texts[s]] for s in ("train", "val")],
                            collate, cfg.vae.batch_size, cfg.seed)
    beta = BetaBacktracking(cfg.vae.beta_max, cfg.vae.beta_min, cfg.vae.beta_decay, cfg.vae.beta_patience)
    # a reconstruction longer than the longest record cannot be exact: no need to decode further
    max_new_tokens, prompt_ids = decoding_setup(module.tokenizer, texts["train"], cfg.model.max_length,
                                                cfg.sample.max_new_tokens, 1.0)
    reconstruction = ReconstructionAccuracy(schema, frames["val"].head(cfg.evaluation.rows).to_dict("records"),
                                            collate, max_new_tokens, prompt_ids, cfg.evaluation.every_n_steps,
                                            cfg.sample.batch_size)
    return fit_stage(cfg, run, "vae", module, data, [beta, reconstruction])


def train_prior(cfg, run):
    run.best("vae")  # a clear error before anything else if there is no VAE yet
    schema, frames = load_run_data(run)
    latents = cached_latents(run, schema, frames, cfg.prior.encode_batch_size)
    train_mu, val_mu = latents["train"][0], latents["val"][0]
    module = PriorModule(train_mu.shape[1], plain(cfg.prior))
    module.fit_normalisation(train_mu)
    data = L.LightningDataModule.from_datasets(
        torch.utils.data.TensorDataset(train_mu), torch.utils.data.TensorDataset(val_mu),
        batch_size=cfg.prior.batch_size)
    return fit_stage(cfg, run, "prior", module, data, [downstream_evaluation(cfg, run, "prior")])


def build_decoder(cfg, run, stage="decoder"):
    """(the decoder (or finetune) stage's module as it starts training: LoRA adapters at zero, the VAE's projector;
    its data)."""
    vae_hparams, _, _, projector_state = load_vae_parts(run.best("vae"))
    model = vae_hparams["model"]
    for key in ("llm", "encoder", "latent_dim", "injection", "prefix_tokens"):
        if plain(cfg.model)[key] != model[key]:
            raise UserError(f"model.{key} differs from the VAE's in {run.root} ({model[key]!r}); the decoder must "
                            "read the latents the VAE was trained with: use another run= or drop the override")
    model.update(lora=plain(cfg.model.lora), quantization=cfg.model.quantization)
    schema, frames = load_run_data(run)
    latents = cached_latents(run, schema, frames, cfg.prior.encode_batch_size)
    tokenizer = load_tokenizer(model["llm"]["source"])
    texts = {s: record_texts(schema, frames[s]) for s in ("train", "val")}
    max_new_tokens, prompt_ids = decoding_setup(tokenizer, texts["train"], model["max_length"],
                                                cfg.sample.max_new_tokens)
    module = DecoderModule(model, plain(stage_config(cfg, stage)), schema.to_dict(), max_new_tokens, prompt_ids)
    module.projector.load_state_dict(projector_state)
    items = {s: [{"text": t, "mu": mu, "logvar": lv} for t, mu, lv in zip(texts[s], *latents[s])]
             for s in ("train", "val")}
    collate = RecordCollator(tokenizer, model["max_length"], **label_choices(cfg.decoder.loss_on, module),
                             **target_weights(cfg.decoder.target_loss_weight, cfg.data.target, schema, tokenizer))
    data = RecordDataModule(items["train"], items["val"], collate, cfg.decoder.batch_size, cfg.seed)
    return module, data


def label_choices(loss_on, module):
    """decoder.loss_on -> RecordCollator's `walk`: every token carries loss (all), only the tokens constrained
    decoding draws (free), or those, each over the tokens the grammar allows in its place (constrained)."""
    if loss_on == "all":
        return {}
    if loss_on not in ("free", "constrained"):
        raise UserError(f"decoder.loss_on='{loss_on}' is not one of all, free, constrained")
    constraint = module.constraint()
    if constraint is None:
        raise UserError(f"decoder.loss_on={loss_on} needs a record grammar, and {module.schema.record_type} records "
                        "have none: use decoder.loss_on=all")
    vocab_size = module.llm.config.vocab_size if loss_on == "constrained" else None
    return dict(walk=partial(constraint.walk, vocab_size=vocab_size))


def target_weights(weight, target, schema, tokenizer):
    """decoder.target_loss_weight -> RecordCollator's `weigh`: the tokens of data.target's column weigh `weight` in
    the training loss, the others 1. Nothing to weigh at 1, nor without a target column (code and tool records have
    none), so a preset may set it for any data. (compose has already refused a value that is not a number.)"""
    if weight <= 0:
        raise UserError(f"decoder.target_loss_weight must be a number > 0, got {weight!r}")
    if weight == 1 or target is None or schema.record_type != "table":
        return {}
    return dict(weigh=ColumnWeights(tokenizer, schema.names.index(target), weight))


def train_decoder(cfg, run):
    module, data = build_decoder(cfg, run)
    return fit_stage(cfg, run, "decoder", module, data, [downstream_evaluation(cfg, run, "decoder")])


def train_finetune(cfg, run):
    module, data = build_decoder(cfg, run, "finetune")
    return fit_stage(cfg, run, "finetune", module, data, [downstream_evaluation(cfg, run, "finetune")])


STAGE_FUNCTIONS = {"vae": train_vae, "prior": train_prior, "decoder": train_decoder, "finetune": train_finetune}


def train(cfg):
    """Run cfg.stage in cfg.run; returns seconds and median seconds per step of each stage (and the
    sampling statistics for stage=all)."""
    if cfg.stage not in (*STAGES, *BASELINE_STAGES, "all"):
        raise UserError(f"stage='{cfg.stage}' is not one of {', '.join((*STAGES, *BASELINE_STAGES))}, all")
    run = RunDir(cfg.run)
    stages = STAGES if cfg.stage == "all" else (cfg.stage,)
    for stage in stages:  # a bad schedule fails here, not after the data and earlier stages are written
        section = stage_config(cfg, stage)
        lr_factor(section.lr_schedule, section.warmup_steps, section.max_steps)
        budget_seconds(section.get("max_minutes"), f"{stage}.max_minutes")
    budget_seconds(cfg.training_minutes, "training_minutes")
    if cfg.stage == "all" and cfg.sample.n is not None and (not isinstance(cfg.sample.n, int) or cfg.sample.n < 1):
        raise UserError(f"sample.n={cfg.sample.n!r} must be a positive integer, or null for as many rows as the "
                        "training split")
    if cfg.upstream:
        link_upstream(run, cfg.upstream, stages)
    unlink_borrowed(run, stages)
    if cfg.stage in ("vae", "all"):  # bad data fails here, before anything is written to the run directory
        prepare_run_data(cfg.data, run, cfg.seed)
    run.root.mkdir(parents=True, exist_ok=True)
    config_io.save(cfg, run.config)
    torch.set_float32_matmul_precision("high")
    timings, step_seconds, metrics = {}, {}, {}
    for stage in stages:
        L.seed_everything(cfg.seed, verbose=False)
        spent_before = stage_seconds(run, stage) if resume_path(run, stage) else 0.0  # a resumed stage's earlier runs
        started = time.perf_counter()
        metrics[stage] = STAGE_FUNCTIONS[stage](cfg, run)
        step_seconds[stage] = metrics[stage]["seconds_per_step"]
        timings[stage] = round(time.perf_counter() - started, 1)
        # its wall time in all its sessions, data and latents included: what training_minutes subtracts
        metrics[stage]["seconds"] = round(spent_before + timings[stage], 1)
        atomic_write_text(run.stage(stage) / "metrics.json", json.dumps(metrics[stage], indent=2))
    result = {"seconds": timings, "seconds_per_step": step_seconds, "metrics": metrics}
    if cfg.stage == "all":
        out = cfg.sample.out or run.root / ("samples.csv" if load_schema(run.schema).record_type == "table"
                                            else "samples.jsonl")
        _, frames = load_run_data(run)
        started = time.perf_counter()
        sampled = sample_to_file(cfg, run, cfg.sample.n or len(frames["train"]), out, cfg.seed)
        if sampled is None:  # another process of a ddp run (trainer.devices=N): the first one writes and reports
            return result
        schema, records, stats = sampled
        timings["sample"] = round(time.perf_counter() - started, 1)
        print_summary(schema, frames, schema.records_to_frame(records), stats, timings, step_seconds, out)
        result["sample"] = stats
    return result
