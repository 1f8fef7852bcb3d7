"""Batched, KV-cached decoding from a latent: the projector's prefix once, then the chosen tokens pass by pass."""

from contextlib import contextmanager

import torch
from torch import nn

from difflm import seeded
from difflm.datamodules.records import start_token_id
from difflm.modules.lm_loss import head_logits
from difflm.modules.ragged import RaggedCache, RaggedPass, ragged_attention_enabled


def sample_token(logits, temperature, generator):
    """Next token ids from logits (B, V) at `temperature`, one number or one per row: greedy at 0, else
    inverse-CDF sampling (cheaper than torch.multinomial) with an explicit generator so a seed reproduces the rows."""
    per_row = torch.as_tensor(temperature, dtype=torch.float32, device=logits.device).reshape(-1, 1)
    if (per_row <= 0).all():
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / per_row.clamp(min=1e-6), dim=-1)
    cdf = probs.cumsum(-1)
    u = seeded.rand((logits.shape[0], 1), generator, logits.device) * cdf[:, -1:]
    drawn = torch.searchsorted(cdf, u).squeeze(-1).clamp(max=logits.shape[-1] - 1)
    return torch.where(per_row.squeeze(-1) > 0, drawn, logits.argmax(-1))


def _pad_runs(runs, pad, device):
    """Token runs of different lengths -> (ids right-padded to the longest run, run lengths)."""
    width = max(map(len, runs))
    ids = torch.tensor([run + [pad] * (width - len(run)) for run in runs], dtype=torch.long, device=device)
    return ids, torch.tensor([len(run) for run in runs], device=device)


class SelectedColumnsHead(nn.Module):
    """A plain linear vocabulary head that computes the logits of `columns` only (token ids; None: all of them)."""

    def __init__(self, head):
        super().__init__()
        self.head, self.columns = head, None

    def forward(self, hidden):
        return head_logits(self.head, hidden, self.columns)


@contextmanager
def selectable_head(llm):
    """Inside the block the model's vocabulary head is a SelectedColumnsHead (yielded; None where the head is not
    a plain nn.Linear, e.g. a 4-bit one, which then computes every logit); the model's own forward still applies
    whatever it does to the logits after the head."""
    head = llm.get_output_embeddings()
    if type(head) is not nn.Linear:
        yield None
        return
    selectable = SelectedColumnsHead(head)
    llm.set_output_embeddings(selectable)
    try:
        yield selectable
    finally:
        llm.set_output_embeddings(head)


def prepare_draw(constraint, rows, head, vocab_size, device):
    """Before a pass: what each of these rows may draw after it, as (allowed, columns), and the token ids the head is
    to compute (set on it): those some row may draw (`columns`; `allowed` then (rows, len(columns)) booleans), where
    they are at most a quarter of the vocabulary (a grammar mostly leaves a few digits or category starts), else all
    (None; `allowed` (rows, vocab_size)). (None, None) without a constraint."""
    if constraint is None:
        return None, None
    allowed_ids = vocab_size // 4 if head is not None else -1
    columns, allowed = constraint.choices(rows, vocab_size, allowed_ids, device)
    if head is not None:
        head.columns = columns
    return allowed, columns


def _masked(logits, allowed, columns):
    """Logits with the tokens a row may not draw at -inf; `columns`: the token ids the logits and `allowed` are of
    (None: all)."""
    if allowed is None:
        return logits
    if columns is None:  # a head wider (or narrower) than the config's vocabulary
        allowed = nn.functional.pad(allowed, (0, logits.shape[-1] - allowed.shape[1]))
    return logits.float().masked_fill_(~allowed, float("-inf"))


def _ragged_forward(llm, embeds, run_lengths, cache):
    """Logits (rows, vocab) after each row's last token: the rows' first run_lengths[r] embeddings of
    `embeds` (rows, width, hidden) read as one packed sequence (see ragged)."""
    step = RaggedPass(cache, run_lengths)
    out = llm(inputs_embeds=embeds[step.valid].unsqueeze(0), position_ids=step.positions.unsqueeze(0),
              use_cache=False, logits_to_keep=step.last, ragged=step)
    return out.logits[0]


