import json

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

import curate as curate_cli
from difflm.config import compose
from difflm.curation import canonical_texts, curate, repeated
from difflm.datamodules.records import load_run_data
from difflm.datamodules.schema import infer_schema
from difflm.datamodules.text_schema import TextSchema
from difflm.errors import UserError

OFF = dict(invalid=True, duplicates=False, exact_copies=False, near_copies=False, near_copy_quantile=0.01,
           near_copy_jaccard=0.8, quality_drop=0.0)


def settings(**changes):
    return OmegaConf.create({**OFF, **changes})


@pytest.fixture
def table():
    """A schema and splits of a two-column table: 200 training rows, 200 unseen ones."""
    rng = np.random.default_rng(0)
    whole = pd.DataFrame({"x": rng.integers(0, 1000, 400), "colour": rng.choice(["red", "green", "blue"], 400)})
    schema = infer_schema(whole)
    frames = {"train": whole.iloc[:200].reset_index(drop=True), "holdout": whole.iloc[200:].reset_index(drop=True),
              "test": whole.iloc[:0]}
    return schema, frames


def test_canonical_texts_name_why_a_row_is_invalid(table):
    schema, _ = table
    rows = pd.DataFrame({"x": [5, 7.5, 3, "abc"], "colour": ["red", "red", "purple", "red"]})
    texts, reasons = canonical_texts(schema, rows)
    assert texts[0] == schema.to_text({"x": 5, "colour": "red"}) and texts[1:] == [None] * 3
    assert reasons == [None, "not an integer in 'x'", "unknown category in 'colour'", "unreadable value (ValueError)"]


def test_repeated_marks_every_copy_but_the_first():
    assert repeated(["a", "b", "a", "a", "c", "b"]) == [False, False, True, True, False, True]


def test_each_filter_drops_what_it_names_and_counts_it(table):
    schema, frames = table
    train = frames["train"]
    unseen = next(x for x in range(int(schema.columns[0].minimum), 1000) if x not in set(train.x))
    far = pd.DataFrame({"x": [unseen], "colour": ["green"]})
    synthetic = pd.concat([train.iloc[[0, 1]], train.iloc[[0]], far, far,
                           pd.DataFrame({"x": [1.5], "colour": ["red"]})], ignore_index=True)
    kept, report = curate(schema, synthetic, frames, settings(duplicates=True, exact_copies=True))
    # row 5 is invalid; row 2 repeats row 0, row 4 repeats row 3; rows 0 and 1 copy training rows
    assert report["dropped"] == {"invalid": 1, "duplicates": 2, "exact_copies": 2}
    assert report["invalid_reasons"] == {"not an integer in 'x'": 1} and report["kept_rows"] == 1 == len(kept)
    assert kept.iloc[0].to_dict() == {"x": unseen, "colour": "green"}


def test_near_copies_of_training_rows_are_dropped_by_the_real_unseen_rows_rule(table):
    schema, frames = table
    train = frames["train"]
    nudged = train.iloc[:20].assign(x=lambda f: np.where(f.x < 999, f.x + 1, f.x - 1))  # 1 unit off a training row
    kept, report = curate(schema, nudged, frames, settings(near_copies=True, near_copy_quantile=0.2))
    assert report["dropped"]["near_copies"] == 20 and kept.empty
    # the threshold is the real unseen rows' 20% quantile distance: larger than a 1-unit nudge (0.001 scaled)
    assert report["near_copy_rule"]["l1_below"] > 1 / 999
    _, none = curate(schema, nudged, frames, settings(near_copies=True, near_copy_quantile=0.0))
    assert none["dropped"]["near_copies"] == 0  # below the nearest real unseen row: nothing is that near


def test_quality_drops_the_rows_a_classifier_finds_synthetic(table):
    schema, frames = table
    rng = np.random.default_rng(1)
    plausible = frames["holdout"].iloc[:80]
    top = int(schema.columns[0].maximum)
    odd = pd.DataFrame({"x": top - rng.integers(0, 10, 20), "colour": "blue"})  # a corner real rows rarely visit
    synthetic = pd.concat([plausible, odd], ignore_index=True)
    kept, report = curate(schema, synthetic, frames, settings(quality_drop=0.2))
    assert report["dropped"]["quality"] == 20 and report["quality"]["share_dropped"] == pytest.approx(0.2)
    assert (kept.x > top - 10).sum() <= 5  # 15 of the 20 odd rows dropped or more (4 by chance)
    assert 0.5 < report["quality"]["discriminator_auc"] <= 1


def test_code_records_near_copies_by_token_jaccard():
    schema = TextSchema("code")
    train = ["def area(width, height):\n    return width * height\n", "def greet(name):\n    print('hi', name)\n"]
    frames = {"train": pd.DataFrame({"text": train}), "test": pd.DataFrame({"text": []}), "holdout": None}
    synthetic = pd.DataFrame({"text": [train[0], train[1].replace("'hi'", "'hello'"), "def f(:\n",
                                       "def total(values):\n    return sum(v for v in values if v > 0)\n"]})
    kept, report = curate(schema, synthetic, frames, settings(exact_copies=True, near_copies=True))
    assert report["dropped"] == {"invalid": 1, "exact_copies": 1, "near_copies": 1}
    assert kept.text.tolist() == [synthetic.text[3]]
    assert report["near_copy_rule"] == {"jaccard_at_least": 0.8}


def test_invalid_rows_kept_on_request_is_a_clear_error(table):
    schema, frames = table
    with pytest.raises(UserError, match=r"curate.invalid=false, but 1 records are not valid .*set curate.invalid=true"):
        curate(schema, pd.DataFrame({"x": [1], "colour": ["pink"]}), frames, settings(invalid=False))


def test_curate_command_on_a_run(trained, tmp_path, capsys):
    run, _, _ = trained
    schema, frames = load_run_data(run)
    synthetic = pd.concat([frames["train"].head(3), frames["test"].head(12), frames["test"].head(2)])
    source = tmp_path / "synthetic.csv"
    synthetic.to_csv(source, index=False)
    out = tmp_path / "curated.jsonl"
    curate_cli.main([f"run={run.root}", f"in={source}", f"out={out}", "curate.quality_drop=0.25"])
    report = json.loads((tmp_path / "curated.jsonl.curation.json").read_text())
    assert report["input_rows"] == 17 and report["dropped"]["duplicates"] == 2
    assert report["dropped"]["exact_copies"] >= 3 and report["dropped"]["quality"] >= 1
    assert len(pd.read_json(out, lines=True)) == report["kept_rows"] < 12
    assert f"kept {report['kept_rows']} of 17 records" in capsys.readouterr().out
    assert compose([f"run={run.root}"]).curate.quality_drop == 0.0  # the override did not change the run


@pytest.mark.parametrize("content, expected", [
    ("age,workclass\n1,Private\n", "has no column"),
    (None, "not found"),
])
def test_curate_command_refuses_bad_input_and_writes_nothing(trained, tmp_path, capsys, content, expected):
    run, _, _ = trained
    source = tmp_path / "synthetic.csv"
    if content is not None:
        source.write_text(content)
    with pytest.raises(SystemExit) as exit_:
        curate_cli.main([f"run={run.root}", f"in={source}", f"out={tmp_path}/curated.csv"])
    assert exit_.value.code == 2 and expected in capsys.readouterr().err
    assert not (tmp_path / "curated.csv").exists()
