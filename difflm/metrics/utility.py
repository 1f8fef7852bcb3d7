"""Machine-learning efficiency (MLE): train XGBoost on a (synthetic) table, score it on the real test set; and
label agreement, the other way round: train on the real table, score on the synthetic one."""

import itertools

import numpy as np
from sklearn.metrics import mean_squared_error, roc_auc_score
from sklearn.model_selection import train_test_split
from xgboost import XGBClassifier, XGBRegressor

from difflm.datamodules.schema import Schema
from difflm.errors import UserError
from difflm.metrics.encoding import encode

# The grid of the protocol shared by TabSyn and DiffLM; the setting is chosen on a held-out 1/9 of the table.
GRID = {"n_estimators": [10, 50, 100], "min_child_weight": [1, 10], "max_depth": [5, 10, 20], "gamma": [0, 1]}
FAST = {"n_estimators": 100, "min_child_weight": 1, "max_depth": 5, "gamma": 0}


def _features(schema, frame, target):
    features = Schema([c for c in schema.columns if c.name != target])
    return encode(features, frame)


def _labels(column, values):
    if column.kind in ("integer", "float"):
        return values.astype(float).to_numpy(), "regression"
    classes = column.categories if column.kind == "categorical" else [False, True]
    index = {c: i for i, c in enumerate(classes)}
    return values.map(lambda v: index.get(v, -1)).to_numpy(), "classification"


def _known(y, task):
    """Rows whose target is present (and, for classes, one the schema knows)."""
    return ~np.isnan(y) if task == "regression" else y >= 0


def _score(model, task, x, y):
    if task == "regression":
        return float(np.sqrt(mean_squared_error(y, model.predict(x))))
    proba = model.predict_proba(x)
    if proba.shape[1] == 2:
        return float(roc_auc_score(y, proba[:, 1]))
    return float(roc_auc_score(y, proba, multi_class="ovr", labels=model.classes_))


def mle(schema, train, test, target, grid=False, seed=0):
    """MLE of a training table for `target`: XGBoost fitted on `train` (e.g. synthetic rows), scored on the
    real `test` rows: ROC-AUC for a categorical/boolean target (one-vs-rest if several classes), RMSE for a
    numeric one. grid=True searches the protocol's grid, choosing on 1/9 of `train`; otherwise one fast setting.
    Returns {"metric": "auc" | "rmse", "score": float, "params": the setting used}."""
    if target not in schema.names:
        raise UserError(f"MLE target '{target}' is not a column: one of {schema.names}")
    column = next(c for c in schema.columns if c.name == target)
    y_train, task = _labels(column, train[target])
    y_test, _ = _labels(column, test[target])
    keep_train, keep_test = _known(y_train, task), _known(y_test, task)
    x_train, y_train = _features(schema, train, target)[keep_train], y_train[keep_train]
    x_test, y_test = _features(schema, test, target)[keep_test], y_test[keep_test]
    if task == "classification":
        # XGBoost wants classes 0..k-1 present in training: map the seen classes densely
        seen = np.unique(y_train)
        if len(seen) < 2:
            return {"metric": "auc", "score": 0.5, "params": None}
        dense = {c: i for i, c in enumerate(seen)}
        y_train = np.array([dense[c] for c in y_train])
        test_known = np.isin(y_test, seen)
        x_test, y_test = x_test[test_known], np.array([dense[c] for c in y_test[test_known]])
    make = XGBRegressor if task == "regression" else XGBClassifier
    settings = [dict(zip(GRID, values)) for values in itertools.product(*GRID.values())] if grid else [FAST]
    if len(settings) > 1:
        x_fit, x_val, y_fit, y_val = train_test_split(x_train, y_train, test_size=1 / 9, random_state=seed)
        better = (lambda a, b: a < b) if task == "regression" else (lambda a, b: a > b)
        best, best_score = None, None
        for params in settings:
            score = _score(make(**params, random_state=seed, n_jobs=2).fit(x_fit, y_fit), task, x_val, y_val)
            if best is None or better(score, best_score):
                best, best_score = params, score
        settings = [best]
    model = make(**settings[0], random_state=seed, n_jobs=2).fit(x_train, y_train)
    return {"metric": "rmse" if task == "regression" else "auc", "score": _score(model, task, x_test, y_test),
            "params": settings[0]}


def label_agreement(schema, real_train, table, target, grid=False, seed=0):
    """Train on real, test on synthetic: XGBoost fitted on the real training table, scored on `table`'s own target
    (ROC-AUC, or RMSE for a numeric target). It asks whether the table's target follows the real conditional of the
    target given the other columns: real rows never trained on score what the real test set does, a table whose
    labels are noisier scores lower. MLE can be low for another reason (rows that miss part of the real data), which
    this does not see. Same return as mle; the score is None when `table` holds a single class."""
    column = next((c for c in schema.columns if c.name == target), None)
    if column is not None and column.kind not in ("integer", "float"):
        labels, _ = _labels(column, table[target])
        if len(np.unique(labels[labels >= 0])) < 2:
            return {"metric": "auc", "score": None, "params": None}
    return mle(schema, real_train, table, target, grid, seed)
