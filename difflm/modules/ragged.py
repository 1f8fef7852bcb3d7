"""Ragged decoding passes: each row reads however many tokens it has in a pass, and no padding is computed.

A pass hands the model the rows' new tokens packed into one sequence (batch 1, positions per token), so every
projection and MLP runs on real tokens only. Attention alone needs the rows apart: the "difflm_ragged"
attention implementation writes each token's key and value into its row of a per-row cache (RaggedCache,
no holes: a row's cache is its tokens, in order) and lets each token attend to its row's cache up to itself.
The rows' query heads that share a key/value head (grouped-query attention) are folded together instead of
copying the cache per head as transformers' SDPA path does.

Without a RaggedPass in its arguments the implementation is transformers' SDPA, so a model can keep it
for training.
"""

from contextlib import contextmanager

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

ATTENTION = "difflm_ragged"


class RaggedCache:
    """Keys and values per layer, (rows, kv heads, capacity, head dim) buffers grown by doubling, and the
    number of tokens each row holds."""

    def __init__(self, rows, device):
        self.lengths = torch.zeros(rows, dtype=torch.long, device=device)
        self.keys, self.values = {}, {}

    def write(self, layer, key, value, rows, positions, needed):
        """key/value (tokens, kv heads, head dim) of tokens in `rows` at `positions`, all below `needed`
        (given, not read off `positions`: that would wait for the device once per layer)."""
        if layer not in self.keys or self.keys[layer].shape[2] < needed:
            self.keys[layer], self.values[layer] = (self._grown(self.keys.get(layer), needed, key),
                                                    self._grown(self.values.get(layer), needed, value))
        self.keys[layer][rows, :, positions] = key
        self.values[layer][rows, :, positions] = value

    def _grown(self, old, needed, like):
        capacity = max(needed, 2 * (old.shape[2] if old is not None else 0))
        new = like.new_zeros(self.lengths.shape[0], like.shape[1], capacity, like.shape[2])
        if old is not None:
            new[:, :, : old.shape[2]] = old
        return new

    def prefill(self, layers):
        """Start every row with the same number of cached positions: `layers[i]` = (keys, values) of layer i,
        each (rows, kv heads, positions, head dim), e.g. a projector's latent memory slots."""
        rows, _, count, _ = layers[0][0].shape
        index = torch.arange(rows, device=self.lengths.device).repeat_interleave(count)
        positions = torch.arange(count, device=self.lengths.device).repeat(rows)
        for layer, (keys, values) in enumerate(layers):
            tokens = keys.transpose(1, 2).flatten(0, 1), values.transpose(1, 2).flatten(0, 1)
            self.write(layer, *tokens, index, positions, count)
        self.lengths += count

    def keep(self, index):
        """Only the rows at `index` stay (finished rows leave)."""
        self.lengths = self.lengths[index]
        for layer in self.keys:
            self.keys[layer], self.values[layer] = self.keys[layer][index], self.values[layer][index]


class RaggedPass:
    """One pass's layout: `runs[r]` new tokens for cache row r, packed row after row."""

    def __init__(self, cache, run_lengths):
        device = cache.lengths.device
        self.cache, self.width = cache, int(run_lengths.max())
        offsets = torch.arange(self.width, device=device)
        self.valid = offsets[None, :] < run_lengths[:, None]  # (rows, width)
        self.rows = torch.arange(len(run_lengths), device=device)[:, None].expand_as(self.valid)[self.valid]
        self.positions = (cache.lengths[:, None] + offsets[None, :])[self.valid]  # each packed token's position
        self.last = run_lengths.cumsum(0) - 1  # each row's last token in the packed sequence
        cache.lengths = cache.lengths + run_lengths
        # query j of row r sees its row's positions up to its own (padding queries: up to the row's last token)
        own = cache.lengths[:, None] - run_lengths[:, None] + torch.minimum(offsets[None, :], run_lengths[:, None] - 1)
        self.span = int(cache.lengths.max())
        self.mask = torch.arange(self.span, device=device)[None, None, :] <= own[:, :, None]  # (rows, width, span)

    def unpack(self, packed):
        """(tokens, ...) -> (rows, width, ...), zeros where a row has no token."""
        out = packed.new_zeros(*self.valid.shape, *packed.shape[1:])
        out[self.valid] = packed
        return out


def ragged_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, ragged=None, **kwargs):
    """Attention for a packed pass (query/key/value (1, heads, tokens, dim)); SDPA when `ragged` is None."""
    if ragged is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    heads, dim = query.shape[1], query.shape[3]
    cache = ragged.cache
    cache.write(module.layer_idx, key[0].transpose(0, 1), value[0].transpose(0, 1), ragged.rows, ragged.positions,
                ragged.span)
    keys = cache.keys[module.layer_idx][:, :, : ragged.span]  # (rows, kv heads, span, dim)
    values = cache.values[module.layer_idx][:, :, : ragged.span]
    kv_heads = keys.shape[1]
    groups = heads // kv_heads
    queries = ragged.unpack(query[0].transpose(0, 1))  # (rows, width, heads, dim)
    # heads h = k * groups + g share key/value head k: fold (g, width) into one query axis per k
    queries = queries.view(*queries.shape[:2], kv_heads, groups, dim).permute(0, 2, 3, 1, 4)
    queries = queries.reshape(queries.shape[0], kv_heads, groups * ragged.width, dim)
    scores = queries @ keys.transpose(-1, -2) * (dim**-0.5 if scaling is None else scaling)
    mask = ragged.mask[:, None].repeat(1, 1, groups, 1)  # (rows, 1, groups * width, span)
    weights = torch.softmax(scores.masked_fill(~mask, float("-inf")).float(), dim=-1).to(values.dtype)
    out = (weights @ values).view(-1, kv_heads, groups, ragged.width, dim)
    out = out.permute(0, 3, 1, 2, 4).reshape(-1, ragged.width, heads, dim)[ragged.valid]  # (tokens, heads, dim)
    return out.unsqueeze(0), None


AttentionInterface.register(ATTENTION, ragged_attention)
AttentionMaskInterface.register(ATTENTION, sdpa_mask)


@contextmanager
def ragged_attention_enabled(llm):
    """The model's attention is `ragged_attention` inside the block (restored after)."""
    previous = llm.config._attn_implementation
    if previous != ATTENTION:
        llm.set_attn_implementation(ATTENTION)
    try:
        yield
    finally:
        if previous != ATTENTION:
            llm.set_attn_implementation(previous)
