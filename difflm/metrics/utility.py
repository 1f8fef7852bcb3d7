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


class TargetModel:
    """XGBoost fitted to predict `target` from the other columns of `train`: grid=True searches the protocol's
    grid, choosing on 1/9 of `train`; otherwise one fast setting. score(table) scores it on any table's own target,
    so one fit serves several tables (MLE on the real test rows and label agreement on a synthetic table)."""

    def __init__(self, schema, train, target, grid=False, seed=0):
        if target not in schema.names:
            raise UserError(f"MLE target '{target}' is not a column: one of {schema.names}")
        self.schema, self.target = schema, target
        self.column = next(c for c in schema.columns if c.name == target)
        self.model, self.params, self.dense = None, None, None
        y_train, self.task = _labels(self.column, train[target])
        keep_train = _known(y_train, self.task)
        x_train, y_train = _features(schema, train, target)[keep_train], y_train[keep_train]
        if self.task == "classification":
            # XGBoost wants classes 0..k-1 present in training: map the seen classes densely
            seen = np.unique(y_train)
            if len(seen) < 2:
                return  # one class: nothing to learn, every table scores 0.5
            self.dense = {c: i for i, c in enumerate(seen)}
            y_train = np.array([self.dense[c] for c in y_train])
        make = XGBRegressor if self.task == "regression" else XGBClassifier
        settings = [dict(zip(GRID, values)) for values in itertools.product(*GRID.values())] if grid else [FAST]
        if len(settings) > 1:
            x_fit, x_val, y_fit, y_val = train_test_split(x_train, y_train, test_size=1 / 9, random_state=seed)
            better = (lambda a, b: a < b) if self.task == "regression" else (lambda a, b: a > b)
            best, best_score = None, None
            for params in settings:
                score = _score(make(**params, random_state=seed, n_jobs=2).fit(x_fit, y_fit), self.task, x_val, y_val)
                if best is None or better(score, best_score):
                    best, best_score = params, score
            settings = [best]
        self.params = settings[0]
        self.model = make(**self.params, random_state=seed, n_jobs=2).fit(x_train, y_train)

    def score(self, table):
        """{"metric": "auc" | "rmse", "score": float, "params": the setting used} on `table`'s rows whose target is
        known (for classes, one seen in training)."""
        if self.model is None:
            return {"metric": "auc", "score": 0.5, "params": None}
        y_test, _ = _labels(self.column, table[self.target])
        keep_test = _known(y_test, self.task)
        x_test, y_test = _features(self.schema, table, self.target)[keep_test], y_test[keep_test]
        if self.task == "classification":
            test_known = np.isin(y_test, list(self.dense))
            x_test, y_test = x_test[test_known], np.array([self.dense[c] for c in y_test[test_known]])
        return {"metric": "rmse" if self.task == "regression" else "auc",
                "score": _score(self.model, self.task, x_test, y_test), "params": self.params}


def mle(schema, train, test, target, grid=False, seed=0):
    """MLE of a training table for `target`: XGBoost fitted on `train` (e.g. synthetic rows), scored on the
    real `test` rows: ROC-AUC for a categorical/boolean target (one-vs-rest if several classes), RMSE for a
    numeric one. grid=True searches the protocol's grid, choosing on 1/9 of `train`; otherwise one fast setting.
    Returns {"metric": "auc" | "rmse", "score": float, "params": the setting used}."""
    return TargetModel(schema, train, target, grid, seed).score(test)


def label_agreement(real_model, table):
    """Train on real, test on synthetic: `real_model`, a TargetModel fitted on the real training table, scored on
    `table`'s own target (ROC-AUC, or RMSE for a numeric target). It asks whether the table's target follows the real
    conditional of the target given the other columns: real rows never trained on score what the real test set does,
    a table whose labels are noisier scores lower. MLE can be low for another reason (rows that miss part of the real
    data), which this does not see. Same return as mle; the score is None when `table` holds a single class."""
    if real_model.task == "classification":
        labels, _ = _labels(real_model.column, table[real_model.target])
        if len(np.unique(labels[labels >= 0])) < 2:
            return {"metric": "auc", "score": None, "params": None}
    return real_model.score(table)
