"""Record types: table rows (Schema: one value per column), code and tool definitions (TextSchema: one text each).
The type is part of the saved schema; it decides serialisation, parsing, validation and which metrics apply.

data.record_type: table | code | tool | auto (a file whose records have only a `text` field is code; one whose
records have name, description and parameters is tools; anything else is a table).
"""

import json

from difflm.datamodules.code_source import check_code_table, code_table, read_stdlib_functions
from difflm.datamodules.schema import Schema
from difflm.datamodules.sources import load_tables, read_table
from difflm.datamodules.text_schema import TEXT_RECORD_TYPES, TextSchema, capped_unique, tool_text
from difflm.datamodules.tool_source import check_tool_table, read_botocore_tools
from difflm.errors import UserError

RECORD_TYPES = ("table", *TEXT_RECORD_TYPES)
BUILT_IN = {"code": "code", "tools": "tool"}  # data.source -> the record type it builds
TOOL_FIELDS = {"name", "description", "parameters"}


def schema_from_dict(data, source="schema"):
    """The schema a saved dict describes, of whichever record type it names."""
    record_type = data.get("record_type", "table") if isinstance(data, dict) else "table"
    if record_type in TEXT_RECORD_TYPES:
        return TextSchema(record_type, data.get("limits"))
    if record_type != "table":
        raise UserError(f"{source}: record_type '{record_type}' is not one of {', '.join(RECORD_TYPES)}")
    return Schema.from_dict(data, source)


def load_schema(path):
    try:
        return schema_from_dict(json.loads(open(path).read()), source=str(path))
    except FileNotFoundError:
        raise UserError(f"schema file {path} not found") from None


def record_type_of(data_cfg, frame=None):
    """The record type of the data config; for auto, that of the file's records (still auto without them)."""
    record_type = data_cfg.get("record_type", "auto")
    if data_cfg.source in BUILT_IN:
        return BUILT_IN[data_cfg.source]
    if record_type not in ("auto", *RECORD_TYPES):
        raise UserError(f"data.record_type={record_type} is not one of auto, {', '.join(RECORD_TYPES)}")
    if record_type == "auto" and frame is not None:
        columns = set(map(str, frame.columns))
        return "code" if columns == {"text"} else "tool" if TOOL_FIELDS <= columns else "table"
    return record_type


def text_records(record_type, data_cfg, frame=None):
    """A DataFrame with one `text` column, the canonical text of every record: the built-in catalogue (frame None)
    or a user's file, checked, deduplicated and capped at data.max_tokens tokens."""
    source = data_cfg.source
    if record_type == "code":
        if frame is None:
            return read_stdlib_functions(data_cfg.max_tokens)
        return code_table(check_code_table(frame, source), data_cfg.max_tokens)
    tools = read_botocore_tools() if frame is None else check_tool_table(frame, source)
    return capped_unique([tool_text(tool) for tool in tools], data_cfg.max_tokens)


def held_out(frame, data_cfg, seed):
    test = frame.sample(frac=data_cfg.test_fraction, random_state=seed)
    return frame.drop(test.index), test


def load_records(data_cfg, seed):
    """(record type, train, test): tables as load_tables reads them; text records as canonical texts, the test
    split held out after duplicates are dropped (so no test text is also a training text)."""
    if data_cfg.source in BUILT_IN:
        record_type = BUILT_IN[data_cfg.source]
        return (record_type, *held_out(text_records(record_type, data_cfg), data_cfg, seed))
    if data_cfg.source is None or data_cfg.source == "adult" or record_type_of(data_cfg) == "table":
        return ("table", *load_tables(data_cfg, seed))
    frame = read_table(data_cfg.source)
    record_type = record_type_of(data_cfg, frame)
    if record_type == "table":
        return ("table", *load_tables(data_cfg, seed))
    texts = text_records(record_type, data_cfg, frame)
    if data_cfg.test_source is None:
        return (record_type, *held_out(texts, data_cfg, seed))
    test = text_records(record_type, data_cfg, read_table(data_cfg.test_source))
    return record_type, texts, test
