import pytest
import torch

from difflm.modules.llm import load_llm
from difflm.modules.ragged import ATTENTION, RaggedCache, RaggedPass, ragged_attention_enabled


@pytest.fixture(scope="module")
def llm():
    torch.manual_seed(0)
    return load_llm("tiny")  # grouped-query attention: 4 query heads on 2 key/value heads


def _ragged_logits(llm, tokens, cache, run_lengths):
    """Logits after each row's last new token; tokens (rows, width) right-padded."""
    step = RaggedPass(cache, torch.tensor(run_lengths))
    embeds = llm.get_input_embeddings()(tokens)[step.valid].unsqueeze(0)
    with torch.no_grad(), ragged_attention_enabled(llm):
        out = llm(inputs_embeds=embeds, position_ids=step.positions.unsqueeze(0), use_cache=False,
                  logits_to_keep=step.last, ragged=step)
    return out.logits[0]


def test_ragged_passes_give_each_row_its_own_full_recompute(llm):
    """Rows read 3, 1 and 5 tokens, then 2, 4 and 1, then the middle row leaves and the others read 1 and 3:
    every row's logits equal a plain forward pass over that row's whole sequence."""
    torch.manual_seed(1)
    sequences = [[], [], []]
    cache = RaggedCache(3, torch.device("cpu"))
    schedule = [([3, 1, 5], [0, 1, 2]), ([2, 4, 1], [0, 1, 2]), ([1, 3], [0, 2])]
    for step, (lengths, rows) in enumerate(schedule):
        if step == 2:
            cache.keep(torch.tensor(rows))
        runs = [torch.randint(2, 300, (n,)).tolist() for n in lengths]
        for row, run in zip(rows, runs):
            sequences[row] += run
        tokens = torch.tensor([run + [0] * (max(lengths) - len(run)) for run in runs])
        logits = _ragged_logits(llm, tokens, cache, lengths)
        for row, got in zip(rows, logits):
            with torch.no_grad():
                expected = llm(torch.tensor([sequences[row]])).logits[0, -1]
            torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert cache.lengths.tolist() == [len(sequences[0]), len(sequences[2])]


def test_prefilled_slots_are_attended_like_a_cache(llm):
    """Key/value slots given before the first pass (kv_memory) act as a DynamicCache holding them would."""
    from transformers import DynamicCache

    torch.manual_seed(2)
    heads, dim = llm.config.num_key_value_heads, llm.config.hidden_size // llm.config.num_attention_heads
    slots = [(torch.randn(2, heads, 1, dim), torch.randn(2, heads, 1, dim)) for _ in llm.model.layers]
    cache = RaggedCache(2, torch.device("cpu"))
    cache.prefill(slots)
    tokens = torch.randint(2, 300, (2, 4))
    got = _ragged_logits(llm, tokens, cache, [4, 4])
    memory = DynamicCache(config=llm.config)
    for layer, (keys, values) in enumerate(slots):
        memory.update(keys, values, layer)
    with torch.no_grad():
        expected = llm(tokens, past_key_values=memory, attention_mask=torch.ones(2, 5, dtype=torch.long)).logits[:, -1]
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_without_a_ragged_pass_the_implementation_is_sdpa(llm):
    """A model left on the ragged implementation trains as with SDPA (padding mask included)."""
    ids = torch.randint(2, 300, (2, 6))
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2])
    expected = llm(ids, attention_mask=mask, labels=ids).loss
    with ragged_attention_enabled(llm):
        assert llm.config._attn_implementation == ATTENTION
        got = llm(ids, attention_mask=mask, labels=ids).loss
    assert llm.config._attn_implementation != ATTENTION
    torch.testing.assert_close(got, expected)
