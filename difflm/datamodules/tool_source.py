"""Tool records (data=tools): API operation definitions in the common tool-calling shape, built from the AWS service
models that ship inside the `botocore` package. Each operation becomes {name, description, parameters}: the
first sentence of its documentation, and its input's top-level members as parameters with a JSON type, the first
sentence of their documentation, their enum values (short lists only), the item type of lists, and which are
required. A user's own tool definitions come as a JSONL file, one definition per line."""

import html
import json
import re

import pandas as pd

from difflm.datamodules.tools import load_tool, tool_problems
from difflm.errors import UserError

JSON_TYPES = {"string": "string", "timestamp": "string", "blob": "string", "integer": "integer", "long": "integer",
              "boolean": "boolean", "double": "number", "float": "number", "list": "array", "structure": "object",
              "map": "object"}
TAG = re.compile(r"<[^>]+>")
SENTENCE_END = re.compile(r"(?<=[.!?])\s")


def first_sentence(documentation, max_chars):
    """The documentation's first sentence as plain text (tags removed, entities decoded), cut to max_chars."""
    text = " ".join(html.unescape(TAG.sub(" ", documentation or "")).split())
    sentence = SENTENCE_END.split(text, maxsplit=1)[0]
    return sentence if len(sentence) <= max_chars else sentence[: max_chars - 3].rstrip() + "..."


def parameter(shapes, member, max_chars, max_enum):
    shape = shapes[member["shape"]]
    spec = {"type": JSON_TYPES[shape["type"]],
            "description": first_sentence(member.get("documentation") or shape.get("documentation"), max_chars)}
    if shape["type"] == "string" and 0 < len(shape.get("enum", [])) <= max_enum:
        spec["enum"] = list(shape["enum"])
    if shape["type"] == "list":
        item = shapes[shape["member"]["shape"]]
        spec["items"] = {"type": JSON_TYPES[item["type"]],
                         "description": first_sentence(shape["member"].get("documentation")
                                                       or item.get("documentation"), max_chars)}
    return spec


def operation_tool(model, operation, max_chars=120, max_enum=8):
    """One botocore operation as a tool definition."""
    shapes = model["shapes"]
    members, required = {}, []
    if "input" in operation:
        structure = shapes[operation["input"]["shape"]]
        members = {name: parameter(shapes, member, max_chars, max_enum)
                   for name, member in structure.get("members", {}).items()}
        required = [name for name in structure.get("required", []) if name in members]
    return {"name": operation["name"],
            "description": first_sentence(operation.get("documentation"), 2 * max_chars),
            "parameters": {"type": "object", "properties": members, "required": required}}


def read_botocore_tools():
    """Every operation of every service model in botocore, as tool definitions that pass the tool shape."""
    from botocore.loaders import Loader
    loader, tools = Loader(), []
    for service in sorted(loader.list_available_services("service-2")):
        model = loader.load_service_model(service, "service-2")
        for name in sorted(model["operations"]):
            tool = operation_tool(model, model["operations"][name])
            if tool["description"] and not tool_problems(tool):
                tools.append(tool)
    return tools


def check_tool_table(frame, source):
    """A user's JSONL of tool definitions, each passing the tool shape, or a UserError naming the first that fails."""
    tools = []
    for index, row in enumerate(frame.to_dict("records")):
        tool = {key: value for key, value in row.items() if not (isinstance(value, float) and pd.isna(value))}
        problems = load_tool(json.dumps(tool, default=str))[1]
        if problems:
            raise UserError(f"data file {source}: record {index} is not a tool definition ({problems[0]}): fix it or "
                            "remove it; each line needs name, description and parameters {type, properties, required}")
        tools.append(tool)
    return tools
