"""Random draws from an explicit torch.Generator, made on the generator's device and then moved, so a CPU
generator seeds GPU work too and the same seed gives the same numbers on any device."""

import torch


def randn(shape, generator, device):
    return torch.randn(shape, generator=generator, device=generator.device if generator else device).to(device)


def rand(shape, generator, device):
    return torch.rand(shape, generator=generator, device=generator.device if generator else device).to(device)


def randint(high, shape, generator, device):
    return torch.randint(0, high, shape, generator=generator,
                         device=generator.device if generator else device).to(device)
