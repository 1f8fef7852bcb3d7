"""Detection: can a classifier tell synthetic rows from real ones?"""

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from difflm.metrics.encoding import encode


def c2st_auc(schema, real, synthetic, seed=0, folds=5):
    """Classifier two-sample test: ROC-AUC of a logistic regression separating real from synthetic rows
    (equal numbers of each, encoded as in metrics.encoding), out of fold. 0.5: indistinguishable; 1: trivially
    separable. `detection score` = 1 - (2 * max(auc, 0.5) - 1), as SDMetrics reports it."""
    n = min(len(real), len(synthetic))
    rng = np.random.default_rng(seed)
    x = np.concatenate([encode(schema, real.iloc[rng.permutation(len(real))[:n]]),
                        encode(schema, synthetic.iloc[rng.permutation(len(synthetic))[:n]])])
    y = np.r_[np.zeros(n), np.ones(n)]
    scores = np.zeros(2 * n)
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        model = LogisticRegression(max_iter=1000).fit(x[train], y[train])
        scores[test] = model.predict_proba(x[test])[:, 1]
    return float(roc_auc_score(y, scores))
