"""Batched, KV-cached decoding from a latent: the projector's prefix once, then the chosen tokens pass by pass."""

import torch

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


def pass_width(lengths, overhead):
    """How many of its unread tokens each row feeds in the next forward pass. A pass costs about
    (overhead + width) token-columns (every row is padded to the width); the width that reads the most real
    tokens per unit of cost is chosen, so one long forced run does not pad every other row to its length.
    overhead=None: always the longest run (right for a GPU, where a pass costs nearly the same at any width)."""
    if overhead is None:
        return max(lengths)
    return max(sorted(set(lengths)), key=lambda width: sum(min(n, width) for n in lengths) / (overhead + width))


def _last_positions(inputs, batch, device):
    return torch.full((batch, 1), inputs["inputs_embeds"].shape[1] - 1, device=device)


def _pad_runs(runs, pad, device):
    """Token runs of different lengths -> (ids, attention mask) of shape (rows, longest run), right-padded."""
    width = max(map(len, runs))
    ids = torch.tensor([run + [pad] * (width - len(run)) for run in runs], dtype=torch.long, device=device)
    mask = torch.tensor([[1] * len(run) + [0] * (width - len(run)) for run in runs], dtype=torch.long, device=device)
    return ids, mask


@torch.no_grad()
def generate_texts(llm, projector, tokenizer, z, max_new_tokens, temperature=0.5, generator=None, prompt_ids=None,
                   constraint=None, stats=None, pass_overhead=None):
    """Decode one text per latent row of z, continuing `prompt_ids` (default: the start token; the tokens
    every training record starts with, when known); a row stops at EOS, after max_new_tokens, or when the
    constraint says its record is complete.

    With a `constraint` (difflm.constraint.RecordConstraint) only tokens that keep the text a valid record
    prefix can be drawn, and the tokens the record's grammar forces after each drawn one (keys, quotes,
    separators) are not drawn at all: they are read by the model together, in one forward pass. Rows whose
    runs differ in length are right-padded (masked out of attention; positions count real tokens only), a row
    that has not read all its tokens skips drawing, the vocabulary head runs only at each row's last token,
    and finished rows leave the batch. `stats` (a dict) receives forward passes, drawn and forced tokens and
    padded positions; `pass_overhead`: see pass_width."""
    batch, device = z.shape[0], z.device
    prompt_ids = list(prompt_ids or [start_token_id(tokenizer)])
    if constraint is not None:
        constraint.start(batch, prompt_ids[1:])
    start = torch.tensor(prompt_ids, dtype=torch.long, device=device).expand(batch, -1)
    inputs = projector.llm_inputs(llm, z, start, torch.ones_like(start))
    # an index per row, not logits_to_keep=1: the head on that strided slice would copy its weight per row
    out = llm(**inputs, use_cache=True, logits_to_keep=_last_positions(inputs, batch, device))
    cache, attention_mask, logits = out.past_key_values, inputs["attention_mask"], out.logits[:, -1]
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    rows = list(range(batch))  # the z row of each batch position still decoding
    generated = [[] for _ in range(batch)]
    unread = [[] for _ in range(batch)]  # chosen tokens (drawn or forced) the model has not read yet
    done = [False] * batch
    counts = {"forward_passes": 1, "drawn_tokens": 0, "forced_tokens": 0, "padded_positions": 0}
    while True:
        drawing = [i for i, row in enumerate(rows) if not unread[row]]
        if drawing:
            drawing_rows = [rows[i] for i in drawing]
            draw_logits = logits[torch.tensor(drawing, device=device)]
            if constraint is not None:
                draw_logits = constraint.mask(draw_logits, drawing_rows)
            tokens = sample_token(draw_logits, temperature, generator).tolist()
            forced = constraint.advance(tokens, drawing_rows) if constraint is not None else [[]] * len(tokens)
            for row, token, run in zip(drawing_rows, tokens, forced):
                counts["drawn_tokens"] += 1
                if token == eos:
                    done[row] = True
                    continue
                counts["forced_tokens"] += len(run)
                generated[row] += [token, *run]
                unread[row] = [token, *run]
                done[row] = len(generated[row]) >= max_new_tokens or (
                    constraint is not None and constraint.complete(row))
        keep = [i for i, row in enumerate(rows) if not done[row]]
        if not keep:
            break
        if len(keep) < len(rows):  # finished rows leave the batch and its cache
            index = torch.tensor(keep, device=device)
            cache.batch_select_indices(index)
            attention_mask, z, rows = attention_mask[index], z[index], [rows[i] for i in keep]
        width = pass_width([len(unread[row]) for row in rows], pass_overhead)
        runs = [unread[row][:width] for row in rows]
        for row in rows:
            unread[row] = unread[row][width:]
        ids, new_mask = _pad_runs(runs, pad, device)
        attention_mask = torch.cat([attention_mask, new_mask], dim=1)
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)[:, -ids.shape[1]:]
        last = torch.tensor([[len(run) - 1] for run in runs], device=device)
        inputs = projector.llm_inputs(llm, z, ids, attention_mask, past_key_values=cache)
        out = llm(**inputs, position_ids=position_ids, use_cache=True, logits_to_keep=last)
        logits = out.logits[:, 0]
        counts["forward_passes"] += 1
        counts["padded_positions"] += ids.numel() - int(new_mask.sum())
    if stats is not None:
        for key, value in counts.items():
            stats[key] = stats.get(key, 0) + value
    rows = [prompt_ids + row[:max_new_tokens] for row in generated]
    return [tokenizer.decode(row, skip_special_tokens=True) for row in rows]

