"""Tool (API operation) definitions in the common tool-calling shape: a name, a description, and the parameters as
a JSON schema object whose every property has a type and a description, and a list of the required ones.

TOOL_DEFINITION is that shape as a JSON schema itself: it validates a record, and constrained decoding can follow it.
"""

import json

from jsonschema import Draft202012Validator

PARAMETER_TYPES = ("string", "integer", "number", "boolean", "array", "object")
IDENTIFIER = "[A-Za-z_][A-Za-z0-9_]"  # a first character, then the others: names of tools and parameters


def _identifier(max_length=None):
    return f"^{IDENTIFIER}{{0,{max_length - 1}}}$" if max_length else f"^{IDENTIFIER}*$"


def _string(max_length=None, **extra):
    return {"type": "string", **extra, **({"maxLength": max_length} if max_length else {})}


def tool_definition(limits=None):
    """The tool shape as a JSON schema. `limits` (tool_limits of the training definitions) bounds every free
    string and list by the longest seen in training, so a constrained decoder always closes them."""
    limits = limits or {}
    item = {"type": "object", "properties": {"type": {"enum": list(PARAMETER_TYPES)},
                                             "description": _string(limits.get("parameter_description"))},
            "required": ["type", "description"], "additionalProperties": False}
    enum_values = {"type": "array", "items": _string(limits.get("enum_value")), "minItems": 1,
                   **({"maxItems": limits["enum_values"]} if limits else {})}
    enum = {"enum": enum_values} if limits.get("enum_values", 1) else {}  # none in training: none in the grammar
    parameter = {"type": "object",
                 "properties": {**item["properties"], **enum, "items": {"$ref": "#/$defs/item"}},
                 "required": ["type", "description"], "additionalProperties": False}
    count = {"maxProperties": limits["parameters"]} if limits else {}
    return {
        "type": "object",
        "properties": {
            "name": _string(pattern=_identifier(limits.get("name"))),
            "description": _string(limits.get("description"), minLength=1),
            "parameters": {
                "type": "object",
                "properties": {
                    "type": {"const": "object"},
                    "properties": {"type": "object", "additionalProperties": False, **count,
                                   "patternProperties": {_identifier(limits.get("parameter_name")):
                                                         {"$ref": "#/$defs/parameter"}}},
                    "required": {"type": "array", "items": _string(pattern=_identifier(limits.get("parameter_name"))),
                                 **({"maxItems": limits["parameters"]} if limits else {})},
                },
                "required": ["type", "properties", "required"],
                "additionalProperties": False,
            },
        },
        "required": ["name", "description", "parameters"],
        "additionalProperties": False,
        "$defs": {"parameter": parameter, "item": item},
    }


def tool_limits(tools):
    """The longest name, description, parameter name and description, enum value, and the most parameters and enum
    values in these (valid) tool definitions."""
    parameters = [(name, spec) for tool in tools for name, spec in tool["parameters"]["properties"].items()]
    descriptions = [spec["description"] for _, spec in parameters]
    descriptions += [spec["items"]["description"] for _, spec in parameters if "items" in spec]
    enums = [spec["enum"] for _, spec in parameters if "enum" in spec]
    longest = lambda values: max(map(len, values), default=1) or 1  # noqa: E731
    return {"name": longest([t["name"] for t in tools]), "description": longest([t["description"] for t in tools]),
            "parameters": max((len(t["parameters"]["properties"]) for t in tools), default=0),
            "parameter_name": longest([name for name, _ in parameters]), "parameter_description": longest(descriptions),
            "enum_values": max(map(len, enums), default=0), "enum_value": longest([v for e in enums for v in e])}


TOOL_DEFINITION = tool_definition()

_VALIDATOR = Draft202012Validator(TOOL_DEFINITION)


def tool_problems(tool):
    """Why a decoded JSON value is not a valid tool definition (empty list: valid): schema violations, and
    required parameters that are not defined."""
    problems = [f"{'/'.join(map(str, e.absolute_path)) or 'tool'}: {e.message}" for e in _VALIDATOR.iter_errors(tool)]
    if not problems:
        required = tool["parameters"]["required"]
        undefined = set(required) - set(tool["parameters"]["properties"])
        problems += [f"parameters/required: '{name}' is not a defined parameter" for name in sorted(undefined)]
        if len(set(required)) < len(required):
            problems.append("parameters/required: a parameter is listed twice")
    return problems


def load_tool(text):
    """(the JSON value of a text or None if it is not JSON, its problems as a tool definition)."""
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as error:
        return None, [f"not valid JSON: {error}"]
    return value, tool_problems(value)
