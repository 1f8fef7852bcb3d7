"""Density: SDMetrics QualityReport between the real training table and a synthetic one, as errors in percent."""

import itertools
import warnings
from importlib.metadata import version

import numpy as np
import pandas as pd
from sdmetrics.column_pairs import ContingencySimilarity, CorrelationSimilarity
from sdmetrics.errors import ConstantInputError

with warnings.catch_warnings():  # 0.32 deprecates it for a report that needs multi-table metadata
    warnings.simplefilter("ignore", FutureWarning)
    from sdmetrics.reports.single_table import QualityReport

SDTYPES = {"integer": "numerical", "float": "numerical", "categorical": "categorical", "boolean": "boolean"}


def density_errors(schema, real, synthetic, pair_scores=None):
    """Column-shape error = 100 * (1 - SDMetrics Column Shapes score) (KS complement for numeric columns, TV
    complement for categorical ones). Column-pair-trend error = 100 * (1 - mean pair score):
    `trend_error_all_pairs` (the headline) averages every column pair, as the sdmetrics versions TabSyn used
    did (Pearson-correlation similarity for two numeric columns, contingency similarity with numeric columns
    in 10 bins otherwise); `trend_error` is sdmetrics 0.32's own property score, which only counts pairs whose
    real association passes its threshold; `column_shape_errors` gives each column's own shape error. Pass a list
    as `pair_scores` to receive the all-pairs table."""
    real, synthetic = plain_frame(real), plain_frame(synthetic)
    metadata = {"columns": {c.name: {"sdtype": SDTYPES[c.kind]} for c in schema.columns}}
    report = QualityReport()
    report.generate(real, synthetic, metadata, verbose=False)
    properties = report.get_properties().set_index("Property")["Score"]
    pairs = all_pair_scores(schema, real, synthetic)
    if pair_scores is not None:
        pair_scores.append(pairs)
    scores = pairs["Score"].dropna()
    shapes = report.get_details("Column Shapes").set_index("Column")["Score"]
    return {
        "shape_error": round(100 * (1 - float(properties["Column Shapes"])), 3),
        "trend_error_all_pairs": round(100 * (1 - float(scores.mean())), 3) if len(scores) else None,
        "trend_error": round(100 * (1 - float(properties["Column Pair Trends"])), 3),
        "column_shape_errors": {name: round(100 * (1 - float(score)), 3) for name, score in shapes.items()},
        "sdmetrics": version("sdmetrics"),
    }


def all_pair_scores(schema, real, synthetic):
    """(Column 1, Column 2, Score) for every column pair; NaN where a score is undefined (e.g. a constant column)."""
    numeric = {c.name for c in schema.columns if c.kind in ("integer", "float")}
    rows = []
    for first, second in itertools.combinations(schema.names, 2):
        pair = [first, second]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                if first in numeric and second in numeric:
                    score = CorrelationSimilarity.compute(real[pair].dropna(), synthetic[pair].dropna())
                else:
                    score = ContingencySimilarity.compute(
                        real[pair], synthetic[pair], continuous_column_names=[c for c in pair if c in numeric] or None)
            except (ConstantInputError, ValueError, ZeroDivisionError):
                score = np.nan
        rows.append((first, second, float(score)))
    return pd.DataFrame(rows, columns=["Column 1", "Column 2", "Score"])


def plain_frame(frame):
    """Nullable extension dtypes -> plain numpy/object ones, which every sdmetrics metric (and SDV) accepts."""
    out = pd.DataFrame(index=frame.index)
    for name, values in frame.items():
        numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        out[name] = values.astype(float) if numeric else values.astype(object).where(values.notna(), None)
    return out


def mode_shares(schema, real, synthetic):
    """{column: (the real table's most common value, its share of the real rows, its share of the synthetic rows)}
    of the categorical and boolean columns: where a sampler sharpens a column towards its mode (or flattens it)."""
    shares = {}
    for column in schema.columns:
        counts = real[column.name].value_counts()
        if column.kind in ("categorical", "boolean") and len(counts):
            mode = counts.index[0]
            shares[column.name] = (str(mode), float((real[column.name] == mode).mean()),
                                   float((synthetic[column.name] == mode).mean()))
    return shares
