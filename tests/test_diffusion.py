import pytest
import torch

from difflm.modules import diffusion
from difflm.modules.prior import PriorModule
from difflm.config import compose
from omegaconf import OmegaConf


def test_denoiser_shapes_and_losses_backpropagate():
    net = diffusion.Denoiser(8, width=32, depth=2, noise_embed_dim=16)
    x0 = torch.randn(16, 8)
    for loss in (diffusion.edm_loss(net, x0, -1.2, 1.2, 0.5),
                 diffusion.ddpm_loss(net, x0, diffusion.ddpm_alpha_bars(100, 1e-4, 0.02))):
        assert loss.ndim == 0 and torch.isfinite(loss)
        loss.backward()
    assert all(p.grad is not None for p in net.parameters())


def test_losses_are_deterministic_under_a_generator():
    net = diffusion.Denoiser(4, width=16, depth=1, noise_embed_dim=8)
    x0 = torch.randn(8, 4)
    a = diffusion.edm_loss(net, x0, -1.2, 1.2, 0.5, torch.Generator().manual_seed(3))
    b = diffusion.edm_loss(net, x0, -1.2, 1.2, 0.5, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_sigma_schedules_decrease_to_zero():
    for sigmas in (diffusion.karras_sigmas(10, 0.002, 80, 7),
                   diffusion.ddpm_sigmas(diffusion.ddpm_alpha_bars(1000, 1e-4, 0.02), 10)):
        assert len(sigmas) == 11 and sigmas[-1] == 0 and bool((sigmas[:-1] > sigmas[1:]).all())
    assert diffusion.karras_sigmas(10, 0.002, 80, 7)[0] == pytest.approx(80)


@pytest.mark.parametrize("sampler, steps", [("heun", 40), ("euler", 400), ("ancestral", 400)])
def test_samplers_recover_a_gaussian_with_its_exact_denoiser(sampler, steps):
    """Data N(0, s^2 I) has the closed-form denoiser D(x, sigma) = x s^2 / (s^2 + sigma^2): every sampler
    must turn N(0, sigma_max^2) noise into samples with standard deviation s (first-order samplers need
    more steps for the same accuracy than Heun's second-order one)."""
    s = 0.7

    def denoise(x, sigma):
        return x * s**2 / (s**2 + sigma.view(-1, 1) ** 2)

    generator = torch.Generator().manual_seed(0)
    sigmas = diffusion.karras_sigmas(steps, 0.002, 80, 7)
    x = torch.randn((4000, 2), generator=generator) * sigmas[0]
    if sampler == "heun":
        out = diffusion.sample_heun(denoise, x, sigmas)
    elif sampler == "euler":
        out = diffusion.sample_euler(denoise, x, sigmas)
    else:
        out = diffusion.sample_euler_ancestral(denoise, x, sigmas, generator)
    assert out.std().item() == pytest.approx(s, rel=0.05)
    assert out.mean().abs().item() < 0.05


def test_ddpm_denoiser_is_exact_for_the_true_noise():
    """With an epsilon-network that returns the true noise, ddpm_denoise recovers x0 exactly."""
    ab = diffusion.ddpm_alpha_bars(100, 1e-4, 0.02)
    x0, eps = torch.randn(5, 3), torch.randn(5, 3)
    t = torch.tensor([3, 10, 50, 80, 99])
    sigma = ((1 - ab[t]) / ab[t]).sqrt()
    x_ve = x0 + sigma.view(-1, 1) * eps  # = x_t / sqrt(alpha_bar)
    assert torch.allclose(diffusion.ddpm_denoise(lambda x, c: eps, x_ve, sigma), x0, atol=1e-5)


@pytest.mark.parametrize("kind", ["edm", "ddpm"])
def test_prior_samples_have_shape_are_unnormalised_and_reproducible(kind, tmp_path):
    cfg = compose([f"run={tmp_path}", "model=tiny", f"prior.kind={kind}"])
    prior = PriorModule(6, OmegaConf.to_container(cfg.prior))
    prior.fit_normalisation(torch.randn(100, 6) * 3 + 10)
    a = prior.sample(5, torch.Generator().manual_seed(1))
    b = prior.sample(5, torch.Generator().manual_seed(1))
    assert a.shape == (5, 6) and torch.equal(a, b)
    assert 0 < a.mean().item() < 20  # un-normalised around the latents' mean of 10
