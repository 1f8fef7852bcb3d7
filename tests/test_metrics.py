"""Metrics on cases with known answers: identical tables, a real holdout, shuffled labels, a constant column,
missing values."""

import numpy as np
import pandas as pd
import pytest

from difflm.datamodules.schema import infer_schema
from difflm.datamodules.sources import read_adult
from difflm.metrics.coverage import alpha_precision_beta_recall
from difflm.metrics.density import density_errors, mode_shares
from difflm.metrics.detection import c2st_auc
from difflm.metrics.encoding import encode
from difflm.metrics.privacy import dcr_share, exact_copy_rate
from difflm.metrics.utility import TargetModel, label_agreement, mle
from difflm.metrics.validity import validity


@pytest.fixture(scope="module")
def adult():
    """Three disjoint real samples of Adult (train half, holdout half, a third 'synthetic' one) and its test."""
    frame = read_adult("train").sample(n=3000, random_state=0).reset_index(drop=True)
    schema = infer_schema(read_adult("train"))
    test = read_adult("test").sample(n=1500, random_state=0).reset_index(drop=True)
    return schema, frame.iloc[:1000], frame.iloc[1000:2000], frame.iloc[2000:], test


def test_encoding_scales_numbers_and_one_hot_encodes_categories(small_table):
    schema = infer_schema(small_table)
    x = encode(schema, small_table)
    # age (+ missing flag), score, city (3), member (2), label (2)
    assert x.shape == (6, 1 + 1 + 1 + 3 + 2 + 2)
    assert x[:, 0].min() == 0 and x[:, 0].max() == 1 and x[2, 1] == 1  # row 2's age is missing
    assert x[3, 3:6].sum() == 0  # missing city: no category


def test_exact_copy_rate(small_table):
    assert exact_copy_rate(small_table, small_table) == 1.0
    changed = small_table.assign(score=small_table.score + 100)
    assert exact_copy_rate(changed, small_table) == 0.0
    assert exact_copy_rate(pd.concat([small_table.iloc[:3], changed.iloc[:3]]), small_table) == 0.5


def test_dcr_share_known_answers(adult):
    schema, train_half, holdout_half, other, _ = adult
    assert dcr_share(schema, train_half, train_half, holdout_half) == 1.0  # a copy of the training half
    assert dcr_share(schema, holdout_half, train_half, holdout_half) == 0.0
    assert dcr_share(schema, other, train_half, holdout_half) == pytest.approx(0.5, abs=0.06)  # fresh real rows


def test_c2st_cannot_separate_real_from_real_but_sees_a_shift(adult):
    schema, train_half, _, other, _ = adult
    assert c2st_auc(schema, train_half, other) == pytest.approx(0.5, abs=0.06)
    shifted = other.assign(age=other.age.clip(lower=60), sex="Female")  # most real rows: younger, male
    assert c2st_auc(schema, train_half, shifted) > 0.9


def test_mle_real_rows_predict_and_shuffled_labels_do_not(adult):
    schema, train_half, _, _, test = adult
    real = mle(schema, train_half, test, "income")
    assert real["metric"] == "auc" and real["score"] > 0.85
    shuffled = train_half.assign(income=np.random.default_rng(0).permutation(train_half.income.to_numpy()))
    assert mle(schema, shuffled, test, "income")["score"] == pytest.approx(0.5, abs=0.08)
    regression = mle(schema, train_half, test, "hours-per-week")
    assert regression["metric"] == "rmse" and regression["score"] < test["hours-per-week"].std()


def test_label_agreement_real_rows_agree_shuffled_labels_and_one_class_do_not(adult):
    schema, train_half, holdout_half, _, test = adult
    real_model = TargetModel(schema, train_half, "income")
    real = label_agreement(real_model, holdout_half)
    assert real["metric"] == "auc" and real["score"] > 0.85  # real rows follow the real conditional
    assert real["score"] == mle(schema, train_half, holdout_half, "income")["score"]  # train on real, test on them
    shuffled = holdout_half.assign(income=np.random.default_rng(0).permutation(holdout_half.income.to_numpy()))
    assert label_agreement(real_model, shuffled)["score"] == pytest.approx(0.5, abs=0.08)
    flipped = holdout_half.assign(income=holdout_half.income.map({"<=50K": ">50K", ">50K": "<=50K"}))
    assert label_agreement(real_model, flipped)["score"] == pytest.approx(1 - real["score"])
    assert label_agreement(real_model, holdout_half.assign(income="<=50K"))["score"] is None
    hours_model = TargetModel(schema, train_half, "hours-per-week")
    regression = label_agreement(hours_model, holdout_half)
    hours = np.random.default_rng(0).permutation(holdout_half["hours-per-week"].to_numpy())
    assert regression["metric"] == "rmse"
    assert regression["score"] < label_agreement(hours_model, holdout_half.assign(**{"hours-per-week": hours}))["score"]


