"""train(cfg): run the chosen stage(s) in a run directory; stage=all also samples and prints a summary."""

import time

import lightning as L
import torch
from omegaconf import OmegaConf

from difflm import config as config_io
from difflm.callbacks.beta import BetaBacktracking
from difflm.callbacks.evaluation import DownstreamEvaluation
from difflm.datamodules.records import (RecordCollator, RecordDataModule, common_prefix, llm_token_ids,
                                        load_run_data, prepare_run_data, record_texts)
from difflm.errors import UserError
from difflm.latents import cached_latents
from difflm.modules.decoder import DecoderModule
from difflm.modules.llm import load_tokenizer
from difflm.modules.prior import PriorModule
from difflm.modules.vae import VAEModule, load_vae_parts
from difflm.run_dir import STAGES, RunDir
from difflm.sampling import checked_output_path, load_generator, sample_records, write_table
from difflm.summary import print_summary
from difflm.trainer import make_trainer, resume_path


def plain(node):
    return OmegaConf.to_container(node, resolve=True)


def fit_stage(cfg, run, stage, module, data, callbacks=()):
    """Fit one stage (resuming from its last checkpoint if there is one); the median seconds per step."""
    trainer = make_trainer(cfg, run, stage, cfg[stage], callbacks)
    trainer.fit(module, data, ckpt_path=resume_path(run, stage))
    return trainer.step_timer.median


def downstream_evaluation(cfg, run, this_stage):
    """The eval/... callback of the prior or decoder stage; it needs the other of the two trained already."""
    other_stage, other_class = ("decoder", DecoderModule) if this_stage == "prior" else ("prior", PriorModule)
    loaded = {}

    def pick_models(module):
        if other_stage not in loaded:
            loaded[other_stage] = (other_class.load_from_checkpoint(run.best(other_stage), map_location=module.device)
                                   .eval() if run.has(other_stage) else None)
        other = loaded[other_stage]
        if other is None:
            return None
        return (module, other) if this_stage == "prior" else (other, module)

    return DownstreamEvaluation(run, pick_models, cfg.evaluation.rows, cfg.evaluation.every_n_steps,
                                cfg.data.target, cfg.seed, cfg.sample.temperature)


def train_vae(cfg, run):
    schema, frames = prepare_run_data(cfg.data, run, cfg.seed)
    module = VAEModule(plain(cfg.model), plain(cfg.vae), schema.to_dict())
    collate = RecordCollator(load_tokenizer(cfg.model.llm.source), cfg.model.max_length,
                             module.encoder_tokenizer, cfg.model.encoder.max_length)
    data = RecordDataModule(*[[{"text": t} for t in record_texts(schema, frames[s])] for s in ("train", "val")],
                            collate, cfg.vae.batch_size, cfg.seed)
    beta = BetaBacktracking(cfg.vae.beta_max, cfg.vae.beta_min, cfg.vae.beta_decay, cfg.vae.beta_patience)
    return fit_stage(cfg, run, "vae", module, data, [beta])


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


def train_decoder(cfg, run):
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
    token_ids = [llm_token_ids(tokenizer, t, model["max_length"]) for t in texts["train"]]
    max_new_tokens = cfg.sample.max_new_tokens or int(max(map(len, token_ids)) * 1.5) + 8
    module = DecoderModule(model, plain(cfg.decoder), schema.to_dict(), max_new_tokens, common_prefix(token_ids))
    module.projector.load_state_dict(projector_state)
    items = {s: [{"text": t, "mu": mu, "logvar": lv} for t, mu, lv in zip(texts[s], *latents[s])]
             for s in ("train", "val")}
    data = RecordDataModule(items["train"], items["val"], RecordCollator(tokenizer, model["max_length"]),
                            cfg.decoder.batch_size, cfg.seed)
    return fit_stage(cfg, run, "decoder", module, data, [downstream_evaluation(cfg, run, "decoder")])


STAGE_FUNCTIONS = {"vae": train_vae, "prior": train_prior, "decoder": train_decoder}


def sample_to_file(cfg, run, n, out, seed):
    out = checked_output_path(out)
    schema, prior, decoder = load_generator(run)
    s = cfg.sample
    records, stats = sample_records(schema, prior, decoder, n, seed, s.batch_size, s.temperature, s.max_rounds,
                                    s.max_new_tokens)
    write_table(schema, records, out)
    return schema, records, stats


def train(cfg):
    """Run cfg.stage in cfg.run; returns seconds and median seconds per step of each stage (and the
    sampling statistics for stage=all)."""
    if cfg.stage not in (*STAGES, "all"):
        raise UserError(f"stage='{cfg.stage}' is not one of {', '.join(STAGES)}, all")
    run = RunDir(cfg.run)
    if cfg.stage in ("vae", "all"):  # bad data fails here, before anything is written to the run directory
        prepare_run_data(cfg.data, run, cfg.seed)
    run.root.mkdir(parents=True, exist_ok=True)
    config_io.save(cfg, run.config)
    torch.set_float32_matmul_precision("high")
    timings, step_seconds = {}, {}
    for stage in STAGES if cfg.stage == "all" else (cfg.stage,):
        L.seed_everything(cfg.seed, verbose=False)
        started = time.perf_counter()
        step_seconds[stage] = STAGE_FUNCTIONS[stage](cfg, run)
        timings[stage] = round(time.perf_counter() - started, 1)
    result = {"seconds": timings, "seconds_per_step": step_seconds}
    if cfg.stage == "all":
        out = cfg.sample.out or run.root / "samples.csv"
        started = time.perf_counter()
        schema, records, stats = sample_to_file(cfg, run, cfg.sample.n, out, cfg.seed)
        timings["sample"] = round(time.perf_counter() - started, 1)
        _, frames = load_run_data(run)
        print_summary(schema, frames["train"], schema.records_to_frame(records), stats, timings, step_seconds, out)
        result["sample"] = stats
    return result
