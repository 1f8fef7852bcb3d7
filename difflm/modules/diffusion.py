"""Latent diffusion: an MLP denoiser, EDM and DDPM as two parametrisations of one `denoise(x, sigma)` interface,
and samplers that only see that interface (k-diffusion / NVlabs edm style).

Both networks are conditioned on c_noise = log(sigma) / 4. A DDPM step t is the noise level
sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t) of the variance-exploding view x_t / sqrt(alpha_bar_t) = x0 + sigma_t * eps,
so its epsilon-network plugs into the same samplers (DDIM = Euler, DDPM ancestral = Euler ancestral).
"""

import math

import torch
from torch import nn

from difflm import seeded


class NoiseEmbedding(nn.Module):
    """Sinusoidal embedding of a scalar noise level, then an MLP."""

    def __init__(self, dim):
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, c_noise):
        half = self.dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=c_noise.device) / half)
        angles = c_noise.float().unsqueeze(-1) * freqs * 1000.0
        return self.mlp(torch.cat([angles.sin(), angles.cos()], dim=-1))


class ResidualBlock(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.net = nn.Sequential(nn.Linear(width, width * 2), nn.SiLU(), nn.Linear(width * 2, width))

    def forward(self, h, emb):
        return h + self.net(self.norm(h + emb))


class Denoiser(nn.Module):
    """MLP F(x, c_noise): input projection, residual SiLU blocks conditioned on the noise embedding, output."""

    def __init__(self, latent_dim, width=512, depth=4, noise_embed_dim=128):
        super().__init__()
        self.embed = NoiseEmbedding(noise_embed_dim)
        self.to_width = nn.Linear(noise_embed_dim, width)
        self.inp = nn.Linear(latent_dim, width)
        self.blocks = nn.ModuleList(ResidualBlock(width) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, latent_dim))

    def forward(self, x, c_noise):
        emb = self.to_width(self.embed(c_noise))
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(h)


# ---- EDM (Karras et al. 2022) -------------------------------------------------------------------------------

def edm_denoise(net, x, sigma, sigma_data):
    """Preconditioned denoiser D(x, sigma) = c_skip x + c_out F(c_in x, c_noise)."""
    sigma = sigma.view(-1, 1)
    c_skip = sigma_data**2 / (sigma**2 + sigma_data**2)
    c_out = sigma * sigma_data / (sigma**2 + sigma_data**2).sqrt()
    c_in = 1 / (sigma_data**2 + sigma**2).sqrt()
    return c_skip * x + c_out * net(c_in * x, sigma.log().flatten() / 4)


def edm_loss(net, x0, p_mean, p_std, sigma_data, generator=None):
    """EDM training loss: log-normal noise levels, loss weight (sigma^2 + sd^2) / (sigma sd)^2."""
    rnd = seeded.randn(x0.shape[0], generator, x0.device)
    sigma = (rnd * p_std + p_mean).exp()
    weight = (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
    noise = seeded.randn(x0.shape, generator, x0.device) * sigma.view(-1, 1)
    denoised = edm_denoise(net, x0 + noise, sigma, sigma_data)
    return (weight.view(-1, 1) * (denoised - x0) ** 2).mean()


def karras_sigmas(steps, sigma_min, sigma_max, rho):
    """Decreasing noise levels sigma_max -> sigma_min (rho spacing), with a final 0."""
    ramp = torch.linspace(0, 1, steps)
    sigmas = (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)])


# ---- DDPM (Ho et al. 2020), epsilon prediction --------------------------------------------------------------

def ddpm_alpha_bars(timesteps, beta_start, beta_end):
    return torch.cumprod(1 - torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64), 0).float()


def ddpm_loss(net, x0, alpha_bars, generator=None):
    """Noise-prediction loss: x_t = sqrt(ab) x0 + sqrt(1 - ab) eps, || eps_hat(x_t, t) - eps ||^2."""
    t = seeded.randint(len(alpha_bars), (x0.shape[0],), generator, x0.device)
    ab = alpha_bars.to(x0.device)[t].view(-1, 1)
    eps = seeded.randn(x0.shape, generator, x0.device)
    sigma = ((1 - ab) / ab).sqrt()
    return ((net(ab.sqrt() * x0 + (1 - ab).sqrt() * eps, sigma.log().flatten() / 4) - eps) ** 2).mean()


def ddpm_denoise(net, x, sigma):
    """The DDPM epsilon-network as D(x, sigma) in the variance-exploding view."""
    sigma = sigma.view(-1, 1)
    scale = 1 / (1 + sigma**2).sqrt()
    return x - sigma * net(x * scale, sigma.log().flatten() / 4)


def ddpm_sigmas(alpha_bars, steps):
    """`steps` of the DDPM's discrete noise levels, evenly spaced in t, decreasing, with a final 0."""
    sigmas = ((1 - alpha_bars) / alpha_bars).sqrt()
    index = torch.linspace(len(sigmas) - 1, 0, steps).round().long()
    return torch.cat([sigmas[index], sigmas.new_zeros(1)])


# ---- samplers: functions of denoise(x, sigma) ---------------------------------------------------------------

def _batch(sigma, x):
    return sigma.to(x.device).expand(x.shape[0])


@torch.no_grad()
def sample_heun(denoise, x, sigmas):
    """EDM's deterministic 2nd-order sampler (Euler step + trapezoidal correction, Euler on the last step)."""
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
        d = (x - denoise(x, _batch(sigma, x))) / sigma
        x_next = x + (sigma_next - sigma) * d
        if sigma_next > 0:
            d_next = (x_next - denoise(x_next, _batch(sigma_next, x))) / sigma_next
            x_next = x + (sigma_next - sigma) * (d + d_next) / 2
        x = x_next
    return x


@torch.no_grad()
def sample_euler(denoise, x, sigmas):
    """Deterministic Euler steps (DDIM for a DDPM)."""
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
        x = x + (sigma_next - sigma) * (x - denoise(x, _batch(sigma, x))) / sigma
    return x


@torch.no_grad()
def sample_euler_ancestral(denoise, x, sigmas, generator=None):
    """Ancestral sampling (DDPM's sampler in the variance-exploding view): step down, then add fresh noise."""
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
        denoised = denoise(x, _batch(sigma, x))
        sigma_up = (sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2).sqrt()
        sigma_down = (sigma_next**2 - sigma_up**2).sqrt()
        x = x + (sigma_down - sigma) * (x - denoised) / sigma
        if sigma_next > 0:
            x = x + seeded.randn(x.shape, generator, x.device) * sigma_up
    return x