def test_mle_grid_picks_a_setting_on_the_held_out_ninth(adult):
    schema, train_half, _, _, test = adult
    result = mle(schema, train_half.iloc[:300], test.iloc[:300], "income", grid=True)
    assert set(result["params"]) == {"n_estimators", "min_child_weight", "max_depth", "gamma"}
    assert 0.5 < result["score"] <= 1


def test_density_errors_identical_tables_constant_column_and_missing_values(small_table, adult):
    schema, train_half, _, other, _ = adult
    same = density_errors(schema, train_half, train_half)
    assert same["shape_error"] == 0 and same["trend_error_all_pairs"] == pytest.approx(0, abs=1e-6)
    real_vs_real = density_errors(schema, train_half, other)
    assert 0 < real_vs_real["shape_error"] < 5 and real_vs_real["sdmetrics"] == "0.32.0"
    constant = density_errors(schema, train_half, train_half.assign(race="White"))
    assert constant["shape_error"] > same["shape_error"]
    by_column = constant["column_shape_errors"]
    assert list(by_column) == schema.names and max(by_column, key=by_column.get) == "race"
    assert constant["shape_error"] == pytest.approx(sum(by_column.values()) / len(by_column), abs=1e-3)
    assert by_column["race"] == pytest.approx(100 * (1 - (train_half["race"] == "White").mean()), abs=1e-3)
    constant_number = density_errors(schema, train_half, train_half.assign(age=40))  # correlation undefined
    assert constant_number["shape_error"] > 0 and constant_number["trend_error_all_pairs"] is not None
    small_schema = infer_schema(small_table)
    assert density_errors(small_schema, small_table, small_table)["shape_error"] == 0


def test_mode_shares_compare_the_real_mode_in_both_tables(adult):
    schema, train_half, _, other, _ = adult
    real_share = (train_half["race"] == "White").mean()
    assert mode_shares(schema, train_half, train_half)["race"] == ("White", real_share, real_share)
    sharpened = mode_shares(schema, train_half, train_half.assign(race="White"))
    assert sharpened["race"] == ("White", real_share, 1.0) and 0.8 < real_share < 0.9
    assert set(sharpened) == {c.name for c in schema.columns if c.kind in ("categorical", "boolean")}
    assert "age" not in sharpened


def test_validity_counts_reasons(small_table):
    schema = infer_schema(small_table)
    good = schema.to_text(small_table.iloc[0].to_dict())
    result = validity(schema, [good, good, "{", '{"age": 1}'])
    assert result == {"rate": 0.5, "failures": {"not valid JSON": 1, "wrong keys": 1}}


def test_all_pairs_trend_error_counts_every_pair(adult):
    from difflm.metrics.density import all_pair_scores

    schema, train_half, _, other, _ = adult
    scores = all_pair_scores(schema, train_half, other)
    n = len(schema.names)
    assert len(scores) == n * (n - 1) // 2 and scores["Score"].notna().all()
    broken = other.assign(income=np.random.default_rng(0).permutation(other.income.to_numpy()),
                          relationship=np.random.default_rng(1).permutation(other.relationship.to_numpy()))
    worse = density_errors(schema, train_half, broken)["trend_error_all_pairs"]
    assert worse > density_errors(schema, train_half, other)["trend_error_all_pairs"]


def test_alpha_precision_beta_recall_known_answers(adult):
    schema, train_half, holdout_half, other, _ = adult
    assert alpha_precision_beta_recall(schema, train_half, train_half) == pytest.approx((1, 1), abs=0.01)
    precision, recall = alpha_precision_beta_recall(schema, train_half, holdout_half)
    # fresh real rows: inside the real supports; each real row's nearest neighbour is as likely real as not
    assert precision > 0.93 and recall == pytest.approx(0.5, abs=0.08)
    collapsed = holdout_half.iloc[[0] * len(holdout_half)]  # every synthetic row the same real row
    collapsed_precision, collapsed_recall = alpha_precision_beta_recall(schema, train_half, collapsed)
    assert collapsed_precision < 0.6 and collapsed_recall < 0.05
    married = pd.concat([holdout_half, other]).query("`marital-status` == 'Married-civ-spouse'")
    assert alpha_precision_beta_recall(schema, train_half, married)[1] < recall - 0.1  # a dropped mode: lost coverage


def test_reconstruction_field_accuracy(small_table):
    from difflm.metrics.reconstruction import field_accuracy

    schema = infer_schema(small_table)
    records = small_table.to_dict("records")
    texts = [schema.to_text(r) for r in records]
    assert field_accuracy(schema, records, texts) == {"field_accuracy": 1.0, "row_accuracy": 1.0}
    one_wrong = texts[1].replace('"Lyon"', '"Nice"')
    member_as_number = texts[0].replace('"member": true', '"member": 1')  # true is not 1
    broken = [member_as_number, one_wrong, "{not json", *texts[3:]]
    result = field_accuracy(schema, records, broken)
    assert result["field_accuracy"] == pytest.approx((4 + 4 + 0 + 3 * 5) / 30)
    assert result["row_accuracy"] == pytest.approx(3 / 6)
