"""Curation: filter a synthetic set before it is used, for any record type and any method that made it. The filters
run in this order, each switched and tuned in the `curate` config section and counted in the report:
  invalid       records the schema refuses (a file from elsewhere, or edited by hand)
  duplicates    exact duplicates within the synthetic set (the first one is kept)
  exact_copies  records equal to a training record
  near_copies   tables: rows nearer to the training split (L1 over the encoded columns) than all but
                `near_copy_quantile` of real rows never trained on; text: token-set Jaccard >= `near_copy_jaccard`
  quality       the `quality_drop` share that a real-vs-synthetic classifier (out of fold) finds most synthetic
Records are compared by their canonical text (schema.to_text of the parsed record), so the same code serves tables,
code and tools."""

import math

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from difflm.datamodules.schema import InvalidRecord
from difflm.errors import UserError
from difflm.metrics.encoding import encode, nearest
from difflm.metrics.similarity import nearest_similarity, tokens

FILTERS = ("invalid", "duplicates", "exact_copies", "near_copies", "quality")


def canonical_texts(schema, frame):
    """(canonical text or None where the row is not a valid record, reason or None) for every row of `frame`."""
    texts, reasons = [], []
    for row in frame.to_dict("records"):
        try:
            texts.append(schema.to_text(schema.parse(schema.to_text(row))))
            reasons.append(None)
        except InvalidRecord as error:
            texts.append(None)
            reasons.append(error.kind)
        except (TypeError, ValueError) as error:  # a value to_text cannot even write, e.g. 'abc' in an integer column
            texts.append(None)
            reasons.append(f"unreadable value ({error.__class__.__name__})")
    return texts, reasons


def features(schema, frame):
    """Rows as a numeric matrix for distances and the classifier: encoded columns (tables) or hashed tokens (text)."""
    if schema.record_type == "table":
        return encode(schema, frame)
    vectorizer = HashingVectorizer(analyzer=tokens, n_features=2 ** 16, binary=True, norm="l2", alternate_sign=False)
    return vectorizer.transform(frame["text"].tolist())


def near_copies(schema, synthetic, frames, cfg):
    """A boolean mask of the synthetic rows that are near copies of training records, and the threshold used."""
    if schema.record_type != "table":
        similarity = nearest_similarity(synthetic["text"].tolist(), frames["train"]["text"].tolist())
        return similarity >= cfg.near_copy_jaccard, {"jaccard_at_least": cfg.near_copy_jaccard}
    unseen = frames["holdout"] if len(frames.get("holdout", ())) else frames["test"]
    train = encode(schema, frames["train"])
    real_distances = nearest(encode(schema, unseen), train, p=1)[0][:, 0]
    threshold = float(np.quantile(real_distances, cfg.near_copy_quantile))
    distances = nearest(encode(schema, synthetic), train, p=1)[0][:, 0]
    return distances < threshold, {"l1_below": threshold, "real_unseen_quantile": cfg.near_copy_quantile}


def synthetic_scores(schema, synthetic, real, seed, folds=5):
    """Out-of-fold P(synthetic) of every synthetic row from a logistic regression trained on as many real rows (or
    all of them, when fewer), and the classifier's ROC-AUC."""
    rng = np.random.default_rng(seed)
    real = real.iloc[rng.permutation(len(real))[:len(synthetic)]]
    x_real, x_synthetic = features(schema, real), features(schema, synthetic)
    stack = np.concatenate if schema.record_type == "table" else _vstack
    x = stack([x_real, x_synthetic])
    y = np.r_[np.zeros(len(real)), np.ones(len(synthetic))]
    scores = np.zeros(len(y))
    for train, test in StratifiedKFold(min(folds, len(real), len(synthetic)), shuffle=True,
                                       random_state=seed).split(np.zeros(len(y)), y):
        model = LogisticRegression(max_iter=1000).fit(x[train], y[train])
        scores[test] = model.predict_proba(x[test])[:, 1]
    return scores[len(real):], float(roc_auc_score(y, scores))


def _vstack(blocks):
    return sparse.vstack(blocks).tocsr()


def repeated(texts):
    """For each text, whether an earlier one is equal to it."""
    seen, marks = set(), []
    for text in texts:
        marks.append(text in seen)
        seen.add(text)
    return marks


def curate(schema, synthetic, frames, cfg, seed=0):
    """(the kept rows of `synthetic` as canonical records in a frame, the report). `frames` are the run's splits
    (train, test, holdout); `cfg` is the `curate` config section."""
    texts, reasons = canonical_texts(schema, synthetic)
    keep = np.ones(len(synthetic), dtype=bool)
    report, dropped = {"input_rows": len(synthetic)}, {}

    def drop(name, mask):
        """Drop the rows `mask` marks among those still kept (mask: over the kept rows, in order)."""
        indices = np.flatnonzero(keep)[np.asarray(mask, dtype=bool)]
        keep[indices] = False
        dropped[name] = len(indices)

    def kept():
        return schema.records_to_frame([schema.parse(text) for text in kept_texts()])

    def kept_texts():
        return [texts[i] for i in np.flatnonzero(keep)]

    invalid = np.array([text is None for text in texts], dtype=bool)
    if invalid.any() and not cfg.invalid:
        first = reasons[int(invalid.argmax())]
        raise UserError(f"curate.invalid=false, but {int(invalid.sum())} records are not valid (e.g. {first}) and "
                        "cannot be compared or written: set curate.invalid=true")
    if cfg.invalid:
        drop("invalid", invalid)
        report["invalid_reasons"] = {r: reasons.count(r) for r in sorted({r for r in reasons if r})}
    if cfg.duplicates:
        drop("duplicates", repeated(kept_texts()))
    if cfg.exact_copies:
        training = set(canonical_texts(schema, frames["train"])[0])
        drop("exact_copies", [text in training for text in kept_texts()])
    if cfg.near_copies and keep.any():
        mask, report["near_copy_rule"] = near_copies(schema, kept(), frames, cfg)
        drop("near_copies", mask)
    if cfg.quality_drop > 0 and keep.sum() >= 10:
        scores, auc = synthetic_scores(schema, kept(), frames["train"], seed)
        mask = np.zeros(len(scores), dtype=bool)
        mask[np.argsort(-scores, kind="stable")[:math.floor(cfg.quality_drop * len(scores))]] = True
        drop("quality", mask)
        report["quality"] = {"discriminator_auc": auc, "share_dropped": float(mask.mean())}
    report.update(dropped=dropped, kept_rows=int(keep.sum()))
    return kept(), report
