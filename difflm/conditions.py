"""Conditions for controllable sampling: `condition.<column>=<value>` on the command line.

A categorical or boolean column takes a value or a list of values (condition.education=[Bachelors,Masters]);
a numeric column takes a value or an inclusive range `lo..hi` (either end may be left out: `30..`, `..40`).
A condition on a column that does not exist, a value the column never takes, or a set of conditions that no
training row satisfies is a UserError that says so (with the nearest valid names)."""

import difflib
from dataclasses import dataclass

import pandas as pd

from difflm.errors import UserError


@dataclass(frozen=True)
class Condition:
    column: str
    values: tuple | None = None  # categorical / boolean
    minimum: float | None = None  # numeric, inclusive
    maximum: float | None = None

    def __str__(self):
        if self.values is not None:
            one = len(self.values) == 1
            return f"{self.column}={self.values[0]!r}" if one else f"{self.column} in {list(self.values)}"
        low = "" if self.minimum is None else f"{self.minimum:g}"
        high = "" if self.maximum is None else f"{self.maximum:g}"
        return f"{self.column}={low}..{high}" if low != high else f"{self.column}={low}"

    def holds(self, value):
        if pd.isna(value):  # None, NaN or pd.NA: a missing value meets no condition
            return False
        if self.values is not None:
            return value in self.values
        return (self.minimum is None or value >= self.minimum) and (self.maximum is None or value <= self.maximum)

    def to_dict(self):
        return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(self).items() if v is not None}


def _nearest(word, choices):
    near = difflib.get_close_matches(str(word), [str(c) for c in choices], n=3, cutoff=0.5)
    return f"; did you mean {', '.join(near)}?" if near else f"; valid: {', '.join(map(str, list(choices)[:12]))}"


def _number(column, text):
    try:
        return float(text)
    except ValueError:
        raise UserError(f"condition.{column}={text!r}: not a number or a range lo..hi (e.g. 30..40)") from None


def parse_condition(schema, name, raw):
    """The Condition for `condition.<name>=<raw>`, checked against the schema."""
    columns = {c.name: c for c in schema.columns}
    if name not in columns:
        raise UserError(f"condition.{name}: the schema has no column '{name}'{_nearest(name, columns)}")
    column = columns[name]
    if column.kind in ("categorical", "boolean"):
        allowed = column.categories if column.kind == "categorical" else [True, False]
        values = tuple(raw) if isinstance(raw, (list, tuple)) else (raw,)
        for value in values:
            if value not in allowed:
                raise UserError(f"condition.{name}={value!r}: '{name}' never takes this value"
                                f"{_nearest(value, allowed)}")
        return Condition(name, values=values)
    if isinstance(raw, bool) or isinstance(raw, (list, tuple)):
        raise UserError(f"condition.{name}={raw!r}: '{name}' is numeric: give a value or a range lo..hi")
    low, dots, high = str(raw).partition("..")
    minimum = _number(name, low) if low.strip() else None
    maximum = (_number(name, high) if high.strip() else None) if dots else minimum
    if minimum is not None and maximum is not None and minimum > maximum:
        raise UserError(f"condition.{name}={raw}: the range is empty ({minimum:g} > {maximum:g})")
    if (minimum is not None and minimum > column.maximum) or (maximum is not None and maximum < column.minimum):
        raise UserError(f"condition.{name}={raw}: outside the column's range [{column.minimum:g}, {column.maximum:g}]")
    return Condition(name, minimum=minimum, maximum=maximum)


def parse_conditions(schema, raw):
    """Conditions from {column: raw value}, in schema order (an unknown column sorts first, and is refused)."""
    if raw and schema.record_type != "table":
        raise UserError(f"condition.{next(iter(raw))}: {schema.record_type} records have no columns to condition "
                        "on; conditions apply to tables only")
    order = {name: i for i, name in enumerate(schema.names)}
    return tuple(parse_condition(schema, name, raw[name]) for name in sorted(raw, key=lambda n: order.get(n, -1)))


def satisfied(conditions, frame):
    """Boolean Series: the rows of `frame` that meet every condition."""
    mask = pd.Series(True, index=frame.index)
    for condition in conditions:
        mask &= frame[condition.column].map(condition.holds).astype(bool)
    return mask


def check_satisfiable(conditions, train):
    """The share of training rows that meet the conditions; an error if none does."""
    share = float(satisfied(conditions, train).mean()) if conditions else 1.0
    if conditions and share == 0:
        raise UserError(f"no training row has {' and '.join(map(str, conditions))}: the model has never seen such "
                        "a row; relax the condition")
    return share
