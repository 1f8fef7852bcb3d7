"""Privacy: distance to closest record (DCR) share and the exact-copy rate."""

import numpy as np
import pandas as pd

from difflm.metrics.encoding import encode, nearest


def _row_keys(frame):
    return pd.util.hash_pandas_object(frame.astype(object).where(frame.notna(), "\0missing"), index=False)


def exact_copy_rate(synthetic, reference):
    """Share of synthetic rows that equal some reference row in every column (missing equals missing)."""
    columns = list(reference.columns)
    return float(_row_keys(synthetic[columns]).isin(set(_row_keys(reference))).mean())


def dcr_share(schema, synthetic, train_half, holdout_half):
    """DCR share: the fraction of synthetic rows whose nearest training-half row (L1 distance; numeric columns
    scaled by range, categoricals one-hot) is closer than their nearest holdout-half row; ties count half.
    50% means the generator is no closer to the rows it trained on than to unseen rows of the same
    distribution; near 100% means it memorises."""
    queries = encode(schema, synthetic)
    to_train = nearest(queries, encode(schema, train_half), p=1)[0][:, 0]
    to_holdout = nearest(queries, encode(schema, holdout_half), p=1)[0][:, 0]
    return float(np.mean((to_train < to_holdout) + 0.5 * (to_train == to_holdout)))
