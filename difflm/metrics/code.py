"""Measures for code records (Python functions): parse rate, copies of training functions, diversity, and how
far the distribution of structural features is from the real one."""

import ast
from collections import Counter

import numpy as np
import pandas as pd

from difflm.metrics.distributions import ks_error, tv_error
from difflm.metrics.similarity import copy_rates, diversity, tokens

NUMERIC_FEATURES = ("lines", "tokens", "arguments", "depth")


def syntax_error(text):
    """Why `ast.parse` refuses the text (None if it accepts it): the one Python check of validity, measures and data."""
    try:
        ast.parse(text)
        return None
    except SyntaxError as error:
        return error.msg
    except (ValueError, RecursionError, MemoryError) as error:  # ValueError: null bytes; the others: deep nesting
        return str(error) or type(error).__name__


def parses(text):
    return syntax_error(text) is None


def parse_rate(texts):
    return float(np.mean([parses(t) for t in texts])) if texts else None


def _depth(node):
    children = list(ast.iter_child_nodes(node))
    return 1 + max(map(_depth, children)) if children else 1


def structure(text):
    """Structural features of a parsing text: line and token counts, the first function's argument count (0 if
    none), the AST's depth, and the count of every AST node type."""
    tree = ast.parse(text)
    function = next((n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))), None)
    arguments = 0
    if function is not None:
        args = function.args
        arguments = (len(args.posonlyargs) + len(args.args) + len(args.kwonlyargs) + (args.vararg is not None)
                     + (args.kwarg is not None))
    return {"lines": len(text.strip().splitlines()), "tokens": len(tokens(text)), "arguments": arguments,
            "depth": _depth(tree), "node_types": Counter(type(n).__name__ for n in ast.walk(tree))}


def structure_errors(real_texts, synthetic_texts):
    """Per feature, 100 x the Kolmogorov-Smirnov statistic between real and synthetic (0: same distribution), and
    100 x the total variation distance between their AST node-type frequencies; `structure_error` is their mean.
    Only texts that parse count."""
    real = [structure(t) for t in real_texts if parses(t)]
    synthetic = [structure(t) for t in synthetic_texts if parses(t)]
    if not real or not synthetic:
        return {"structure_error": None}
    errors = {f"{name}_error": ks_error([r[name] for r in real], [s[name] for s in synthetic])
              for name in NUMERIC_FEATURES}
    errors["node_type_error"] = tv_error(sum((r["node_types"] for r in real), Counter()),
                                         sum((s["node_types"] for s in synthetic), Counter()))
    errors = {key: round(value, 3) for key, value in errors.items()}
    return {"structure_error": round(float(np.mean(list(errors.values()))), 3), **errors}


def code_features(texts):
    """The numeric structural features of the texts that parse, one row each (for plots)."""
    return pd.DataFrame([{name: structure(t)[name] for name in NUMERIC_FEATURES} for t in texts if parses(t)],
                        columns=list(NUMERIC_FEATURES))


def code_report(synthetic_texts, train_texts, near=0.8):
    """Every code measure of a synthetic sample against the training functions."""
    valid = [t for t in synthetic_texts if parses(t)]
    return {"parse_rate": parse_rate(synthetic_texts), **copy_rates(valid, train_texts, near),
            **diversity(valid), **structure_errors(train_texts, valid)}
