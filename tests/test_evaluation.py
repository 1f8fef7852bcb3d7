import json

import pytest

from difflm.datamodules.schema import infer_schema
from difflm.datamodules.sources import read_adult
from difflm.evaluation import evaluate, format_report, privacy_splits, write_report
from difflm.metrics.privacy import dcr_share


def test_report_of_a_real_sample_has_every_metric_and_plots(tmp_path):
    frame = read_adult("train").sample(n=2000, random_state=0)
    schema = infer_schema(frame)
    frames = {"train": frame.iloc[:1000], "test": read_adult("test").sample(n=600, random_state=0)}
    synthetic = frame.iloc[1000:1400]  # real rows the 'model' never saw: the ideal synthetic table
    report = evaluate(schema, synthetic, frames, target="income", seed=0,
                      sampling={"validity": 0.9, "generated": 444, "failures": {"wrong keys": 44}})
    assert report["mle"]["synthetic"]["score"] > 0.8 and report["mle"]["real_train"]["score"] > 0.8
    assert report["mle"]["label_agreement"]["score"] > 0.8  # real rows' labels follow the real conditional
    assert report["privacy"]["dcr_share"] == pytest.approx(0.5, abs=0.1)
    assert report["privacy"]["exact_copy_rate"] == 0
    assert report["detection"]["c2st_auc"] < 0.6
    assert report["density"]["shape_error"] < 10 and report["validity"]["generated"] == 444
    assert report["coverage"]["alpha_precision"] > 0.9
    assert report["coverage"]["beta_recall"] == pytest.approx(
        report["coverage"]["real_holdout_reference"]["beta_recall"], abs=0.1)
    assert set(report["seconds"]) == {"mle", "label_agreement", "mle_real", "density", "dcr", "exact_copies", "c2st",
                                      "coverage"}
    paths = write_report(schema, report, synthetic, frames["train"], tmp_path)
    saved = json.loads(paths["report"].read_text())
    assert saved["versions"]["sdmetrics"] == "0.32.0" and saved["seed"] == 0
    for name in ("columns", "pair_trends"):
        assert paths[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "DCR share" in format_report(saved) and "label agreement" in format_report(saved)


def test_privacy_splits_use_the_runs_holdout_rows_when_it_has_them():
    frame = read_adult("train").sample(n=900, random_state=1)
    schema = infer_schema(frame)
    frames = {"train": frame.iloc[:300], "holdout": frame.iloc[300:500], "test": frame.iloc[500:]}
    train_part, holdout, reference = privacy_splits(frames, seed=0)
    assert len(train_part) == len(holdout) == len(reference) == 200
    assert set(holdout.index) == set(frames["holdout"].index) and set(train_part.index) <= set(frames["train"].index)
    # known answers: copies of the training rows are always nearer the training half, copies of the holdout never
    assert dcr_share(schema, train_part, train_part, holdout) > 0.99  # not 1: Adult has a few duplicate rows
    assert dcr_share(schema, holdout, train_part, holdout) < 0.01
    without = privacy_splits({"train": frames["train"], "test": frames["test"]}, seed=0)
    assert set(without[1].index) | set(without[2].index) <= set(frames["test"].index)  # the test split's halves
    assert not set(without[1].index) & set(without[2].index)
