"""The schema of records that are one text each: code (a Python function) and tool (an API operation definition).
It says which texts are valid records and what a record's canonical text is, and gives constrained decoding its
grammar where the structure is fixed (tools: the tool-definition JSON schema). Code has no grammar: a text is a
record when `ast.parse` accepts it, and the sampler rejects and regenerates the rest."""

import json
from dataclasses import dataclass

import pandas as pd

from difflm.datamodules.schema import SCHEMA_VERSION, SEPARATORS, InvalidRecord
from difflm.datamodules.tools import load_tool, tool_definition, tool_limits
from difflm.metrics.code import syntax_error
from difflm.metrics.similarity import tokens

TEXT_RECORD_TYPES = ("code", "tool")


def capped_unique(texts, max_tokens, key=None):
    """A `text` DataFrame of the texts of at most max_tokens tokens (metrics.similarity.tokens: identifiers,
    numbers, punctuation marks), the first of each set with the same key (default: the text) kept, in order."""
    seen, kept = set(), []
    for text in texts:
        if len(tokens(text)) > max_tokens:
            continue
        identity = key(text) if key else text
        if identity not in seen:
            seen.add(identity)
            kept.append(text)
    return pd.DataFrame({"text": kept})


def _ordered(value, order):
    return {key: value[key] for key in order if key in value}


def tool_text(tool):
    """A (valid) tool definition's canonical text: compact JSON with the separators of table records, keys in the
    order of the tool shape, as constrained decoding writes it."""
    parameters = tool["parameters"]
    properties = {}
    for name, spec in parameters["properties"].items():
        spec = _ordered(spec, ("type", "description", "enum", "items"))
        if "items" in spec:
            spec["items"] = _ordered(spec["items"], ("type", "description"))
        properties[name] = spec
    ordered = {"name": tool["name"], "description": tool["description"],
               "parameters": {"type": parameters["type"], "properties": properties, "required": parameters["required"]}}
    return json.dumps(ordered, ensure_ascii=False, separators=SEPARATORS)


@dataclass
class TextSchema:
    record_type: str
    limits: dict | None = None  # tools: the bounds of the training definitions (tools.tool_limits) for the grammar
    version: int = SCHEMA_VERSION
    text_format = "text"
    separators = SEPARATORS  # of a tool definition's canonical text

    @property
    def names(self):
        return ["text"]

    @property
    def has_grammar(self):
        return self.record_type == "tool"

    def to_text(self, record):
        return record["text"]

    def parse(self, text):
        """{"text": the canonical text} of a valid record, or raise InvalidRecord saying why it is not one."""
        if self.record_type == "code":
            reason = syntax_error(text)
            if reason is not None:
                raise InvalidRecord("does not parse as Python", reason)
            return {"text": text}
        tool, problems = load_tool(text)
        if tool is None:
            raise InvalidRecord("not valid JSON", problems[0])
        if problems:
            raise InvalidRecord("not a tool definition", problems[0])
        return {"text": tool_text(tool)}

    def fields(self, text):
        """The whole text is the one field (reconstruction accuracy compares whole texts)."""
        return {"text": text}

    def json_schema(self, conditions=()):
        """The grammar of constrained decoding as a JSON schema, or None where the record type has none (code)."""
        if conditions:
            raise ValueError(f"{self.record_type} records take no conditions")
        return tool_definition(self.limits) if self.record_type == "tool" else None

    def records_to_frame(self, records):
        return pd.DataFrame({"text": pd.Series([r["text"] for r in records], dtype="string")})

    def to_dict(self):
        return {"version": self.version, "record_type": self.record_type, "limits": self.limits}

    @classmethod
    def for_records(cls, record_type, texts):
        """The schema of these training texts (for tools, with their limits)."""
        if record_type == "tool":
            return cls(record_type, tool_limits([json.loads(text) for text in texts]))
        return cls(record_type)

    def save(self, path):
        from difflm.run_dir import atomic_write_text
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2))
