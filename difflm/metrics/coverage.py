"""Fidelity and coverage: alpha-precision and beta-recall (Alaa et al., 2022, "How faithful is your synthetic
data?"), in the embedding-free form: rows encoded as in metrics.encoding, Euclidean distances."""

import numpy as np

from difflm.metrics.encoding import encode, nearest


def _curve_score(levels, curve):
    """1 - (area between the curve and the diagonal) / (area under the diagonal): 1 when curve(a) = a."""
    return float(1 - np.abs(curve - levels).sum() / levels.sum())


def alpha_precision_beta_recall(schema, real, synthetic, seed=0, max_rows=5000, n_levels=30):
    """(alpha_precision, beta_recall), each in [0, 1], 1 ideal.

    alpha-precision: the alpha-support of the real rows is the ball around their mean holding a share alpha of
    them; P(alpha) is the share of synthetic rows inside it. A faithful generator has P(alpha) = alpha for every
    alpha: neither outliers (below the diagonal) nor collapse onto the typical rows (above it).
    beta-recall: a real row is covered at level beta when its nearest synthetic row is closer to it than its
    nearest other real row, and that synthetic row lies in the synthetic rows' own beta-support (the ball around
    their mean holding a share beta of the real rows' nearest synthetic rows); R(beta) is the share of real rows
    covered. A generator that covers all of the real data has R(beta) = beta.
    Each score is 1 - the area between its curve and the diagonal over the area under it, over n_levels levels
    in [0, 1]. Both tables are subsampled (seeded) to the same size, min(their sizes, max_rows): recall depends
    on how many synthetic rows there are, and a fresh real sample of equal size scores about 0.5 on it."""
    rng = np.random.default_rng(seed)
    n = min(len(real), len(synthetic), max_rows)

    def subsample(frame):
        return frame if len(frame) == n else frame.iloc[rng.choice(len(frame), n, replace=False)]

    x_real, x_synth = encode(schema, subsample(real)), encode(schema, subsample(synthetic))
    levels = np.linspace(0, 1, n_levels)

    real_center = x_real.mean(axis=0)
    real_radii = np.quantile(np.linalg.norm(x_real - real_center, axis=1), levels)
    synth_to_center = np.linalg.norm(x_synth - real_center, axis=1)
    precision = np.array([(synth_to_center <= r).mean() for r in real_radii])

    real_to_real = nearest(x_real, x_real, p=2, k=2)[0][:, 1]  # the nearest other real row
    real_to_synth, closest = nearest(x_real, x_synth, p=2, k=1)
    real_to_synth, closest = real_to_synth[:, 0], closest[:, 0]
    synth_center = x_synth.mean(axis=0)
    closest_to_center = np.linalg.norm(x_synth[closest] - synth_center, axis=1)
    synth_radii = np.quantile(closest_to_center, levels)
    near_enough = real_to_synth <= real_to_real
    recall = np.array([(near_enough & (closest_to_center <= r)).mean() for r in synth_radii])
    return _curve_score(levels, precision), _curve_score(levels, recall)
