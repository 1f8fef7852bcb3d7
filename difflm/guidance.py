"""Bringing conditions in at the latent level: p(z | c) is proportional to p(z) p(c | z), so drawing
`oversample` x n latents from the prior and keeping n of them with probability proportional to p(c | z)
(sampling-importance-resampling) samples the prior's conditional. p(c | z) is a logistic regression fitted on
the training records' latents (the encoder means the prior learnt) and whether each record meets c."""

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from difflm.conditions import satisfied
from difflm.errors import UserError

MODES = ("guided", "decoding", "reject")


class LatentGuide:
    """p(conditions | z) from the training latents; `auc` is measured on a held-out fifth of them."""

    def __init__(self, latents, labels, seed=0):
        x, y = latents.float().numpy(), np.asarray(labels, dtype=int)
        self.auc = None
        if 0 < y.sum() < len(y):
            x_fit, x_held, y_fit, y_held = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
            if 0 < y_held.sum() < len(y_held):
                held_model = LogisticRegression(max_iter=1000).fit(x_fit, y_fit)
                self.auc = float(roc_auc_score(y_held, held_model.predict_proba(x_held)[:, 1]))
            self.model = LogisticRegression(max_iter=1000).fit(x, y)
        else:  # every training row meets the conditions: nothing to prefer
            self.model = None

    def probability(self, z):
        if self.model is None:
            return torch.ones(len(z))
        return torch.from_numpy(self.model.predict_proba(z.detach().cpu().float().numpy())[:, 1]).float()

    def resample(self, z, count, generator):
        """`count` of the rows of z, drawn without replacement with probability proportional to p(c | z)."""
        weights = self.probability(z).clamp(min=1e-12)
        keep = torch.multinomial(weights, count, replacement=False, generator=generator)
        return z[keep.to(z.device)]


@dataclass
class Conditioning:
    """How a sampling run meets its conditions. guided: latents resampled towards p(z | c) and the decoder's
    grammar fixes the conditioned values; decoding: unconditional latents, the grammar alone fixes them;
    reject: unconditional latents and decoding, rows that miss the conditions are regenerated."""

    conditions: tuple
    mode: str = "guided"
    guide: LatentGuide | None = None
    oversample: int = 20

    def latents(self, prior, count, generator):
        if self.mode != "guided" or self.guide is None:
            return prior.sample(count, generator=generator)
        return self.guide.resample(prior.sample(count * self.oversample, generator=generator), count, generator)

    @property
    def decoding_conditions(self):
        return () if self.mode == "reject" else self.conditions

    def describe(self):
        return {"conditions": [c.to_dict() for c in self.conditions], "mode": self.mode,
                "oversample": self.oversample, "latent_classifier_auc": self.guide.auc if self.guide else None}


def make_conditioning(conditions, mode, oversample, train_frame, train_latents, seed=0):
    if mode not in MODES:
        raise UserError(f"sample.condition_mode='{mode}' is not one of {', '.join(MODES)}")
    guide = LatentGuide(train_latents, satisfied(conditions, train_frame), seed) if mode == "guided" else None
    return Conditioning(tuple(conditions), mode, guide, oversample)
