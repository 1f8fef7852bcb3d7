"""Latent injection: how the decoder LLM reads z. Each projector turns (z, tokens) into the LLM's inputs.

One method, `llm_inputs`, serves training (whole sequence, labels) and every decoding step (one new token,
a KV cache): the latent enters once as a prefix (soft_prompt, kv_memory) or at every token (input_embed).
"""

import torch
from torch import nn
from transformers import DynamicCache

from difflm.errors import UserError

IGNORE_INDEX = -100


def _prepend(prefix_len, attention_mask, labels):
    batch = attention_mask.shape[0]
    ones = attention_mask.new_ones(batch, prefix_len)
    attention_mask = torch.cat([ones, attention_mask], dim=1)
    if labels is not None:
        labels = torch.cat([labels.new_full((batch, prefix_len), IGNORE_INDEX), labels], dim=1)
    return attention_mask, labels


class SoftPrompt(nn.Module):
    """z -> k virtual token embeddings placed before the first token (attention 1, no loss)."""

    def __init__(self, latent_dim, llm_config, prefix_tokens):
        super().__init__()
        self.k, self.hidden = prefix_tokens, llm_config.hidden_size
        self.proj = nn.Linear(latent_dim, self.hidden * self.k)

    def llm_inputs(self, llm, z, input_ids, attention_mask, labels=None, past_key_values=None):
        embeds = llm.get_input_embeddings()(input_ids)
        if past_key_values is None:
            prefix = self.proj(z).view(z.shape[0], self.k, self.hidden).to(embeds.dtype)
            embeds = torch.cat([prefix, embeds], dim=1)
            attention_mask, labels = _prepend(self.k, attention_mask, labels)
        return dict(inputs_embeds=embeds, attention_mask=attention_mask, labels=labels,
                    past_key_values=past_key_values)


class KVMemory(nn.Module):
    """Optimus-style: z -> one key/value slot per layer, read by every token through attention."""

    def __init__(self, latent_dim, llm_config, prefix_tokens=None):
        super().__init__()
        self.layers = llm_config.num_hidden_layers
        self.heads = getattr(llm_config, "num_key_value_heads", None) or llm_config.num_attention_heads
        self.head_dim = getattr(llm_config, "head_dim", None) or llm_config.hidden_size // llm_config.num_attention_heads
        self.proj = nn.Linear(latent_dim, self.layers * 2 * self.heads * self.head_dim)

    def llm_inputs(self, llm, z, input_ids, attention_mask, labels=None, past_key_values=None):
        embeds = llm.get_input_embeddings()(input_ids)
        if past_key_values is None:
            slots = self.proj(z).to(embeds.dtype).view(z.shape[0], self.layers, 2, self.heads, 1, self.head_dim)
            past_key_values = DynamicCache(config=llm.config)
            for layer in range(self.layers):
                past_key_values.update(slots[:, layer, 0], slots[:, layer, 1], layer)
            attention_mask, _ = _prepend(1, attention_mask, None)  # the slot is cached, not an input: no label
        return dict(inputs_embeds=embeds, attention_mask=attention_mask, labels=labels,
                    past_key_values=past_key_values)


class InputEmbed(nn.Module):
    """z -> one vector added to every token embedding (including generated ones)."""

    def __init__(self, latent_dim, llm_config, prefix_tokens=None):
        super().__init__()
        self.proj = nn.Linear(latent_dim, llm_config.hidden_size)

    def llm_inputs(self, llm, z, input_ids, attention_mask, labels=None, past_key_values=None):
        embeds = llm.get_input_embeddings()(input_ids)
        embeds = embeds + self.proj(z).to(embeds.dtype).unsqueeze(1)
        return dict(inputs_embeds=embeds, attention_mask=attention_mask, labels=labels,
                    past_key_values=past_key_values)


PROJECTORS = {"soft_prompt": SoftPrompt, "kv_memory": KVMemory, "input_embed": InputEmbed}


class NoLatent(nn.Module):
    """No latent: the tokens' own embeddings (sample.py method=prompt, whose rows differ by their prompts)."""

    def llm_inputs(self, llm, z, input_ids, attention_mask, labels=None, past_key_values=None):
        return dict(inputs_embeds=llm.get_input_embeddings()(input_ids), attention_mask=attention_mask, labels=labels,
                    past_key_values=past_key_values)


def build_projector(injection, latent_dim, llm_config, prefix_tokens, output_std=None):
    """The projector for `injection`; with output_std, initialised so that for z ~ N(0, I) its outputs have
    that scale (the LLM's token-embedding std): a prefix far larger than real tokens would drown them."""
    if injection not in PROJECTORS:
        raise UserError(f"model.injection='{injection}' is not one of {', '.join(PROJECTORS)}")
    projector = PROJECTORS[injection](latent_dim, llm_config, prefix_tokens)
    if output_std is not None:
        nn.init.normal_(projector.proj.weight, std=output_std / latent_dim**0.5)
        nn.init.zeros_(projector.proj.bias)
    return projector


def embedding_std(llm):
    return llm.get_input_embeddings().weight.float().std().item()
