"""Code records (data=code): Python functions from real source that ships with Python, the standard library's own
modules split into top-level functions with `ast`, deduplicated, and capped in length. A user's own code comes
as a JSONL file with a `text` field (data=path/to/functions.jsonl)."""

import ast
import sysconfig
from pathlib import Path

from difflm.datamodules.text_schema import capped_unique
from difflm.errors import UserError
from difflm.metrics.code import syntax_error

# folders of the standard library that are tests, demos or vendored code rather than the library itself
SKIPPED_FOLDERS = {"test", "tests", "idlelib", "lib2to3", "turtledemo", "site-packages", "__pycache__", "ensurepip"}


def stdlib_files(root=None):
    root = Path(root or sysconfig.get_paths()["stdlib"])
    return [path for path in sorted(root.rglob("*.py"))
            if not SKIPPED_FOLDERS & set(path.relative_to(root).parts[:-1])]


def top_level_functions(source):
    """The source text of every top-level function (def or async def, without its decorators) of a module."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    return [ast.get_source_segment(source, node) for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


def normalised(function):
    """The function with formatting and comments removed: two texts that differ only there are duplicates."""
    return ast.dump(ast.parse(function))


def code_table(functions, max_tokens):
    """A `text` DataFrame of the functions of at most max_tokens tokens, one of each set that differ only in
    formatting and comments."""
    return capped_unique([function.strip() + "\n" for function in functions], max_tokens, key=normalised)


def read_stdlib_functions(max_tokens):
    functions = []
    for path in stdlib_files():
        try:
            functions += top_level_functions(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, OSError):
            continue
    return code_table(functions, max_tokens)


def check_code_table(frame, source):
    """A user's code table: a `text` column of functions that parse, or a UserError naming the first that does not."""
    if "text" not in frame.columns:
        raise UserError(f"data file {source} has no 'text' field: code records are JSON lines {{\"text\": \"def ...\"}}")
    for index, text in frame["text"].items():
        if not isinstance(text, str):
            raise UserError(f"data file {source}: the text of record {index} is not a string")
        reason = syntax_error(text)
        if reason is not None:
            raise UserError(f"data file {source}: record {index} does not parse as Python ({reason}): "
                            "fix or remove it")
    return frame["text"].tolist()
