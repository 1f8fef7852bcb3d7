import json

import pandas as pd
import pytest

from difflm.datamodules.schema import InvalidRecord, Schema, infer_schema
from difflm.errors import UserError


def test_infers_kinds_ranges_and_missing(small_table):
    schema = infer_schema(small_table)
    by_name = {c.name: c for c in schema.columns}
    assert [c.kind for c in schema.columns] == ["integer", "float", "categorical", "boolean", "categorical"]
    assert (by_name["age"].minimum, by_name["age"].maximum, by_name["age"].nullable) == (25, 52, True)
    assert by_name["age"].missing_rate == pytest.approx(1 / 6, abs=1e-6)
    assert by_name["score"].decimals == 3
    assert by_name["city"].categories == ["Lyon", "Nice", "Paris"]
    assert by_name["label"].nullable is False


@pytest.mark.parametrize("text_format", ["object", "array", "compact"])
def test_text_round_trip_keeps_values_types_and_order(small_table, text_format):
    schema = infer_schema(small_table, text_format=text_format)
    for record in small_table.to_dict("records"):
        text = schema.to_text(record)
        shape = list(json.loads(text)) if text_format == "object" else len(json.loads(text))
        assert shape == (schema.names if text_format == "object" else len(schema.names))
        parsed = schema.parse(text)
        assert isinstance(parsed["member"], bool)
        assert parsed["age"] is None or isinstance(parsed["age"], int)
        expected = {k: (None if pd.isna(v) else v) for k, v in record.items()}
        assert parsed == expected


@pytest.mark.parametrize("text, kind", [
    ('{"age": 30', "not valid JSON"),
    ('[1, 2]', "not a JSON object"),
    ('{"age": 30}', "wrong keys"),
    ('{"score": 1.0, "age": 30, "city": "Nice", "member": true, "label": "no"}', "keys out of order"),
    ('{"age": 30.5, "score": 1.0, "city": "Nice", "member": true, "label": "no"}', "not an integer in 'age'"),
    ('{"age": 99, "score": 1.0, "city": "Nice", "member": true, "label": "no"}', "out of range in 'age'"),
    ('{"age": 30, "score": 1.0, "city": "Rome", "member": true, "label": "no"}', "unknown category in 'city'"),
    ('{"age": 30, "score": 1.0, "city": "Nice", "member": "yes", "label": "no"}', "not a boolean in 'member'"),
    ('{"age": 30, "score": 1.0, "city": "Nice", "member": true, "label": null}', "null in 'label'"),
    ('{"age": 30, "score": "x", "city": "Nice", "member": true, "label": "no"}', "not a number in 'score'"),
])
def test_parse_says_why_a_text_is_invalid(small_table, text, kind):
    schema = infer_schema(small_table)
    with pytest.raises(InvalidRecord) as error:
        schema.parse(text)
    assert error.value.kind == kind


def test_array_text_is_the_values_only_and_says_why_it_is_invalid(small_table):
    schema = infer_schema(small_table, text_format="array")
    assert schema.to_text(small_table.iloc[0].to_dict()) == '[25, 0.5, "Paris", true, "yes"]'
    compact = infer_schema(small_table, text_format="compact")
    assert compact.to_text(small_table.iloc[0].to_dict()) == '[25,0.5,"Paris",true,"yes"]'
    assert compact.parse('[25, 0.5, "Paris", true, "yes"]') == schema.parse('[25,0.5,"Paris",true,"yes"]')
    for text, kind in (('{"age": 30}', "not a JSON array"), ('[30, 1.0, "Nice", true]', "wrong number of values"),
                       ('[30, 1.0, "Rome", true, "no"]', "unknown category in 'city'")):
        with pytest.raises(InvalidRecord) as error:
            schema.parse(text)
        assert error.value.kind == kind


def test_null_accepted_where_the_column_has_missing_values(small_table):
    schema = infer_schema(small_table)
    record = schema.parse('{"age": null, "score": 1.0, "city": null, "member": false, "label": "no"}')
    assert record["age"] is None and record["city"] is None


def test_entirely_empty_column_is_a_user_error(small_table):
    small_table["empty"] = None
    with pytest.raises(UserError, match="column 'empty' is entirely empty"):
        infer_schema(small_table, source="t.csv")


def test_schema_json_round_trip_and_user_override(small_table, tmp_path):
    schema = infer_schema(small_table)
    schema.save(tmp_path / "schema.json")
    loaded = Schema.load(tmp_path / "schema.json")
    assert loaded.to_dict() == schema.to_dict()
    assert Schema.from_dict({**schema.to_dict(), "text_format": "array"}).text_format == "array"
    with pytest.raises(UserError, match="text_format 'csv' is not one of object, array"):
        Schema.from_dict({**schema.to_dict(), "text_format": "csv"})
    data = schema.to_dict()
    data["columns"][0]["kind"] = "date"
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(UserError, match="column 'age' has kind 'date'"):
        Schema.load(tmp_path / "bad.json")


def test_records_to_frame_uses_schema_dtypes(small_table):
    schema = infer_schema(small_table)
    frame = schema.records_to_frame([schema.parse(schema.to_text(r)) for r in small_table.to_dict("records")])
    assert str(frame["age"].dtype) == "Int64" and str(frame["member"].dtype) == "boolean"
    assert frame["age"].isna().sum() == 1
