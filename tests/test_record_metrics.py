"""The measures of code and tool records (metrics/similarity, code, tools) on cases with known answers."""

import json

import pytest

from difflm.datamodules.tools import load_tool, tool_problems
from difflm.metrics.code import code_report, parse_rate, structure, structure_errors
from difflm.metrics.distributions import ks_error, tv_error
from difflm.metrics.similarity import copy_rates, distinct_n, jaccard_matrix, mean_pairwise_similarity
from difflm.metrics.tools import field_coverage, tool_report

FUNCTIONS = [
    "def add(a, b):\n    return a + b\n",
    "def scale(values, factor=2):\n    return [v * factor for v in values]\n",
    "def greet(name, *, loud=False):\n    text = 'hello ' + name\n    return text.upper() if loud else text\n",
    "def first(items):\n    for item in items:\n        return item\n    return None\n",
]


def tool(name, description, **parameters):
    required = [p for p, spec in parameters.items() if spec.pop("required", False)]
    return {"name": name, "description": description,
            "parameters": {"type": "object", "properties": parameters, "required": required}}


TOOLS = [
    tool("GetObject", "Retrieves an object from a bucket.", Bucket={"type": "string", "description": "The bucket.",
         "required": True}, Key={"type": "string", "description": "The key.", "required": True}),
    tool("ListQueues", "Lists the queues of the account.", MaxResults={"type": "integer", "description": "At most."}),
    tool("StopInstances", "Stops instances.", InstanceIds={"type": "array", "description": "The instances.",
         "items": {"type": "string", "description": "An instance."}, "required": True},
         Force={"type": "boolean", "description": "Force it."}),
]


def test_jaccard_of_token_sets_and_copy_rates():
    assert jaccard_matrix(["a b c"], ["a b d", "a b c", "x"]).tolist() == [[0.5, 1.0, 0.0]]
    train = ["alpha beta gamma delta epsilon zeta eta theta iota kappa", "one two three"]
    synthetic = [train[0], "alpha beta gamma delta epsilon zeta eta theta iota lambda", "nothing alike here"]
    rates = copy_rates(synthetic, train, near=0.8)  # the near one shares 9 of 11 tokens: 0.818
    assert rates["exact_copy_rate"] == pytest.approx(1 / 3) and rates["near_copy_rate"] == pytest.approx(2 / 3)


def test_diversity_counts_distinct_ngrams_and_pairwise_similarity():
    assert distinct_n(["a a a"], 1) == pytest.approx(1 / 3) and distinct_n(["a b", "c d"], 1) == 1.0
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)
    assert mean_pairwise_similarity(["x y", "x y", "x y"]) == 1.0
    assert mean_pairwise_similarity(["x", "y", "z"]) == 0.0


def test_distribution_errors_are_zero_for_the_same_distribution_and_100_for_disjoint_ones():
    from collections import Counter
    assert ks_error([1, 2, 3], [3, 2, 1]) == 0 and ks_error([1, 2], [5, 6]) == 100
    assert tv_error(Counter(a=2, b=2), Counter(a=1, b=1)) == 0 and tv_error(Counter(a=1), Counter(b=3)) == 100
    assert tv_error(Counter(), Counter(a=1)) is None


def test_code_parse_rate_and_structure():
    assert parse_rate([*FUNCTIONS, "def broken(:\n"]) == pytest.approx(0.8)
    features = structure("def f(a, b=1, *c, d, **e):\n    if a:\n        return b\n")
    assert (features["arguments"], features["lines"]) == (5, 3)
    assert features["node_types"]["FunctionDef"] == 1 and features["node_types"]["If"] == 1
    assert structure_errors(FUNCTIONS, FUNCTIONS)["structure_error"] == 0
    far = ["x = 1\n", "import os\n"]  # no functions, one line each
    assert structure_errors(FUNCTIONS, far)["arguments_error"] == 100


def test_code_report_counts_only_parsing_functions_and_their_copies():
    report = code_report([FUNCTIONS[0], "def new(q):\n    return q - 1\n", "def bad(:"], FUNCTIONS)
    assert report["parse_rate"] == pytest.approx(2 / 3)
    assert report["exact_copy_rate"] == 0.5 and report["near_copy_rate"] == 0.5


def test_tool_definitions_are_validated_against_the_tool_shape():
    assert all(tool_problems(t) == [] for t in TOOLS)
    assert any("description" in p for p in tool_problems({k: v for k, v in TOOLS[0].items() if k != "description"}))
    undefined = json.loads(json.dumps(TOOLS[1]))
    undefined["parameters"]["required"] = ["Missing"]
    assert tool_problems(undefined) == ["parameters/required: 'Missing' is not a defined parameter"]
    wrong_type = json.loads(json.dumps(TOOLS[1]))
    wrong_type["parameters"]["properties"]["MaxResults"]["type"] = "int"
    assert tool_problems(wrong_type) and load_tool("{not json")[0] is None


def test_field_coverage_counts_the_expected_fields_present():
    assert field_coverage(TOOLS[0]) == 1.0
    partial = {"name": "X", "parameters": {"properties": {"a": {"type": "string"}}}}
    assert field_coverage(partial) == pytest.approx(3 / 5) and field_coverage([1]) == 0.0


def test_tool_report_on_copies_and_on_novel_tools():
    texts = [json.dumps(t) for t in TOOLS]
    copies = tool_report(texts, texts)
    assert copies["schema_validity"] == 1 and copies["exact_copy_rate"] == 1 and copies["name_novelty"] == 0
    assert copies["parameter_count_error"] == 0 and copies["parameter_type_error"] == 0
    novel = tool("DeleteTable", "Deletes a table for good.", TableName={"type": "string", "description": "Its name.",
                 "required": True})
    report = tool_report([json.dumps(novel), "[]", "{oops"], texts)
    assert report["json_validity"] == pytest.approx(2 / 3) and report["schema_validity"] == pytest.approx(1 / 3)
    assert report["name_novelty"] == 1 and report["exact_copy_rate"] == 0
