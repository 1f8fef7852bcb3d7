"""The table schema: inferred from the training table (or read from a user's JSON), saved with the run.

It turns a record into text and text back into a record, and says why a text is not a valid record (not JSON,
wrong keys, a value of the wrong type, an unknown category, out of range). Three text formats, all JSON in the
schema's column order: "object" (the paper's: {"age": 39, "workclass": "Private", ...}), "array" (the values
only: [39, "Private", ...], about half the tokens of an Adult row) and "compact" (the values without spaces:
[39,"Private",...]; SmolLM2 reads a space before a number as a token of its own, so a fifth fewer again).
"""

import json
import math
from dataclasses import asdict, dataclass, field

import pandas as pd

from difflm.errors import UserError

KINDS = ("integer", "float", "categorical", "boolean")
TEXT_FORMATS = ("object", "array", "compact")
VALUES_ONLY = ("array", "compact")  # the formats that write a record as the list of its values
SCHEMA_VERSION = 1
SEPARATORS = (", ", ": ")
COMPACT_SEPARATORS = (",", ":")


class InvalidRecord(ValueError):
    """A text that does not parse into a valid record; `kind` groups failures for reporting."""

    def __init__(self, kind, detail):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


@dataclass
class Column:
    name: str
    kind: str
    nullable: bool = False
    missing_rate: float = 0.0
    categories: list | None = None
    minimum: float | None = None
    maximum: float | None = None
    decimals: int | None = None

    def check(self, value):
        """The value if it is valid for this column, else raise InvalidRecord."""
        if value is None:
            if not self.nullable:
                raise InvalidRecord(f"null in '{self.name}'", "the column has no missing values")
            return None
        if self.kind == "boolean":
            if not isinstance(value, bool):
                raise InvalidRecord(f"not a boolean in '{self.name}'", repr(value))
            return value
        if self.kind == "categorical":
            if not isinstance(value, str) or value not in self._category_set:
                raise InvalidRecord(f"unknown category in '{self.name}'", repr(value))
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InvalidRecord(f"not a number in '{self.name}'", repr(value))
        if self.kind == "integer" and not isinstance(value, int):
            raise InvalidRecord(f"not an integer in '{self.name}'", repr(value))
        if not self.minimum <= value <= self.maximum:
            raise InvalidRecord(f"out of range in '{self.name}'", f"{value} not in [{self.minimum}, {self.maximum}]")
        return value

    @property
    def _category_set(self):
        if not hasattr(self, "_categories_cache"):
            self._categories_cache = frozenset(self.categories or ())
        return self._categories_cache


