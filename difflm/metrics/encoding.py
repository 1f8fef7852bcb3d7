"""Tables as numeric matrices for distance- and classifier-based metrics, the same way for every metric:
numeric columns scaled by the schema's range to [0, 1] (missing: 0 plus an is-missing indicator),
categorical and boolean columns one-hot over the schema's categories (missing: all zeros)."""

import numpy as np
import pandas as pd
import torch


def encode(schema, frame):
    """(n_rows, n_features) float32 matrix of `frame` under `schema`."""
    blocks = []
    for column in schema.columns:
        values = frame[column.name]
        if column.kind in ("integer", "float"):
            span = (column.maximum - column.minimum) or 1.0
            numeric = pd.to_numeric(values, errors="coerce").astype(float).to_numpy()
            blocks.append(np.nan_to_num((numeric - column.minimum) / span)[:, None])
            if column.nullable:
                blocks.append(np.isnan(numeric)[:, None].astype(float))
        else:
            categories = column.categories if column.kind == "categorical" else [False, True]
            as_key = values.astype(object).where(values.notna(), None)
            if column.kind == "boolean":
                as_key = as_key.map(lambda v: None if v is None else bool(v))
            blocks.append(np.stack([(as_key == c).to_numpy(dtype=float) for c in categories], axis=1))
    return np.concatenate(blocks, axis=1).astype(np.float32)


def nearest(queries, points, p=2, k=1, chunk=1024):
    """(distances, indices), each (n_queries, k): the k nearest rows of `points` to each query row under the
    L-p distance, nearest first (both encoded matrices)."""
    points = torch.from_numpy(points)
    found = [torch.cdist(torch.from_numpy(q), points, p=p).topk(k, dim=1, largest=False)
             for q in np.array_split(queries, max(1, len(queries) // chunk))]
    return torch.cat([f.values for f in found]).numpy(), torch.cat([f.indices for f in found]).numpy()
