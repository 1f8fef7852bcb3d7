"""Stage prior: a diffusion model (EDM by default, or DDPM) over the VAE's normalised encoder means, EMA weights."""

import copy

import torch

from difflm import seeded
from difflm.modules import diffusion
from difflm.modules.base import StageModule


class PriorModule(StageModule):
    stage = "prior"

    def __init__(self, latent_dim: int, train: dict):
        super().__init__()
        self.save_hyperparameters()
        self.net = diffusion.Denoiser(latent_dim, train["width"], train["depth"], train["noise_embed_dim"])
        self.ema = copy.deepcopy(self.net).requires_grad_(False)
        # latent normalisation, fitted on the training means and saved with the weights
        self.register_buffer("mean", torch.zeros(latent_dim))
        self.register_buffer("std", torch.ones(latent_dim))
        if train["kind"] == "ddpm":
            self.register_buffer("alpha_bars", diffusion.ddpm_alpha_bars(
                train["timesteps"], train["beta_start"], train["beta_end"]))
        elif train["kind"] != "edm":
            raise ValueError(f"prior.kind must be edm or ddpm, got {train['kind']!r}")

    def fit_normalisation(self, latents):
        self.mean.copy_(latents.mean(0))
        self.std.copy_(latents.std(0).clamp(min=1e-6))

    def loss(self, net, x0, generator=None):
        cfg = self.hparams.train
        if cfg["kind"] == "edm":
            return diffusion.edm_loss(net, x0, cfg["p_mean"], cfg["p_std"], cfg["sigma_data"], generator)
        return diffusion.ddpm_loss(net, x0, self.alpha_bars, generator)

    def shared_step(self, batch, split):
        (latents,) = batch
        x0 = (latents - self.mean) / self.std
        if split == "train":
            loss = self.loss(self.net, x0)
        else:  # fixed noise so evaluations are comparable; the EMA weights are the ones sampled from
            generator = torch.Generator().manual_seed(0)
            loss = self.loss(self.ema, x0, generator)
        self.log_split(split, dict(loss=loss), x0.shape[0])
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
        decay = self.hparams.train["ema_decay"]
        with torch.no_grad():
            torch._foreach_lerp_(list(self.ema.parameters()), list(self.net.parameters()), 1 - decay)

    def denoise(self, x, sigma):
        if self.hparams.train["kind"] == "edm":
            return diffusion.edm_denoise(self.ema, x, sigma, self.hparams.train["sigma_data"])
        return diffusion.ddpm_denoise(self.ema, x, sigma)

    def sigmas(self, steps=None):
        cfg = self.hparams.train
        steps = steps or cfg["steps"]
        if cfg["kind"] == "edm":
            return diffusion.karras_sigmas(steps, cfg["sigma_min"], cfg["sigma_max"], cfg["rho"])
        return diffusion.ddpm_sigmas(self.alpha_bars.cpu(), steps)

    @torch.no_grad()
    def sample(self, n, generator=None, steps=None):
        """n latents in the VAE's space (un-normalised): Heun for EDM, ancestral sampling for DDPM."""
        sigmas = self.sigmas(steps).to(self.mean.device)
        x = seeded.randn((n, self.hparams.latent_dim), generator, self.mean.device) * sigmas[0]
        if self.hparams.train["kind"] == "edm":
            x = diffusion.sample_heun(self.denoise, x, sigmas)
        else:
            x = diffusion.sample_euler_ancestral(self.denoise, x, sigmas, generator)
        return x * self.std + self.mean


class StandardNormalPrior:
    """The VAE's own prior, N(0, I), with PriorModule's sampling interface: sample.py method=vae (what the
    diffusion prior adds), and the latent of method=finetune, whose decoder reads none."""

    def __init__(self, latent_dim, device):
        self.latent_dim, self.device = latent_dim, torch.device(device)

    def sample(self, n, generator=None):
        return seeded.randn((n, self.latent_dim), generator, self.device)
