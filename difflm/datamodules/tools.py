"""Tool (API operation) definitions in the common tool-calling shape: a name, a description, and the parameters as
a JSON schema object whose every property has a type and a description, and a list of the required ones.

TOOL_DEFINITION is that shape as a JSON schema itself: it validates a record, and constrained decoding can follow it.
"""

import json

from jsonschema import Draft202012Validator

PARAMETER_TYPES = ("string", "integer", "number", "boolean", "array", "object")

TOOL_DEFINITION = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
        "description": {"type": "string", "minLength": 1},
        "parameters": {
            "type": "object",
            "properties": {
                "type": {"const": "object"},
                "properties": {"type": "object", "additionalProperties": {"$ref": "#/$defs/parameter"}},
                "required": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
            },
            "required": ["type", "properties", "required"],
            "additionalProperties": False,
        },
    },
    "required": ["name", "description", "parameters"],
    "additionalProperties": False,
    "$defs": {
        "parameter": {
            "type": "object",
            "properties": {
                "type": {"enum": list(PARAMETER_TYPES)},
                "description": {"type": "string"},
                "enum": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                "items": {"$ref": "#/$defs/parameter"},
            },
            "required": ["type", "description"],
            "additionalProperties": False,
        },
    },
}

_VALIDATOR = Draft202012Validator(TOOL_DEFINITION)


def tool_problems(tool):
    """Why a decoded JSON value is not a valid tool definition (empty list: valid): schema violations, and
    required parameters that are not defined."""
    problems = [f"{'/'.join(map(str, e.absolute_path)) or 'tool'}: {e.message}" for e in _VALIDATOR.iter_errors(tool)]
    if not problems:
        undefined = set(tool["parameters"]["required"]) - set(tool["parameters"]["properties"])
        problems += [f"parameters/required: '{name}' is not a defined parameter" for name in sorted(undefined)]
    return problems


def load_tool(text):
    """(the JSON value of a text or None if it is not JSON, its problems as a tool definition)."""
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as error:
        return None, [f"not valid JSON: {error}"]
    return value, tool_problems(value)
