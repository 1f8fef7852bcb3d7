"""Real-vs-synthetic plots as PNG files: per-column histograms / bar charts and a pair-trend error heatmap."""

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from difflm.run_dir import atomic_write  # noqa: E402


def _save(figure, path):
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=90, bbox_inches="tight"))
    plt.close(figure)


def plot_columns(schema, real, synthetic, path, top_categories=12):
    """One panel per column: overlaid histograms over the real range (numeric) or side-by-side shares of the
    most frequent real categories (categorical/boolean)."""
    cols = 4
    rows = math.ceil(len(schema.columns) / cols)
    figure, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, column in zip(axes.flat, schema.columns):
        r, s = real[column.name].dropna(), synthetic[column.name].dropna()
        if column.kind in ("integer", "float"):
            bins = np.linspace(column.minimum, column.maximum, 31)
            ax.hist(r.astype(float), bins=bins, alpha=0.5, density=True, label="real")
            ax.hist(s.astype(float), bins=bins, alpha=0.5, density=True, label="synthetic")
        else:
            shares = pd.DataFrame({"real": r.astype(str).value_counts(normalize=True),
                                   "synthetic": s.astype(str).value_counts(normalize=True)}).fillna(0)
            shares = shares.sort_values("real", ascending=False).head(top_categories)
            x = np.arange(len(shares))
            ax.bar(x - 0.2, shares["real"], width=0.4, label="real")
            ax.bar(x + 0.2, shares["synthetic"], width=0.4, label="synthetic")
            ax.set_xticks(x, shares.index, rotation=60, ha="right", fontsize=7)
        ax.set_title(column.name, fontsize=9)
    for ax in list(axes.flat)[len(schema.columns):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    figure.tight_layout()
    _save(figure, path)


def plot_pair_trends(schema, pair_scores, path):
    """Heatmap of 1 - SDMetrics pair-trend score for every column pair (0: the pair's association is kept)."""
    names = schema.names
    grid = pd.DataFrame(np.nan, index=names, columns=names)
    for first, second, score in pair_scores.itertuples(index=False):
        grid.loc[first, second] = grid.loc[second, first] = 1 - score
    figure, ax = plt.subplots(figsize=(0.45 * len(names) + 3, 0.45 * len(names) + 2))
    errors = grid.to_numpy(dtype=float)
    vmax = max(0.3, float(np.nanmax(errors))) if np.isfinite(errors).any() else 0.3
    image = ax.imshow(errors, cmap="Reds", vmin=0, vmax=vmax)
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    figure.colorbar(image, ax=ax, label="pair-trend error (1 - score)")
    ax.set_title("Column pair trends: real vs synthetic")
    _save(figure, path)
