"""Code and tool records: their data (built in, or a user's JSONL), their schema (validation, canonical text,
grammar), and all three stages and sampling with model=tiny."""

import json
import sysconfig
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from difflm.callbacks.evaluation import fast_metrics
from difflm.conditions import parse_conditions
from difflm.config import compose
from difflm.datamodules.code_source import code_table, top_level_functions
from difflm.datamodules.record_types import load_schema
from difflm.datamodules.records import load_run_data, prepare_run_data
from difflm.datamodules.schema import InvalidRecord
from difflm.datamodules.text_schema import TextSchema, tool_text
from difflm.datamodules.tool_source import first_sentence, operation_tool
from difflm.datamodules.tools import load_tool, tool_definition, tool_limits
from difflm.errors import UserError
from difflm.evaluation import evaluate, format_report, write_report
from difflm.metrics.similarity import tokens
from difflm.pipeline import train
from difflm.run_dir import RunDir
from difflm.sampling import SamplingError, load_generator, sample_records

from test_record_metrics import TOOLS

TINY = ["model=tiny", "logger=none", "trainer.enable_progress_bar=false", "evaluation.rows=0", "vae.max_steps=2",
        "prior.max_steps=3", "decoder.max_steps=2"]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_code_records_are_top_level_functions_deduplicated_and_capped():
    source = (Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py").read_text()
    functions = top_level_functions(source)
    assert functions and all(f.startswith("def ") for f in functions)
    reformatted = functions[0].replace("(", "(  ", 1) + "  # a comment\n"  # the same function, formatted otherwise
    table = code_table([*functions, reformatted, "def long():\n" + "    x = 1\n" * 100], max_tokens=300)
    short = [f.strip() + "\n" for f in functions if len(tokens(f)) <= 300]
    assert short and table["text"].tolist() == short  # the reformatted copy and the long one left out


def test_a_users_jsonl_of_functions_is_code_and_a_bad_one_is_refused_by_record(tmp_path):
    path = write_jsonl(tmp_path / "functions.jsonl", [{"text": f"def f{i}(x):\n    return x + {i}\n"} for i in range(40)])
    cfg = compose([f"data={path}", f"run={tmp_path}/run", "model=tiny"])
    schema, frames = prepare_run_data(cfg.data, RunDir(tmp_path / "run"), 0)
    assert schema.record_type == "code" and list(frames["train"].columns) == ["text"]
    assert load_schema(RunDir(tmp_path / "run").schema) == schema
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "def ok():\n    pass\n"}, {"text": "def broken(:\n"}])
    cfg = compose([f"data={bad}", f"run={tmp_path}/bad", "model=tiny"])
    with pytest.raises(UserError, match=r"record 1 does not parse as Python"):
        prepare_run_data(cfg.data, RunDir(tmp_path / "bad"), 0)
    assert not (tmp_path / "bad").exists()


def test_a_users_jsonl_of_tool_definitions_is_tools_and_a_bad_one_is_refused_by_record(tmp_path):
    renamed = [{**tool, "name": f"{tool['name']}{i}"} for i in range(10) for tool in TOOLS]
    path = write_jsonl(tmp_path / "tools.jsonl", renamed + renamed[:5])  # 5 duplicates
    cfg = compose([f"data={path}", f"run={tmp_path}/run", "model=tiny"])
    schema, frames = prepare_run_data(cfg.data, RunDir(tmp_path / "run"), 0)
    assert schema.record_type == "tool" and sum(len(frames[s]) for s in ("train", "val", "test")) == 30
    assert schema.limits == tool_limits([json.loads(t) for t in frames["train"]["text"]])
    bad = write_jsonl(tmp_path / "bad.jsonl", [TOOLS[0], {"name": "X", "description": "No parameters."}])
    cfg = compose([f"data={bad}", f"run={tmp_path}/bad", "model=tiny"])
    with pytest.raises(UserError, match=r"record 1 is not a tool definition.*parameters"):
        prepare_run_data(cfg.data, RunDir(tmp_path / "bad"), 0)


def test_botocore_operations_become_tool_definitions():
    model = {"shapes": {
        "In": {"type": "structure", "required": ["Name"], "members": {
            "Name": {"shape": "Str", "documentation": "<p>The <code>name</code>. More text.</p>"},
            "Mode": {"shape": "Mode"}, "Ids": {"shape": "IdList", "documentation": "<p>Ids &amp; more.</p>"}}},
        "Str": {"type": "string"}, "Mode": {"type": "string", "enum": ["on", "off"], "documentation": "The mode."},
        "IdList": {"type": "list", "member": {"shape": "Str"}}}}
    tool = operation_tool(model, {"name": "PutThing", "input": {"shape": "In"}, "documentation": "<p>Puts it.</p>"})
    assert tool == {"name": "PutThing", "description": "Puts it.", "parameters": {"type": "object", "properties": {
        "Name": {"type": "string", "description": "The name ."},
        "Mode": {"type": "string", "description": "The mode.", "enum": ["on", "off"]},
        "Ids": {"type": "array", "description": "Ids & more.", "items": {"type": "string", "description": ""}}},
        "required": ["Name"]}}
    assert load_tool(json.dumps(tool))[1] == []
    assert first_sentence("<p>One. Two.</p>", 100) == "One." and first_sentence("a" * 50, 10) == "a" * 7 + "..."


