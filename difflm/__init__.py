"""DiffLM: VAE + latent diffusion prior + (Q)LoRA decoder for synthetic structured data."""

__version__ = "0.1.0"
