"""Sampling at scale through Lightning's predict loop: the chunks of a sampling run (difflm.sampling) are shared
among the devices (trainer.devices=N, strategy=ddp); each finished chunk is saved at once, atomically, under
`<out>.parts/`; when all are done the first process merges them, in chunk order, into the output file (written
atomically too) and removes the parts. An interrupted run leaves finished chunks and no output file;
resume=true makes only the missing chunks. Chunks are seeded by (seed, chunk), so the rows of a seed are the
same on one device or many."""

import json
import os
import shutil
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from tqdm.auto import tqdm

from difflm.column_temperature import column_temperatures
from difflm.conditions import check_satisfiable, parse_conditions
from difflm.config import plain
from difflm.datamodules.records import load_run_data
from difflm.datamodules.record_types import load_schema
from difflm.errors import UserError
from difflm.guidance import make_conditioning
from difflm.run_dir import atomic_write, atomic_write_text
from difflm.sampling import (checked_output_path, chunk_generator, chunk_sizes, decoding_options, load_generator,
                             merge_stats, method_stages, sample_chunk, write_table)

# the writer names each chunk by its index, not by the sampler's batch indices
warnings.filterwarnings("ignore", message="Couldn't infer the batch indices")


def parts_dir(out):
    return out.with_name(out.name + ".parts")


def chunk_path(parts, chunk):
    return parts / f"chunk-{chunk:06d}.pt"


def load_conditioning(run, schema, raw, sample_cfg, seed):
    """The run's difflm.guidance.Conditioning for {column: raw condition}, or None without conditions; a
    UserError for an unknown column or value, or conditions no training row meets."""
    if not raw:
        return None
    conditions = parse_conditions(schema, raw)
    _, frames = load_run_data(run)
    check_satisfiable(conditions, frames["train"])
    latents = None
    if sample_cfg.condition_mode == "guided":
        if not run.latents.is_file():
            raise UserError(f"{run.latents} is missing: retrain the prior (`python train.py stage=prior "
                            f"run={run.root}`) or use sample.condition_mode=decoding")
        latents = torch.load(run.latents, weights_only=False)["latents"]["train"][0]
    return make_conditioning(conditions, sample_cfg.condition_mode, plain(sample_cfg.condition_oversample), schema,
                             frames["train"], latents, seed)


def manifest(cfg, run, n, seed, conditions):
    """What a sampling run's chunks depend on: a resumed run must match it."""
    def checkpoint(stage):
        path = run.best(stage).resolve()
        return f"{path}:{path.stat().st_mtime_ns}"
    s = cfg.sample
    return {"n": n, "seed": seed, "batch_size": s.batch_size, "max_rounds": s.max_rounds,
            "decoding": decoding_options(cfg), "conditions": conditions, "condition_mode": s.condition_mode,
            "condition_oversample": plain(s.condition_oversample), "method": s.method,
            **({"prompt": plain(s.prompt)} if s.method == "prompt" else {}),
            **{stage: checkpoint(stage) for stage in method_stages(s.method)}}


def prepare_parts(parts, expected, resume):
    """The parts folder for this run: kept (resume, same manifest) or started afresh. Returns the finished chunks."""
    found = parts / "manifest.json"
    if resume and found.is_file():
        previous = json.loads(found.read_text())
        changed = [key for key in expected if previous.get(key) != expected[key]]
        if changed:
            key = changed[0]
            raise UserError(f"resume=true, but {parts} was sampled with {key}={previous.get(key)!r}, not "
                            f"{expected[key]!r}: use the same settings, or drop resume=true to start over")
    else:
        shutil.rmtree(parts, ignore_errors=True)
        parts.mkdir(parents=True)
        atomic_write_text(found, json.dumps(expected, indent=2))
    return finished_chunks(parts)


def finished_chunks(parts):
    return {int(path.stem.split("-")[1]) for path in parts.glob("chunk-*.pt")}


def merge_parts(schema, parts, out, n, seconds, rows_made, save_latents):
    """Concatenate the chunks in order into `out` (and `<out>.latents.pt`); returns the records and statistics."""
    chunks = [torch.load(chunk_path(parts, k), weights_only=False) for k in range(len(finished_chunks(parts)))]
    records = [record for chunk in chunks for record in chunk["records"]]
    if len(records) != n:
        raise RuntimeError(f"the chunks under {parts} hold {len(records)} rows, not {n}")
    write_table(schema, records, out)
    if save_latents:
        latents = torch.cat([chunk["latents"] for chunk in chunks])
        atomic_write(latents_path(out), lambda tmp: torch.save(latents, tmp))
    stats = merge_stats([chunk["stats"] for chunk in chunks], seconds, chunks[0]["stats"]["constrained"])
    stats["rows_per_second"] = round(rows_made / seconds, 3) if rows_made else None
    stats["resumed_rows"] = n - rows_made
    shutil.rmtree(parts)
    return records, stats


def latents_path(out):
    return out.with_name(out.name + ".latents.pt")


class ChunkDataset(torch.utils.data.Dataset):
    def __init__(self, chunks):
        self.chunks = chunks  # [(chunk index, rows)]

    def __len__(self):
        return len(self.chunks)

    def __getitem__(self, i):
        return self.chunks[i]


