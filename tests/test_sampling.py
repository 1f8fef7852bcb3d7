import itertools
import json

import pandas as pd
import pytest
import torch

from difflm.datamodules.schema import infer_schema
from difflm.sampling import SamplingError, sample_records, write_table


class ScriptedDecoder:
    """Returns a fixed sequence of texts, batch after batch: the sampler's logic without a model."""

    def __init__(self, texts):
        self.texts = iter(texts)
        self.calls = 0

    def generate(self, z, generator=None, stats=None, **options):
        self.calls += 1
        return [next(self.texts) for _ in range(len(z))]


class GaussianPrior:
    def sample(self, n, generator=None):
        return torch.randn((n, 4), generator=generator)


@pytest.fixture
def schema(small_table):
    return infer_schema(small_table)


def valid(schema, small_table, i):
    return schema.to_text(small_table.iloc[i % len(small_table)].to_dict())


def test_invalid_rows_are_regenerated_until_exactly_n(schema, small_table):
    first_round = [valid(schema, small_table, 0), "{oops", valid(schema, small_table, 1), '{"age": 1}']
    # 2 of 4 valid: the second round draws ceil(1.2 * 2 missing / 0.5 validity) = 5 rows
    second_round = ["{still bad", valid(schema, small_table, 2), valid(schema, small_table, 3),
                    valid(schema, small_table, 4), "{bad"]
    decoder = ScriptedDecoder(first_round + second_round)
    records, stats = sample_records(schema, GaussianPrior(), decoder, n=4, batch_size=4, progress=False)
    assert records == [schema.parse(valid(schema, small_table, i)) for i in range(4)]
    assert decoder.calls == 3 and stats["generated"] == 9 and stats["validity"] == pytest.approx(5 / 9)
    assert stats["failures"] == {"not valid JSON": 3, "wrong keys": 1}


def test_too_few_valid_rows_is_an_error_that_says_how_many_and_why(schema):
    decoder = ScriptedDecoder(itertools.repeat("not json"))
    # rounds of 5, then 30 and 100 (oversampling for an unknown validity, capped at 20 x the missing rows)
    with pytest.raises(SamplingError, match=r"only 0 of 5 rows were valid after 2 rounds .*135 generated.*"
                                            r"not valid JSON \(135\)"):
        sample_records(schema, GaussianPrior(), decoder, n=5, max_rounds=2, progress=False)


def test_write_table_csv_and_jsonl_keep_columns_and_types(schema, small_table, tmp_path):
    records = [schema.parse(valid(schema, small_table, i)) for i in range(6)]
    write_table(schema, records, tmp_path / "out.csv")
    frame = pd.read_csv(tmp_path / "out.csv")
    assert list(frame.columns) == schema.names and len(frame) == 6
    write_table(schema, records, tmp_path / "out.jsonl")
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert len(lines) == 6 and json.loads(lines[0])["member"] in (True, False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv", "out.jsonl"]  # no temporary files left
