"""Stage vae: text -> posterior encoder -> z -> projector -> frozen LLM; loss = token CE + beta * KL."""

import torch

from difflm.modules.base import StageModule
from difflm.modules.encoder import PosteriorEncoder, kl_per_dim, load_encoder, reparameterize
from difflm.modules.generate import generate_texts
from difflm.modules.lm_loss import causal_lm_loss
from difflm.modules.llm import load_llm, load_tokenizer
from difflm.modules.projectors import build_projector, embedding_std


def build_posterior(model):
    backbone, tokenizer = load_encoder(model["encoder"]["source"])
    return PosteriorEncoder(backbone, model["encoder"]["pooling"], model["latent_dim"]), tokenizer


class VAEModule(StageModule):
    stage = "vae"
    saves_trainable_only = True

    def __init__(self, model: dict, train: dict, schema: dict):
        super().__init__()
        self.save_hyperparameters()
        self.posterior, self.encoder_tokenizer = build_posterior(model)
        self.posterior.train_backbone(encoder_learning_rate(train) > 0)  # 0: the pretrained encoder as is
        self.llm = load_llm(model["llm"]["source"], model["vae_quantization"], model["compute_dtype"])
        self.projector = build_projector(model["injection"], model["latent_dim"], self.llm.config,
                                         model["prefix_tokens"], output_std=embedding_std(self.llm))
        self.tokenizer = load_tokenizer(model["llm"]["source"])
        self.beta = train["beta_max"]  # set by the BetaBacktracking callback

    def shared_step(self, batch, split):
        mu, logvar = self.posterior(batch["encoder_input_ids"], batch["encoder_attention_mask"])
        z = reparameterize(mu, logvar) if split == "train" else mu
        inputs = self.projector.llm_inputs(self.llm, z, batch["input_ids"], batch["attention_mask"], batch["labels"])
        recon = causal_lm_loss(self.llm, inputs)
        kl = kl_per_dim(mu, logvar, self.hparams.train["free_bits"])
        loss = recon + self.beta * kl
        metrics = dict(loss=loss, recon=recon, kl=kl, beta=self.beta)
        if split != "train" and mu.shape[0] > 1:
            metrics["active_units"] = active_units(mu)
        self.log_split(split, metrics, batch["input_ids"].shape[0])
        return loss

    def param_groups(self):
        head = [p for name, p in self.named_parameters()
                if p.requires_grad and not name.startswith("posterior.backbone.")]
        groups = [dict(params=head, lr=self.hparams.train["lr"])]
        encoder_lr = encoder_learning_rate(self.hparams.train)
        if encoder_lr > 0:
            backbone = [p for p in self.posterior.backbone.parameters() if p.requires_grad]
            groups.append(dict(params=backbone, lr=encoder_lr))
        return groups

    @torch.no_grad()
    def reconstruct(self, batch, max_new_tokens, prompt_ids=None):
        """Texts decoded greedily from the posterior means of a batch's records."""
        mu, _ = self.posterior(batch["encoder_input_ids"].to(self.device),
                               batch["encoder_attention_mask"].to(self.device))
        return generate_texts(self.llm, self.projector, self.tokenizer, mu, max_new_tokens, temperature=0,
                              prompt_ids=prompt_ids)


def encoder_learning_rate(train):
    return train.get("encoder_lr", train["lr"])  # checkpoints from before vae.encoder_lr trained it at lr


def active_units(mu, threshold=0.01):
    """The share of latent dimensions whose posterior mean varies across records (variance > threshold; Burda et
    al. 2016). Near 0 is posterior collapse: every record gets the same z, and the decoder learns nothing from it."""
    return (mu.float().var(0) > threshold).float().mean()


def load_vae_parts(path):
    """(hparams, posterior encoder, projector state dict) from a VAE checkpoint, without loading the LLM."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    hparams = checkpoint["hyper_parameters"]
    posterior, tokenizer = build_posterior(hparams["model"])
    state = checkpoint["state_dict"]
    result = posterior.load_state_dict(
        {k[len("posterior."):]: v for k, v in state.items() if k.startswith("posterior.")}, strict=False)
    posterior.train_backbone(encoder_learning_rate(hparams["train"]) > 0)
    trained = {name for name, parameter in posterior.named_parameters() if parameter.requires_grad}
    missing = set(result.missing_keys) & trained
    if missing or result.unexpected_keys:
        raise RuntimeError(f"{path}: encoder weights do not match its config (missing {sorted(missing)[:3]}, "
                           f"unexpected {result.unexpected_keys[:3]})")
    projector_state = {k[len("projector."):]: v for k, v in state.items() if k.startswith("projector.")}
    return hparams, posterior.eval(), tokenizer, projector_state
