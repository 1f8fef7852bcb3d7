"""Batched, KV-cached decoding from a latent: the projector's prefix once, then one token per step."""

import torch
from tqdm.auto import tqdm

from difflm import seeded
from difflm.datamodules.records import start_token_id


def sample_token(logits, temperature, generator):
    """Next token ids from logits (B, V): greedy at temperature 0, else inverse-CDF sampling (cheaper than
    torch.multinomial) with an explicit generator so a seed reproduces the rows."""
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    cdf = probs.cumsum(-1)
    u = seeded.rand((logits.shape[0], 1), generator, logits.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u).squeeze(-1).clamp(max=logits.shape[-1] - 1)


@torch.no_grad()
def generate_texts(llm, projector, tokenizer, z, max_new_tokens, temperature=0.5, generator=None, prompt_ids=None,
                   constraint=None):
    """Decode one text per latent row of z, continuing `prompt_ids` (default: the start token; the tokens
    every training record starts with, when known); stops at EOS or after max_new_tokens. With a
    `constraint` (difflm.constraint.RecordConstraint) only tokens that keep the text a valid record prefix can
    be drawn."""
    batch = z.shape[0]
    prompt_ids = list(prompt_ids or [start_token_id(tokenizer)])
    if constraint is not None:
        constraint.start(batch, prompt_ids[1:])
    start = torch.tensor(prompt_ids, dtype=torch.long, device=z.device).expand(batch, -1)
    inputs = projector.llm_inputs(llm, z, start, torch.ones_like(start))
    attention_mask = inputs["attention_mask"]
    out = llm(**inputs, use_cache=True)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    finished = torch.zeros(batch, dtype=torch.bool, device=z.device)
    tokens = []
    for _ in range(max_new_tokens):
        logits = out.logits[:, -1]
        if constraint is not None:
            logits = constraint.mask(logits, ~finished)
        next_token = sample_token(logits, temperature, generator)
        next_token = next_token.masked_fill(finished, pad)
        if constraint is not None:
            constraint.advance(next_token, ~finished)
        tokens.append(next_token)
        finished |= next_token == eos
        if finished.all():
            break
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(batch, 1)], dim=1)
        inputs = projector.llm_inputs(llm, z, next_token[:, None], attention_mask, past_key_values=out.past_key_values)
        out = llm(**inputs, use_cache=True)
    rows = torch.stack(tokens, 1).tolist() if tokens else [[] for _ in range(batch)]
    rows = [prompt_ids + (row[: row.index(eos)] if eos in row else row) for row in rows]
    return [tokenizer.decode(row, skip_special_tokens=True) for row in rows]


def generate_in_batches(generate_batch, z, batch_size, progress=True, desc="decoding"):
    """Run generate_batch over z in chunks, with a progress bar over rows."""
    texts = []
    with tqdm(total=len(z), desc=desc, unit="row", disable=not progress) as bar:
        for chunk in z.split(batch_size):
            texts.extend(generate_batch(chunk))
            bar.update(len(chunk))
    return texts