def test_text_schemas_parse_valid_records_and_say_why_others_are_not():
    code = TextSchema("code")
    assert code.parse("def f():\n    return 1\n") == {"text": "def f():\n    return 1\n"}
    with pytest.raises(InvalidRecord, match="does not parse as Python"):
        code.parse("def f(:\n")
    tools = TextSchema.for_records("tool", [tool_text(t) for t in TOOLS])
    reordered = {"parameters": TOOLS[1]["parameters"], "description": TOOLS[1]["description"], "name": TOOLS[1]["name"]}
    assert tools.parse(json.dumps(reordered)) == {"text": tool_text(TOOLS[1])}  # the canonical key order
    assert tool_text(TOOLS[1]).startswith('{"name": "ListQueues", "description": ')
    with pytest.raises(InvalidRecord, match="not valid JSON"):
        tools.parse("{")
    with pytest.raises(InvalidRecord, match="not a tool definition"):
        tools.parse(json.dumps({"name": "X"}))


def test_the_tool_grammar_bounds_what_training_never_exceeded():
    limits = tool_limits(TOOLS)
    assert limits == {"name": 13, "description": 34, "parameters": 2, "parameter_name": 11,
                      "parameter_description": 14, "enum_values": 0, "enum_value": 1}
    grammar = tool_definition(limits)
    assert grammar["properties"]["description"]["maxLength"] == 34
    assert "enum" not in grammar["$defs"]["parameter"]["properties"]  # no enum in training, none in the grammar
    assert grammar["properties"]["parameters"]["properties"]["properties"]["maxProperties"] == 2
    assert all(Draft202012Validator(grammar).is_valid(t) for t in TOOLS)
    too_long = {**TOOLS[1], "description": "x" * 35}
    assert not Draft202012Validator(grammar).is_valid(too_long) and load_tool(json.dumps(too_long))[1] == []


@pytest.fixture(scope="module")
def tool_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tools")
    path = write_jsonl(folder / "tools.jsonl", [
        {"name": f"{verb}{noun}", "description": f"{verb}s a {noun.lower()}.",
         "parameters": {"type": "object", "properties": {f"{noun}Id": {"type": "string", "description": "Its id."}},
                        "required": [f"{noun}Id"] if verb != "List" else []}}
        for verb in ("Get", "Delete", "List", "Update") for noun in ("Table", "Queue", "Bucket", "Topic", "Key")])
    run = folder / "run"
    train(compose([f"data={path}", f"run={run}", "stage=all", "sample.n=2", *TINY]))
    return RunDir(run)


def test_tool_records_train_and_sample_as_valid_definitions_and_are_measured(tool_run, tmp_path):
    samples = [json.loads(line)["text"] for line in (tool_run.root / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 2 and all(load_tool(text)[1] == [] for text in samples)  # invalid ones were rejected
    schema, prior, decoder = load_generator(tool_run)
    texts = decoder.generate(prior.sample(6), constrained=True, weights="float32")
    # untrained, yet every text has the tool shape within the training bounds (a required name may still be one
    # that is not defined: no grammar can tie the two, and the sampler rejects those)
    assert all(Draft202012Validator(tool_definition(schema.limits)).is_valid(json.loads(t)) for t in texts)
    _, frames = load_run_data(tool_run)
    synthetic = schema.records_to_frame([schema.parse(text) for text in samples])
    report = evaluate(schema, synthetic, frames)
    assert report["measures"]["schema_validity"] == 1 and "real_holdout_reference" in report
    assert 0 <= report["measures"]["name_novelty"] <= 1
    paths = write_report(schema, report, synthetic, frames["train"], tmp_path)
    assert json.loads(paths["report"].read_text())["record_type"] == "tool" and paths["features"].is_file()
    assert "schema_validity" in format_report(report)
    logged, _ = fast_metrics(schema, synthetic, frames, None, 0)  # what the evaluation callback logs as eval/...
    assert logged["schema_validity"] == 1 and all(isinstance(v, (int, float)) for v in logged.values())
    with pytest.raises(UserError, match="conditions apply to tables only"):
        parse_conditions(schema, {"name": "GetTable"})


def test_code_records_train_and_an_untrained_decoder_is_refused_with_a_clear_error(tmp_path):
    path = write_jsonl(tmp_path / "functions.jsonl",
                       [{"text": f"def f{i}(x, y={i}):\n    return x * y\n"} for i in range(60)])
    run = tmp_path / "run"
    for stage in ("vae", "prior", "decoder"):
        train(compose([f"data={path}", f"run={run}", f"stage={stage}", *TINY]))
    schema, prior, decoder = load_generator(RunDir(run))
    assert schema.record_type == "code" and decoder.constraint() is None  # code has no grammar: rejection
    with pytest.raises(SamplingError, match=r"only 0 of 2 rows were valid.*does not parse as Python.*no grammar"):
        sample_records(schema, prior, decoder, 2, batch_size=2, max_rounds=1, progress=False, constrained=True,
                       weights="float32", max_new_tokens=24)
