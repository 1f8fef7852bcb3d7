"""Privacy: distance to closest record (DCR) share and the exact-copy rate."""

import numpy as np
import pandas as pd
import torch

from difflm.metrics.encoding import encode


def _row_keys(frame):
    return pd.util.hash_pandas_object(frame.astype(object).where(frame.notna(), "\0missing"), index=False)


def exact_copy_rate(synthetic, reference):
    """Share of synthetic rows that equal some reference row in every column (missing equals missing)."""
    columns = list(reference.columns)
    return float(_row_keys(synthetic[columns]).isin(set(_row_keys(reference))).mean())


def nearest_l1(queries, points, chunk=1024):
    """L1 distance from each query row to its nearest row of `points` (both encoded matrices)."""
    points = torch.from_numpy(points)
    out = [torch.cdist(torch.from_numpy(q), points, p=1).min(dim=1).values for q in np.array_split(
        queries, max(1, len(queries) // chunk))]
    return torch.cat(out).numpy()


def dcr_share(schema, synthetic, train_half, holdout_half):
    """DCR share: the fraction of synthetic rows whose nearest training-half row (L1 distance; numeric columns
    scaled by range, categoricals one-hot) is closer than their nearest holdout-half row; ties count half.
    50% means the generator is no closer to the rows it trained on than to unseen rows of the same
    distribution; near 100% means it memorises."""
    queries = encode(schema, synthetic)
    to_train = nearest_l1(queries, encode(schema, train_half))
    to_holdout = nearest_l1(queries, encode(schema, holdout_half))
    return float(np.mean((to_train < to_holdout) + 0.5 * (to_train == to_holdout)))
