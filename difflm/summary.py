"""A short, human-readable comparison of a synthetic table with the real training table."""

import pandas as pd

from difflm.text_evaluation import evaluate_texts, format_text_report


def column_gaps(schema, real, synthetic):
    """Per column: total variation distance of the category shares (categorical/boolean) or of a
    10-bin histogram over the real range (numeric); 0 is identical, 1 disjoint."""
    rows = []
    for column in schema.columns:
        r, s = real[column.name], synthetic[column.name]
        if column.kind in ("integer", "float"):
            edges = pd.interval_range(column.minimum - 1e-9, column.maximum + 1e-9, periods=10)
            r_share = pd.cut(r.astype(float), edges).value_counts(normalize=True, sort=False)
            s_share = pd.cut(s.astype(float), edges).value_counts(normalize=True, sort=False)
            detail = f"mean {r.mean():.4g} vs {s.mean():.4g}"
        else:
            r_share = r.astype(str).value_counts(normalize=True)
            s_share = s.astype(str).value_counts(normalize=True)
            detail = f"top '{r_share.index[0]}' {r_share.iloc[0]:.0%} vs {s_share.get(r_share.index[0], 0):.0%}"
        tvd = 0.5 * r_share.subtract(s_share, fill_value=0).abs().sum()
        rows.append({"column": column.name, "kind": column.kind, "tvd": round(float(tvd), 3), "real vs synthetic": detail})
    return pd.DataFrame(rows)


def print_summary(schema, frames, synthetic, stats, timings, step_seconds, out):
    print(f"\nwrote {len(synthetic)} rows to {out}")
    print(f"validity {stats['validity']:.1%} ({stats['generated']} generated), "
          f"{stats['rows_per_second']} rows/s; failures: {stats['failures'] or 'none'}")
    print("seconds per stage: " + ", ".join(f"{k} {v}" for k, v in timings.items()))
    print("median seconds per training step: " + ", ".join(f"{k} {v}" for k, v in step_seconds.items()))
    if schema.record_type != "table":
        report = evaluate_texts(schema, synthetic, frames, sampling=stats)
        print(format_text_report(report))
        return report
    gaps = column_gaps(schema, frames["train"], synthetic)
    print(f"mean total variation distance per column: {gaps.tvd.mean():.3f}")
    print(gaps.to_string(index=False))
    return gaps
