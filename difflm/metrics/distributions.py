"""Distances between the real and the synthetic distribution of one feature, in percent (0: the same)."""

from scipy.stats import ks_2samp


def ks_error(real, synthetic):
    """100 x the Kolmogorov-Smirnov statistic between two samples of a numeric feature."""
    return 100 * float(ks_2samp(real, synthetic).statistic)


def tv_error(real, synthetic):
    """100 x the total variation distance between two count distributions (Counters); None if one is empty."""
    a, b = sum(real.values()), sum(synthetic.values())
    if not a or not b:
        return None
    return 100 * 0.5 * sum(abs(real[k] / a - synthetic[k] / b) for k in set(real) | set(synthetic))
