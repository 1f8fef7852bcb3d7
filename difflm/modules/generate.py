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


def _pad_runs(runs, pad, device):
    """Token runs of different lengths -> (ids, attention mask) of shape (rows, longest run), right-padded."""
    width = max(map(len, runs))
    ids = torch.tensor([run + [pad] * (width - len(run)) for run in runs], dtype=torch.long, device=device)
    mask = torch.tensor([[1] * len(run) + [0] * (width - len(run)) for run in runs], dtype=torch.long, device=device)
    return ids, mask


@torch.no_grad()
def generate_texts(llm, projector, tokenizer, z, max_new_tokens, temperature=0.5, generator=None, prompt_ids=None,
                   constraint=None, stats=None):
    """Decode one text per latent row of z, continuing `prompt_ids` (default: the start token; the tokens
    every training record starts with, when known); stops at EOS or after max_new_tokens.

    With a `constraint` (difflm.constraint.RecordConstraint) only tokens that keep the text a valid record
    prefix can be drawn, and the tokens the record's grammar forces after each drawn one (keys, quotes,
    separators) are not drawn at all: they are fed to the model together, in the same forward pass as the
    drawn token. Rows whose runs differ in length are right-padded; the padding is masked out of attention and
    positions count real tokens only. `stats` (a dict) receives forward passes, drawn and forced tokens."""
    batch = z.shape[0]
    prompt_ids = list(prompt_ids or [start_token_id(tokenizer)])
    if constraint is not None:
        constraint.start(batch, prompt_ids[1:])
    start = torch.tensor(prompt_ids, dtype=torch.long, device=z.device).expand(batch, -1)
    inputs = projector.llm_inputs(llm, z, start, torch.ones_like(start))
    attention_mask = inputs["attention_mask"]
    out = llm(**inputs, use_cache=True)
    logits = out.logits[:, -1]
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    finished = torch.zeros(batch, dtype=torch.bool, device=z.device)
    generated = [[] for _ in range(batch)]
    counts = {"forward_passes": 1, "drawn_tokens": 0, "forced_tokens": 0}
    while True:
        active = ~finished
        if constraint is not None:
            logits = constraint.mask(logits, active)
        next_token = sample_token(logits, temperature, generator).masked_fill(finished, pad)
        runs = [[token] for token in next_token.tolist()]
        if constraint is not None:
            for row, forced in enumerate(constraint.advance(next_token, active)):
                runs[row] += forced
        for row in torch.nonzero(active).flatten().tolist():
            generated[row] += runs[row]
            counts["drawn_tokens"] += 1
            counts["forced_tokens"] += len(runs[row]) - 1
        finished |= next_token == eos
        finished |= torch.tensor([len(g) >= max_new_tokens for g in generated], device=z.device)
        if finished.all():
            break
        ids, new_mask = _pad_runs(runs, pad, z.device)
        attention_mask = torch.cat([attention_mask, new_mask], dim=1)
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)[:, -ids.shape[1]:]
        inputs = projector.llm_inputs(llm, z, ids, attention_mask, past_key_values=out.past_key_values)
        out = llm(**inputs, position_ids=position_ids, use_cache=True)
        counts["forward_passes"] += 1
        last = torch.tensor([len(run) - 1 for run in runs], device=z.device)
        logits = out.logits[torch.arange(batch, device=z.device), last]
    if stats is not None:
        for key, value in counts.items():
            stats[key] = stats.get(key, 0) + value
    rows = [prompt_ids + (row[: row.index(eos)] if eos in row else row)[:max_new_tokens] for row in generated]
    return [tokenizer.decode(row, skip_special_tokens=True) for row in rows]


def generate_in_batches(generate_batch, z, batch_size, progress=True, desc="decoding"):
    """Run generate_batch over z in chunks, with a progress bar over rows."""
    texts = []
    with tqdm(total=len(z), desc=desc, unit="row", disable=not progress) as bar:
        for chunk in z.split(batch_size):
            texts.extend(generate_batch(chunk))
            bar.update(len(chunk))
    return texts
