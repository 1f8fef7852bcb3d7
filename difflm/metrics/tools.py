"""Measures for tool (API operation) definitions: JSON and schema validity, field coverage, how the parameter
counts, types and required shares compare with the real ones, novelty against training, and diversity."""

import json
from collections import Counter

import numpy as np
import pandas as pd

from difflm.datamodules.tools import load_tool
from difflm.metrics.distributions import ks_error, tv_error
from difflm.metrics.similarity import copy_rates, diversity, tokens

EXPECTED_PARAMETER_FIELDS = ("type", "description")


def _parameters(tool):
    """The parameters of a JSON value shaped like a tool (missing pieces read as empty)."""
    parameters = tool.get("parameters") if isinstance(tool, dict) else None
    properties = parameters.get("properties") if isinstance(parameters, dict) else None
    return properties if isinstance(properties, dict) else {}


def field_coverage(tool):
    """Share of a definition's expected fields that are present: name, description and parameters, and type and
    description of every parameter."""
    if not isinstance(tool, dict):
        return 0.0
    present = sum(key in tool for key in ("name", "description", "parameters"))
    expected = 3
    for parameter in _parameters(tool).values():
        expected += len(EXPECTED_PARAMETER_FIELDS)
        present += sum(isinstance(parameter, dict) and key in parameter for key in EXPECTED_PARAMETER_FIELDS)
    return present / expected


def profile(tools):
    """Parameter counts, types and required shares of valid tool definitions."""
    counts = [len(t["parameters"]["properties"]) for t in tools]
    types = Counter(p["type"] for t in tools for p in t["parameters"]["properties"].values())
    required = [len(t["parameters"]["required"]) / len(t["parameters"]["properties"])
                for t in tools if t["parameters"]["properties"]]
    return counts, types, required


def distribution_errors(real_tools, synthetic_tools):
    """100 x KS statistic of the parameter counts and of the share of parameters required, 100 x total variation
    distance of the parameter types (0: the same distribution)."""
    if not real_tools or not synthetic_tools:
        return {}
    real, synthetic = profile(real_tools), profile(synthetic_tools)
    errors = {"parameter_count_error": ks_error(real[0], synthetic[0]),
              "parameter_type_error": tv_error(real[1], synthetic[1])}
    if real[2] and synthetic[2]:
        errors["required_share_error"] = ks_error(real[2], synthetic[2])
    return {key: None if value is None else round(value, 3) for key, value in errors.items()}


def tool_features(texts):
    """Per valid tool definition: its parameter count, required count and description length in tokens (plots)."""
    rows = []
    for tool, problems in map(load_tool, texts):
        if not problems:
            rows.append({"parameters": len(tool["parameters"]["properties"]),
                         "required": len(tool["parameters"]["required"]),
                         "description_tokens": len(tokens(tool["description"]))})
    return pd.DataFrame(rows, columns=["parameters", "required", "description_tokens"])


def tool_report(synthetic_texts, train_texts, near=0.8):
    """Every tool measure of a synthetic sample against the training definitions."""
    loaded = [load_tool(text) for text in synthetic_texts]
    valid = [tool for tool, problems in loaded if not problems]
    train = [tool for tool, problems in map(load_tool, train_texts) if not problems]
    json_values = [tool for tool, _ in loaded if tool is not None]
    n = len(synthetic_texts)
    names = [tool["name"] for tool in valid]
    train_names = {tool["name"] for tool in train}
    descriptions = [tool["description"] for tool in valid]
    canonical = [json.dumps(tool, sort_keys=True) for tool in valid]
    return {
        "json_validity": len(json_values) / n if n else None,
        "schema_validity": len(valid) / n if n else None,
        "field_coverage": float(np.mean([field_coverage(t) for t in json_values])) if json_values else None,
        **distribution_errors(train, valid),
        "name_novelty": float(np.mean([name not in train_names for name in names])) if names else None,
        "distinct_name_share": len(set(names)) / len(names) if names else None,
        **copy_rates(canonical, [json.dumps(t, sort_keys=True) for t in train], near),
        **{f"description_{key}": value for key, value in diversity(descriptions).items()},
    }
