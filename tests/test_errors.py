"""Bad input: a one-line error naming the problem, exit status 2, no traceback, nothing half-written."""

import pytest

import sample as sample_cli
import train as train_cli
from difflm.config import compose, save


def fails_cleanly(main, argv, capsys, expected):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert expected in err
    return err


@pytest.fixture
def run(tmp_path):
    return tmp_path / "run"


def train_args(run, *extra):
    return [f"run={run}", "model=tiny", "logger=none", "trainer.enable_progress_bar=false", *extra]


def test_missing_data_file(run, capsys, tmp_path):
    fails_cleanly(train_cli.main, train_args(run, f"data={tmp_path}/nope.csv"), capsys, "nope.csv not found")
    assert not (run / "schema.json").exists() and not (run / "data").exists()


def test_empty_data_file(run, capsys, tmp_path):
    (tmp_path / "empty.csv").write_text("")
    fails_cleanly(train_cli.main, train_args(run, f"data={tmp_path}/empty.csv"), capsys, "empty.csv is empty")


@pytest.mark.parametrize("name, content, expected", [
    ("junk.parquet", "this is not parquet", "is not a readable parquet table"),
    ("lists.jsonl", "[1, 2]\n[3, 4]\n", "each line must be a JSON object"),
    ("broken.jsonl", "{\"a\": 1\n", "is not a readable jsonl table"),
])
def test_file_that_is_not_a_table(run, capsys, tmp_path, name, content, expected):
    (tmp_path / name).write_text(content)
    fails_cleanly(train_cli.main, train_args(run, f"data={tmp_path}/{name}"), capsys, expected)
    assert not (run / "data").exists()


def test_entirely_empty_column(run, capsys, tmp_path):
    rows = "\n".join(f"{i},,x{i % 3}" for i in range(40))
    (tmp_path / "t.csv").write_text("a,blank,c\n" + rows + "\n")
    fails_cleanly(train_cli.main, train_args(run, f"data={tmp_path}/t.csv"), capsys, "column 'blank' is entirely empty")
    assert not (run / "schema.json").exists()


def test_unknown_config_key_and_group(run, capsys):
    fails_cleanly(train_cli.main, train_args(run, "prior.widht=3"), capsys, "did you mean prior.width")
    fails_cleanly(train_cli.main, train_args(run, "model=tiyn"), capsys, "choose one of tiny")
    fails_cleanly(train_cli.main, train_args(run, "stage=vea"), capsys, "stage='vea' is not one of")


def test_unknown_learning_rate_schedule_writes_nothing(run, capsys):
    fails_cleanly(train_cli.main, train_args(run, "decoder.lr_schedule=linear"), capsys,
                  "lr_schedule='linear' is not one of constant, cosine")
    assert not run.exists()


def test_prior_before_vae(run, capsys):
    fails_cleanly(train_cli.main, train_args(run, "stage=prior"), capsys, "no trained vae stage")


def test_sample_without_a_trained_run(run, capsys, tmp_path):
    fails_cleanly(sample_cli.main, [f"run={tmp_path}/nothing"], capsys, "is not a run directory")
    run.mkdir()
    save(compose([f"run={run}", "model=tiny"]), run / "config.yaml")
    fails_cleanly(sample_cli.main, [f"run={run}", "out=x.txt"], capsys, "must end in .csv or .jsonl")
    fails_cleanly(sample_cli.main, [f"run={run}", f"out={tmp_path}/s.csv"], capsys, "no trained prior stage")
    assert not (tmp_path / "s.csv").exists()


def test_given_schema_that_does_not_match_the_data(run, capsys, tmp_path):
    import json

    (tmp_path / "t.csv").write_text("a,b\n" + "\n".join(f"{i},x{i % 2}" for i in range(40)) + "\n")
    schema = {"columns": [{"name": "a", "kind": "integer", "minimum": 0, "maximum": 39},
                          {"name": "nope", "kind": "categorical", "categories": ["u"]}]}
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    fails_cleanly(train_cli.main, train_args(run, f"data={tmp_path}/t.csv", f"data.schema={tmp_path}/schema.json"),
                  capsys, "names columns that")
    assert not (run / "data").exists()
