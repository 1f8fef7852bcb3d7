import pytest
import torch

from difflm.modules.generate import generate_texts, sample_token
from difflm.modules.llm import load_llm, load_tokenizer
from difflm.modules.projectors import IGNORE_INDEX, build_projector


@pytest.fixture(scope="module")
def llm():
    return load_llm("tiny")


@pytest.mark.parametrize("injection, prefix", [("soft_prompt", 5), ("kv_memory", 1), ("input_embed", 0)])
def test_projector_shapes_and_loss_masking(llm, injection, prefix):
    projector = build_projector(injection, 16, llm.config, prefix_tokens=5)
    z = torch.randn(3, 16)
    ids = torch.randint(3, 300, (3, 12))
    mask, labels = torch.ones_like(ids), ids.clone()
    inputs = projector.llm_inputs(llm, z, ids, mask, labels)
    seq = 12 + (prefix if injection == "soft_prompt" else 0)
    assert inputs["inputs_embeds"].shape == (3, seq, llm.config.hidden_size)
    assert inputs["attention_mask"].shape == (3, 12 + prefix)
    if injection == "soft_prompt":
        assert bool((inputs["labels"][:, :prefix] == IGNORE_INDEX).all())
    out = llm(**inputs)
    assert out.logits.shape == (3, seq, llm.config.vocab_size)
    out.loss.backward()
    assert projector.proj.weight.grad is not None and projector.proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("injection", ["soft_prompt", "kv_memory", "input_embed"])
def test_cached_greedy_decoding_matches_full_recompute(llm, injection):
    """The KV-cached loop must produce what re-running the whole sequence each step produces."""
    torch.manual_seed(0)
    tokenizer = load_tokenizer("tiny")
    projector = build_projector(injection, 16, llm.config, prefix_tokens=4)
    z = torch.randn(2, 16)
    texts = generate_texts(llm, projector, tokenizer, z, max_new_tokens=12, temperature=0)
    ids = torch.full((2, 1), tokenizer.pad_token_id)
    with torch.no_grad():
        for _ in range(12):
            logits = llm(**projector.llm_inputs(llm, z, ids, torch.ones_like(ids))).logits[:, -1]
            ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], 1)
    for row, text in zip(ids[:, 1:].tolist(), texts):
        row = row[: row.index(tokenizer.eos_token_id)] if tokenizer.eos_token_id in row else row
        assert tokenizer.decode(row, skip_special_tokens=True) == text


def test_inverse_cdf_sampling_follows_the_distribution_and_a_seed():
    logits = torch.log(torch.tensor([[0.1, 0.6, 0.3]])).expand(20000, 3)
    draws = sample_token(logits, 1.0, torch.Generator().manual_seed(0))
    shares = torch.bincount(draws, minlength=3).float() / len(draws)
    assert torch.allclose(shares, torch.tensor([0.1, 0.6, 0.3]), atol=0.015)
    assert torch.equal(draws, sample_token(logits, 1.0, torch.Generator().manual_seed(0)))
    assert sample_token(logits[:2], 0, None).tolist() == [1, 1]


@pytest.mark.parametrize("injection", ["soft_prompt", "kv_memory", "input_embed"])
def test_projector_starts_at_the_scale_of_the_token_embeddings(llm, injection):
    from difflm.modules.projectors import embedding_std

    std = embedding_std(llm)
    projector = build_projector(injection, 64, llm.config, prefix_tokens=4, output_std=std)
    out = projector.proj(torch.randn(512, 64, generator=torch.Generator().manual_seed(0)))
    assert out.std().item() == pytest.approx(std, rel=0.1)


def test_common_prefix_of_token_sequences():
    from difflm.datamodules.records import common_prefix

    assert common_prefix([[1, 5, 6, 7, 2], [1, 5, 6, 9, 2], [1, 5, 6, 7, 8, 2]]) == [1, 5, 6]
    assert common_prefix([[1, 4, 2], [1, 4, 2]]) == [1, 4]  # never the end of a record


def test_generation_continues_the_prompt(llm):
    tokenizer = load_tokenizer("tiny")
    projector = build_projector("soft_prompt", 16, llm.config, prefix_tokens=4)
    prompt = [tokenizer.pad_token_id, *tokenizer('{"age": ', add_special_tokens=False).input_ids]
    texts = generate_texts(llm, projector, tokenizer, torch.randn(3, 16), 5, 1.0, torch.Generator().manual_seed(0),
                           prompt_ids=prompt)
    assert all(t.startswith('{"age": ') for t in texts)


def test_building_a_cached_model_leaves_the_seeded_rng_alone(tmp_path):
    from difflm.modules.llm import _write_once

    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    _write_once(tmp_path / "model", lambda out: torch.nn.Linear(64, 64))  # random init consumes the RNG
    assert (tmp_path / "model").is_dir() and torch.equal(torch.rand(3), expected)