@torch.no_grad()
def generate_texts(llm, projector, tokenizer, z, max_new_tokens, temperature=0.5, generator=None, prompt_ids=None,
                   constraint=None, stats=None, prompts=None):
    """Decode one text per latent row of z, continuing `prompt_ids` (default: the start token; the tokens
    every training record starts with, when known); a row stops at EOS, after max_new_tokens, or when the
    constraint says its record is complete.

    With a `constraint` (difflm.constraint.RecordConstraint) only tokens that keep the text a valid record
    prefix can be drawn, and the tokens the record's grammar forces after each drawn one (keys, quotes,
    separators) are not drawn at all: they are read by the model together, in one forward pass. A pass reads
    every row's unread tokens, however many, with no padding computed (see ragged); the vocabulary head runs
    only at each row's last token, and only for the tokens some row may draw there (see prepare_draw), and
    finished rows leave the batch. `stats` (a dict) receives forward
    passes and drawn and forced tokens.

    `prompts` (one token list per row) are read in place of the start token: instructions of different lengths
    (sample.py method=prompt); the texts returned are still the records only. `temperature` is a number or a
    difflm.column_temperature.ColumnTemperature, which gives each row's next token the temperature of its column."""
    batch, device = z.shape[0], z.device
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    prompt_ids = list(prompt_ids or [start_token_id(tokenizer)])
    if constraint is not None:
        constraint.start(batch, prompt_ids[1:])
    by_column = not isinstance(temperature, (int, float))
    if by_column:
        temperature.start(batch, prompt_ids[1:])
    prompts = prompts or [prompt_ids[:1]] * batch
    start, lengths = _pad_runs([prompt + prompt_ids[1:] for prompt in prompts], pad, device)
    inputs = projector.llm_inputs(llm, z, start, torch.ones_like(start))
    cache = RaggedCache(batch, device)
    if inputs["past_key_values"] is not None:  # the latent as cached key/value slots (kv_memory)
        cache.prefill([(layer.keys, layer.values) for layer in inputs["past_key_values"].layers])
    embeds = inputs["inputs_embeds"]
    lengths = lengths + (embeds.shape[1] - start.shape[1])  # a soft prompt's virtual tokens come first
    rows = list(range(batch))  # the z row of each batch position still decoding
    generated = [[] for _ in range(batch)]
    done = [False] * batch
    counts = {"forward_passes": 1, "drawn_tokens": 0, "forced_tokens": 0}
    vocab_size = llm.config.vocab_size
    with ragged_attention_enabled(llm), selectable_head(llm) as head:
        # what each row may draw next is known before the pass, so the head computes only those logits
        allowed, columns = prepare_draw(constraint, rows, head, vocab_size, device)
        logits = _ragged_forward(llm, embeds, lengths, cache)
        while True:
            drawn = sample_token(_masked(logits, allowed, columns), temperature.at(rows) if by_column else temperature,
                                 generator)
            tokens = (drawn if columns is None else columns[drawn]).tolist()
            forced = constraint.advance(tokens, rows) if constraint is not None else [[]] * len(tokens)
            if by_column:
                temperature.advance(rows, [[token, *run] for token, run in zip(tokens, forced)])
            unread = {}  # the tokens each row reads next: the drawn one and the run it forces
            for row, token, run in zip(rows, tokens, forced):
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
                cache.keep(index)
                z, rows = z[index], [rows[i] for i in keep]
            ids, run_lengths = _pad_runs([unread[row] for row in rows], pad, device)
            embeds = projector.llm_inputs(llm, z, ids, None, past_key_values=cache)["inputs_embeds"]
            allowed, columns = prepare_draw(constraint, rows, head, vocab_size, device)
            logits = _ragged_forward(llm, embeds, run_lengths, cache)
            counts["forward_passes"] += 1
    if stats is not None:
        for key, value in counts.items():
            stats[key] = stats.get(key, 0) + value
    rows = [prompt_ids + row[:max_new_tokens] for row in generated]
    return [tokenizer.decode(row, skip_special_tokens=True) for row in rows]
