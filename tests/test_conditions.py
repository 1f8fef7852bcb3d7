"""Controllable sampling: conditions are checked against the schema and the data, and every row meets them."""

import pandas as pd
import pytest
import torch

import sample as sample_cli
from difflm.conditions import Condition, check_satisfiable, parse_conditions, satisfied
from difflm.constraint import record_json_schema
from difflm.datamodules.schema import infer_schema
from difflm.errors import UserError
from difflm.guidance import LatentGuide, RecordGuide


@pytest.fixture
def schema(small_table):
    return infer_schema(small_table)


def test_conditions_parse_values_lists_and_ranges(schema, small_table):
    conditions = parse_conditions(schema, {"label": "yes", "age": "30..45"})
    assert [c.column for c in conditions] == ["age", "label"]  # schema order
    assert conditions[0] == Condition("age", minimum=30, maximum=45)
    assert satisfied(conditions, small_table).tolist() == [False] * 5 + [True]  # 33, yes
    assert parse_conditions(schema, {"age": 41})[0] == Condition("age", minimum=41, maximum=41)
    assert parse_conditions(schema, {"member": True})[0].values == (True,)


@pytest.mark.parametrize("raw, message", [
    ({"labels": "yes"}, "no column 'labels'; did you mean label"),
    ({"label": "sure"}, "'label' never takes this value; valid: no, yes"),
    ({"city": "Pariss"}, "did you mean Paris"),
    ({"age": "old"}, "not a number or a range"),
    ({"age": "50..40"}, "the range is empty"),
    ({"age": "60.."}, "outside the column's range [25, 52]"),
    ({"age": True}, "'age' is numeric"),
])
def test_a_condition_the_schema_cannot_meet_is_a_clear_error(schema, raw, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_conditions(schema, raw)


def test_conditions_no_training_row_meets_are_an_error(schema, small_table):
    conditions = parse_conditions(schema, {"city": "Nice", "label": "yes"})
    with pytest.raises(UserError, match="no training row has city='Nice' and label='yes'"):
        check_satisfiable(conditions, small_table)
    assert check_satisfiable(parse_conditions(schema, {"label": "yes"}), small_table) == 0.5


def test_conditions_narrow_the_record_grammar(schema):
    conditions = parse_conditions(schema, {"age": "30..45.5", "city": ["Lyon", "Nice"], "member": False})
    properties = record_json_schema(schema, conditions)["properties"]
    assert properties["age"] == {"type": "integer", "minimum": 30, "maximum": 45}  # no null under a condition
    assert properties["city"] == {"enum": ["Lyon", "Nice"]} and properties["member"] == {"enum": [False]}
    assert properties["label"] == {"enum": ["no", "yes"]}


def test_latent_guide_resamples_towards_the_latents_of_rows_that_meet_the_condition():
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(2000, 4, generator=generator)
    guide = LatentGuide(latents, (latents[:, 0] > 1).numpy())
    assert guide.auc > 0.95
    draws = torch.randn(4000, 4, generator=generator)
    kept = guide.resample(draws, 200, generator)
    assert kept.shape == (200, 4) and kept[:, 0].mean() > 1.0 > draws[:, 0].mean() + 0.9
    assert len(torch.unique(kept, dim=0)) == 200  # without replacement


def test_record_guide_resamples_the_columns_written_before_the_condition_towards_its_real_conditional():
    """Real rows: label 'yes' mostly in Paris (city is written before label), unrelated to score. Rows decoded
    with the grammar writing label='yes' but cities at their overall rates come back mostly from Paris."""
    generator = torch.Generator().manual_seed(0)
    cities = pd.Series(["Paris", "Lyon", "Nice", None]).sample(3000, replace=True, random_state=0)
    cities = cities.reset_index(drop=True)
    paris = (cities == "Paris").to_numpy()
    flip = torch.rand(3000, generator=generator).numpy() < 0.1
    real = pd.DataFrame({"score": torch.rand(3000, generator=generator).numpy().round(3), "city": cities,
                         "label": ["yes" if p != f else "no" for p, f in zip(paris, flip)]})
    schema = infer_schema(real)
    conditions = parse_conditions(schema, {"label": "yes"})
    guide = RecordGuide(schema, conditions, real)
    assert guide.aucs[0] > 0.8
    decoded = real.assign(label="yes").to_dict("records")  # the before-columns at their unconditional rates
    kept = pd.DataFrame([decoded[i] for i in guide.resample(decoded, 300, generator)])
    real_conditional = real[real["label"] == "yes"]
    assert (kept["city"] == "Paris").mean() > 0.6 > (cities == "Paris").mean() + 0.3
    assert abs((kept["city"] == "Paris").mean() - (real_conditional["city"] == "Paris").mean()) < 0.1
    assert len({id(decoded[i]) for i in guide.resample(decoded, 300, generator)}) == 300  # without replacement


def test_record_guide_has_nothing_to_weigh_for_the_first_column(schema, small_table):
    guide = RecordGuide(schema, parse_conditions(schema, {"age": "30..45"}), small_table)
    assert guide.aucs == [None] and guide.weights(small_table.to_dict("records")).tolist() == [1.0] * 6


@pytest.mark.parametrize("mode", ["records", "guided", "decoding", "reject"])
def test_every_sampled_row_meets_the_conditions(trained, tmp_path, mode):
    run, _, _ = trained
    train = pd.read_parquet(run.split("train"))
    common = train["workclass"].mode()[0]
    out = tmp_path / "rows.csv"
    sample_cli.main([f"run={run.root}", "n=6", f"out={out}", f"condition.workclass={common}",
                     "condition.age=30..45", f"sample.condition_mode={mode}", "sample.batch_size=3",
                     "trainer.enable_progress_bar=false", "sample.max_rounds=30"])
    rows = pd.read_csv(out)
    assert len(rows) == 6 and (rows["workclass"] == common).all() and rows["age"].between(30, 45).all()


@pytest.mark.parametrize("conditions, message", [
    (["condition.wrkclass=Private"], "no column 'wrkclass'; did you mean workclass"),
    (["condition.income=rich"], "'income' never takes this value"),
    (["condition.age=17", "condition.income=>50K"], "no training row has age=17 and income='>50K'"),
    (["conditions.income=>50K"], "unknown config key 'conditions.income'"),  # not silently ignored
])
def test_sample_cli_refuses_bad_conditions_with_exit_2_and_no_output(trained, tmp_path, capsys, conditions, message):
    run, _, _ = trained
    out = tmp_path / "rows.csv"
    with pytest.raises(SystemExit) as exit_info:
        sample_cli.main([f"run={run.root}", "n=2", f"out={out}", *conditions])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err and not out.exists()


def test_evaluation_of_conditional_rows_compares_them_with_the_real_rows_that_meet_the_condition(trained, tmp_path):
    import json

    run, _, _ = trained
    out = tmp_path / "rows.csv"
    sample_cli.main([f"run={run.root}", "n=12", f"out={out}", "condition.income=<=50K", "evaluate=true",
                     "trainer.enable_progress_bar=false"])
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["validity"]["validity"] == 1.0 and report["rows"] == 12
    assert report["conditioning"]["conditions"] == [{"column": "income", "values": ["<=50K"]}]
    assert report["mle"]["real_train"]["score"] == 0.5  # the real rows it is compared with have one income


def test_reject_mode_that_cannot_meet_a_condition_says_which_mode_would(schema, small_table):
    from difflm.guidance import Conditioning
    from difflm.sampling import SamplingError, sample_records

    class WritesFirstRow:  # always the first row: label 'yes'
        def generate(self, z, generator=None, stats=None, **options):
            return [schema.to_text(small_table.iloc[0].to_dict())] * len(z)

    class Prior:
        def sample(self, n, generator=None):
            return torch.zeros(n, 2)

    conditioning = Conditioning(parse_conditions(schema, {"label": "no"}), mode="reject")
    message = r"condition not met \(label='no'\).*condition_mode=records, guided or decoding"
    with pytest.raises(SamplingError, match=message):
        sample_records(schema, Prior(), WritesFirstRow(), 3, max_rounds=1, progress=False, conditioning=conditioning)
