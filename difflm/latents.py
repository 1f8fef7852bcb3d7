"""Encoder means and log-variances of the run's records, computed once with the frozen VAE encoder and
cached in the run directory for the prior and decoder stages (rebuilt when the VAE checkpoint changes)."""

import torch
from tqdm.auto import tqdm

from difflm.datamodules.records import record_texts
from difflm.modules.vae import load_vae_parts
from difflm.run_dir import atomic_write


@torch.no_grad()
def encode_texts(posterior, tokenizer, texts, batch_size, max_length, desc="encoding"):
    """(mu, logvar) of each text, in the texts' order. Texts are batched by length, so a batch pads little (an Adult
    row's lengths vary by a fifth: in the given order, a batch of 64 is an eighth padding)."""
    ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    mus, logvars = [], []
    for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch"):
        enc = tokenizer.pad({"input_ids": [ids[i] for i in order[start:start + batch_size]]}, return_tensors="pt")
        mu, logvar = posterior(enc.input_ids, enc.attention_mask)
        mus.append(mu)
        logvars.append(logvar)
    restore = torch.empty(len(order), dtype=torch.long)
    restore[torch.tensor(order, dtype=torch.long)] = torch.arange(len(order))
    return torch.cat(mus)[restore], torch.cat(logvars)[restore]


def cached_latents(run, schema, frames, batch_size):
    """{'train': (mu, logvar), 'val': (mu, logvar)} for the run's best VAE checkpoint."""
    checkpoint = run.best("vae")
    stat = checkpoint.stat()
    key = f"{checkpoint.resolve()}:{stat.st_mtime_ns}:{stat.st_size}"
    if run.latents.is_file():
        cache = torch.load(run.latents, weights_only=False)
        if cache.get("key") == key:
            return cache["latents"]
    hparams, posterior, tokenizer, _ = load_vae_parts(checkpoint)
    max_length = hparams["model"]["encoder"]["max_length"]
    latents = {split: encode_texts(posterior, tokenizer, record_texts(schema, frames[split]), batch_size, max_length,
                                   desc=f"encoding {split} records")
               for split in ("train", "val")}
    atomic_write(run.latents, lambda tmp: torch.save({"key": key, "latents": latents}, tmp))
    return latents
