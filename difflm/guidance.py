"""Guiding sampling towards conditions by sampling-importance-resampling: draw `oversample` x n candidates
and keep n of them with probability proportional to how likely each makes the condition.

- At the latent level (LatentGuide): p(z | c) is proportional to p(z) p(c | z), with p(c | z) a logistic
  regression fitted on the training records' latents (the encoder means the prior learnt).
- At the record level (RecordGuide): the grammar writes the conditioned value, so the columns written after it
  are already decoded given it; the columns written before it are not. p(before, c) is proportional to
  p(before) p(c | before), with p(c | before) a logistic regression on the real training rows.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from difflm.conditions import satisfied
from difflm.errors import UserError

MODES = ("guided", "records", "decoding", "reject")


def _held_out_auc(features, labels, model, seed):
    """ROC AUC of `model` refitted on four fifths of (features, labels) and scored on the rest."""
    x_fit, x_held, y_fit, y_held = train_test_split(features, labels, test_size=0.2, random_state=seed,
                                                    stratify=labels)
    if not 0 < y_held.sum() < len(y_held):
        return None
    return float(roc_auc_score(y_held, model.fit(x_fit, y_fit).predict_proba(x_held)[:, 1]))


def _weighted_choice(weights, count, generator):
    """`count` distinct indices, drawn with probability proportional to `weights`."""
    return torch.multinomial(weights.clamp(min=1e-12), count, replacement=False, generator=generator)


class LatentGuide:
    """p(conditions | z) from the training latents; `auc` is measured on a held-out fifth of them."""

    def __init__(self, latents, labels, seed=0):
        x, y = latents.float().numpy(), np.asarray(labels, dtype=int)
        self.auc, self.model = None, None
        if 0 < y.sum() < len(y):  # else every training row meets the conditions: nothing to prefer
            self.auc = _held_out_auc(x, y, LogisticRegression(max_iter=1000), seed)
            self.model = LogisticRegression(max_iter=1000).fit(x, y)

    def probability(self, z):
        if self.model is None:
            return torch.ones(len(z))
        return torch.from_numpy(self.model.predict_proba(z.detach().cpu().float().numpy())[:, 1]).float()

    def resample(self, z, count, generator):
        """`count` of the rows of z, drawn without replacement with probability proportional to p(c | z)."""
        return z[_weighted_choice(self.probability(z), count, generator).to(z.device)]


def _record_features(schema, columns):
    """A feature pipeline for these columns of a record frame: one-hot categories (missing is a category),
    standardised numbers (missing: the median)."""
    kinds = {c.name: c.kind for c in schema.columns}
    categorical = [c for c in columns if kinds[c] in ("categorical", "boolean")]
    numeric = [c for c in columns if c not in categorical]
    as_text = FunctionTransformer(lambda frame: frame.astype(object).where(frame.notna(), "<missing>").astype(str))
    return ColumnTransformer([
        ("categorical", make_pipeline(as_text, OneHotEncoder(handle_unknown="ignore")), categorical),
        ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric)])


class RecordGuide:
    """p(c | the columns written before c) for each condition, in record order: each fitted on the real
    training rows that meet the conditions on earlier columns. `aucs`: held-out ROC AUC of each (None where
    nothing is written before the column or every such row meets it)."""

    def __init__(self, schema, conditions, frame, seed=0):
        order = [column.name for column in schema.columns]
        self.steps, self.aucs = [], []
        for condition in sorted(conditions, key=lambda c: order.index(c.column)):
            before = order[: order.index(condition.column)]
            labels = frame[condition.column].map(condition.holds).to_numpy(dtype=int)
            model = auc = None
            if before and 0 < labels.sum() < len(labels):
                classifier = lambda: make_pipeline(_record_features(schema, before), LogisticRegression(max_iter=1000))
                auc = _held_out_auc(frame[before], labels, classifier(), seed)
                model = classifier().fit(frame[before], labels)
            self.steps.append((before, model))
            self.aucs.append(auc)
            frame = frame[labels == 1]

    def weights(self, records):
        frame, weights = pd.DataFrame(records), np.ones(len(records))
        for before, model in self.steps:
            if model is not None:
                weights *= model.predict_proba(frame[before])[:, 1]
        return torch.from_numpy(weights).float()

    def resample(self, records, count, generator):
        """The indices of `count` of the records, drawn with probability proportional to p(c | before)."""
        return _weighted_choice(self.weights(records), count, generator).tolist()


@dataclass
class Conditioning:
    """How a sampling run meets its conditions. In every mode but reject the decoder's grammar writes the
    conditioned values. guided: latents resampled towards p(z | c) (LatentGuide); records: `oversample` rows
    decoded per row kept, resampled by p(c | the columns written before it) (RecordGuide); decoding: the grammar
    alone; reject: unconditional latents and decoding, rows that miss the conditions are regenerated."""

    conditions: tuple
    mode: str = "guided"
    guide: LatentGuide | RecordGuide | None = None
    oversample: int = 1

    def latents(self, prior, count, generator):
        """Latents for `count` rows kept (records mode: for `oversample` x count rows decoded)."""
        if self.mode == "records":
            count *= self.oversample
        if self.mode != "guided" or self.guide is None:
            return prior.sample(count, generator=generator)
        return self.guide.resample(prior.sample(count * self.oversample, generator=generator), count, generator)

    def choose(self, records, count, generator):
        """The indices of the valid decoded records to keep, at most `count`."""
        count = min(count, len(records))
        if self.mode == "records" and count:
            return self.guide.resample(records, count, generator)
        return list(range(count))

    @property
    def decoding_conditions(self):
        return () if self.mode == "reject" else self.conditions

    def describe(self):
        auc = {"guided": lambda: self.guide.auc, "records": lambda: self.guide.aucs}.get(self.mode, lambda: None)
        return {"conditions": [c.to_dict() for c in self.conditions], "mode": self.mode,
                "oversample": self.oversample, "classifier_auc": auc()}


def make_conditioning(conditions, mode, oversample, schema, train_frame, train_latents=None, seed=0):
    """`oversample`: candidates per row kept, one number or one per mode ({guided: 20, records: 4})."""
    if mode not in MODES:
        raise UserError(f"sample.condition_mode='{mode}' is not one of {', '.join(MODES)}")
    if isinstance(oversample, dict):
        oversample = oversample.get(mode, 1)
    guide = None
    if mode == "guided":
        guide = LatentGuide(train_latents, satisfied(conditions, train_frame), seed)
    elif mode == "records":
        guide = RecordGuide(schema, conditions, train_frame, seed)
    return Conditioning(tuple(conditions), mode, guide, int(oversample))