class SamplingModule(L.LightningModule):
    """predict_step makes one chunk. The prior and decoder are loaded in setup, on this process's device."""

    def __init__(self, run, parts, sizes, seed, sample_cfg, decoding, conditioning=None):
        super().__init__()
        self.run, self.parts, self.sizes, self.seed = run, parts, sizes, seed
        self.sample_cfg, self.decoding, self.conditioning = sample_cfg, decoding, conditioning

    def setup(self, stage):
        self.trainer.strategy.barrier()  # the first process has prepared the parts folder
        self.todo = [k for k in range(len(self.sizes)) if k not in finished_chunks(self.parts)]
        self.schema, self.prior, self.decoder = load_generator(self.run, self.trainer.strategy.root_device,
                                                               self.sample_cfg.method, plain(self.sample_cfg.prompt))
        if self.trainer.world_size > 1 and self.device.type == "cpu":  # the processes share the cores
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.trainer.num_devices))

    def predict_dataloader(self):
        chunks = [(k, self.sizes[k]) for k in self.todo]
        return torch.utils.data.DataLoader(ChunkDataset(chunks), batch_size=None, shuffle=False)

    def predict_step(self, batch, batch_idx):
        chunk, rows = (int(x) for x in batch)
        started = time.perf_counter()
        s = self.sample_cfg
        records, latents, stats = sample_chunk(self.schema, self.prior, self.decoder, rows,
                                               chunk_generator(self.seed, chunk), s.batch_size, s.max_rounds,
                                               self.conditioning, **self.decoding)
        stats.update(seconds=time.perf_counter() - started, constrained=s.constrained)
        return {"chunk": chunk, "records": records, "latents": latents, "stats": stats}


class ChunkWriter(BasePredictionWriter):
    """Saves each chunk as it is made; a progress bar over rows on the first process."""

    def __init__(self, parts, progress):
        super().__init__(write_interval="batch")
        self.parts, self.progress = parts, progress

    def on_predict_start(self, trainer, pl_module):
        total, todo = sum(pl_module.sizes), sum(pl_module.sizes[k] for k in pl_module.todo)
        desc = "sampling" if trainer.world_size == 1 else f"sampling (process 0 of {trainer.world_size})"
        self.bar = tqdm(total=total, initial=total - todo, desc=desc, unit="row",
                        disable=not (self.progress and trainer.is_global_zero))

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        atomic_write(chunk_path(self.parts, prediction["chunk"]), lambda tmp: torch.save(prediction, tmp))
        self.bar.update(min(len(prediction["records"]) * trainer.world_size, self.bar.total - self.bar.n))

    def on_predict_end(self, trainer, pl_module):
        self.bar.close()


def launched_rank():
    """This process's rank as a launcher set it (Lightning's ddp launcher, torchrun); 0 for the first or only one."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0)))


def sample_to_file(cfg, run, n, out, seed, resume=False, conditions=None):
    """Sample n rows into `out` on cfg.trainer's devices, all meeting `conditions` ({column: value or range},
    see difflm.conditions). Returns (schema, records, stats) in the first process and None in the others."""
    started, s, out = time.perf_counter(), cfg.sample, checked_output_path(out)
    parts, sizes, conditions = parts_dir(out), chunk_sizes(n, s.batch_size), dict(conditions or {})
    for stage in method_stages(s.method):
        run.best(stage)  # a clear error now if a stage is not trained
    if conditions and s.condition_mode == "guided" and s.method in ("finetune", "prompt"):
        raise UserError(f"sample.condition_mode=guided steers the latent, which method={s.method} does not read: "
                        "use sample.condition_mode=records, decoding or reject")
    schema = load_schema(run.schema)
    conditioning = load_conditioning(run, schema, conditions, s, seed)  # bad conditions fail before any work
    decoding = decoding_options(cfg)
    column_temperatures(schema, decoding["temperature"], decoding["column_temperature"])  # a bad entry, too
    done = None
    if launched_rank() == 0:
        done = prepare_parts(parts, manifest(cfg, run, n, seed, conditions), resume)
    processes = 0
    if done is None or len(done) < len(sizes):
        module = SamplingModule(run, parts, sizes, seed, s, decoding, conditioning)
        trainer = L.Trainer(accelerator=cfg.trainer.accelerator, devices=cfg.trainer.devices,
                            strategy=cfg.trainer.strategy, logger=False, enable_progress_bar=False,
                            enable_checkpointing=False, enable_model_summary=False,
                            callbacks=[ChunkWriter(parts, cfg.trainer.enable_progress_bar)])
        trainer.predict(module, return_predictions=False)
        trainer.strategy.barrier()
        if not trainer.is_global_zero:
            return None
        processes = trainer.world_size
    records, stats = merge_parts(schema, parts, out, n, time.perf_counter() - started,
                                 n - sum(sizes[k] for k in done), s.save_latents)
    stats["processes"] = processes
    if conditioning is not None:
        stats["conditioning"] = conditioning.describe()
    return schema, records, stats