@dataclass
class Schema:
    columns: list[Column]
    record_type: str = "table"
    text_format: str = "object"
    version: int = SCHEMA_VERSION
    names: list[str] = field(init=False, repr=False)
    has_grammar = True  # constrained decoding can follow it (record_json_schema)

    def __post_init__(self):
        self.names = [column.name for column in self.columns]

    # ---- text round trip ----------------------------------------------------------------------------------
    def to_text(self, record):
        """A record (dict or pandas row) as JSON in the schema's text format and column order."""
        values = [_plain(record[c.name], c) for c in self.columns]
        obj = values if self.text_format in VALUES_ONLY else dict(zip(self.names, values))
        return json.dumps(obj, ensure_ascii=False, separators=self.separators)

    @property
    def separators(self):
        """(between items, between a key and its value) in this format's texts."""
        return COMPACT_SEPARATORS if self.text_format == "compact" else SEPARATORS

    def parse(self, text):
        """The record a text encodes, or raise InvalidRecord saying why it is not valid."""
        obj = self.fields(text)
        return {c.name: c.check(obj[c.name]) for c in self.columns}

    def fields(self, text):
        """{column: JSON value} of a text, keys checked but values not; else raise InvalidRecord."""
        try:
            obj = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as error:
            raise InvalidRecord("not valid JSON", str(error)) from None
        if self.text_format in VALUES_ONLY:
            if not isinstance(obj, list):
                raise InvalidRecord("not a JSON array", type(obj).__name__)
            if len(obj) != len(self.names):
                raise InvalidRecord("wrong number of values", f"{len(obj)}, expected {len(self.names)}")
            return dict(zip(self.names, obj))
        if not isinstance(obj, dict):
            raise InvalidRecord("not a JSON object", type(obj).__name__)
        if list(obj) != self.names:
            missing = [n for n in self.names if n not in obj]
            extra = [k for k in obj if k not in self.names]
            if missing or extra:
                raise InvalidRecord("wrong keys", f"missing {missing}, unexpected {extra}")
            raise InvalidRecord("keys out of order", str(list(obj)))
        return obj

    def records_to_frame(self, records):
        """Records -> DataFrame with the schema's columns and dtypes (nullable integer/boolean where needed)."""
        frame = pd.DataFrame.from_records(records, columns=self.names)
        for column in self.columns:
            frame[column.name] = frame[column.name].astype(_DTYPES[column.kind])
        return frame

    # ---- persistence --------------------------------------------------------------------------------------
    def to_dict(self):
        return {"version": self.version, "record_type": self.record_type, "text_format": self.text_format,
                "columns": [asdict(c) for c in self.columns]}

    @classmethod
    def from_dict(cls, data, source="schema"):
        try:
            columns = [Column(**c) for c in data["columns"]]
            record_type = data.get("record_type", "table")
            text_format = data.get("text_format", "object")
        except (KeyError, TypeError) as error:
            raise UserError(f"{source} is not a valid schema: {error}; expected "
                            "{{\"columns\": [{{\"name\": ..., \"kind\": ...}}]}}") from None
        if text_format not in TEXT_FORMATS:
            raise UserError(f"{source}: text_format '{text_format}' is not one of {', '.join(TEXT_FORMATS)}")
        for c in columns:
            if c.kind not in KINDS:
                raise UserError(f"{source}: column '{c.name}' has kind '{c.kind}'; use one of {', '.join(KINDS)}")
            if c.kind == "categorical" and not c.categories:
                raise UserError(f"{source}: categorical column '{c.name}' needs a non-empty 'categories' list")
            if c.kind in ("integer", "float") and (c.minimum is None or c.maximum is None):
                raise UserError(f"{source}: numeric column '{c.name}' needs 'minimum' and 'maximum'")
        return cls(columns=columns, record_type=record_type, text_format=text_format)

    @classmethod
    def load(cls, path):
        try:
            return cls.from_dict(json.loads(open(path).read()), source=str(path))
        except FileNotFoundError:
            raise UserError(f"schema file {path} not found: fix data.schema") from None
        except json.JSONDecodeError as error:
            raise UserError(f"schema file {path} is not valid JSON: {error}") from None

    def save(self, path):
        from difflm.run_dir import atomic_write_text
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2))


_DTYPES = {"integer": "Int64", "float": "Float64", "categorical": "string", "boolean": "boolean"}


def _plain(value, column):
    """A JSON-ready Python value for a table cell (None for missing)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if column.kind == "integer":  # 39.0 (a CSV column with gaps) is 39; 39.5 stays 39.5, which check refuses
        return value if isinstance(value, float) and not value.is_integer() else int(value)
    if column.kind == "float":
        value = float(value)
        return round(value, column.decimals) if column.decimals is not None else value
    if column.kind == "boolean":
        return bool(value)
    return str(value)


def _decimals(values, cap=6):
    """The fewest decimals (up to `cap`) that represent every value exactly."""
    for decimals in range(cap + 1):
        if ((values * 10**decimals).round() - values * 10**decimals).abs().max() < 1e-6:
            return decimals
    return cap


def infer_schema(frame, max_categories=200, source="data", text_format="object"):
    """Infer a column's kind, categories, range and missing rate from a training DataFrame."""
    columns = []
    for name in frame.columns:
        values = frame[name]
        present = values.dropna()
        if present.empty:
            raise UserError(f"{source}: column '{name}' is entirely empty; drop it from the file")
        column = Column(name=str(name), kind="categorical", nullable=bool(values.isna().any()),
                        missing_rate=round(float(values.isna().mean()), 6))
        if pd.api.types.is_bool_dtype(present):
            column.kind = "boolean"
        elif pd.api.types.is_numeric_dtype(present):
            integral = pd.api.types.is_integer_dtype(present) or bool((present == present.round()).all())
            column.kind = "integer" if integral else "float"
            cast = int if integral else float
            column.minimum, column.maximum = cast(present.min()), cast(present.max())
            if not integral:
                column.decimals = _decimals(present.astype(float))
        else:
            categories = sorted(present.astype(str).unique())
            if len(categories) > max_categories:
                raise UserError(f"{source}: column '{name}' has {len(categories)} distinct text values, more than "
                                f"data.max_categories={max_categories}; raise it or drop the column")
            column.categories = categories
        columns.append(column)
    return Schema(columns=columns, text_format=text_format)
