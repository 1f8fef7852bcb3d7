"""Density: SDMetrics QualityReport between the real training table and a synthetic one, as errors in percent."""

from importlib.metadata import version

import pandas as pd
from sdmetrics.reports.single_table import QualityReport

SDTYPES = {"integer": "numerical", "float": "numerical", "categorical": "categorical", "boolean": "boolean"}


def density_errors(schema, real, synthetic):
    """Column-shape error = 100 * (1 - SDMetrics Column Shapes score) (KS complement for numeric columns, TV
    complement for categorical ones); column-pair-trend error = 100 * (1 - Column Pair Trends score).
    `trend_error_all_pairs` averages every column pair (as the sdmetrics versions TabSyn used did);
    `trend_error` is the report's own property score (sdmetrics 0.32 weights it towards associated pairs)."""
    metadata = {"columns": {c.name: {"sdtype": SDTYPES[c.kind]} for c in schema.columns}}
    report = QualityReport()
    report.generate(_plain(real), _plain(synthetic), metadata, verbose=False)
    properties = report.get_properties().set_index("Property")["Score"]
    pairs = report.get_details("Column Pair Trends")["Score"].dropna()
    return {
        "shape_error": round(100 * (1 - float(properties["Column Shapes"])), 3),
        "trend_error": round(100 * (1 - float(properties["Column Pair Trends"])), 3),
        "trend_error_all_pairs": round(100 * (1 - float(pairs.mean())), 3) if len(pairs) else None,
        "sdmetrics": version("sdmetrics"),
    }


def _plain(frame):
    """Nullable extension dtypes -> plain numpy/object ones, which every sdmetrics metric accepts."""
    out = pd.DataFrame(index=frame.index)
    for name, values in frame.items():
        out[name] = values.astype(float) if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(
            values) else values.astype(object).where(values.notna(), None)
    return out
