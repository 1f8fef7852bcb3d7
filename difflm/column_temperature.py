"""Sampling temperature by column (sample.column_temperature): the column each drawn token belongs to follows from
the text before it (difflm.columns). One temperature for every token sharpens some columns and blurs others; this gives
each column, or each column kind, its own."""

from difflm.columns import JsonPosition, TokenTexts
from difflm.datamodules.schema import KINDS
from difflm.errors import UserError


def with_target_named(by_column, target):
    """sample.column_temperature with its `target` entry given to data.target's column (whose own entry, if any,
    wins); without a data.target the entry has no column and is dropped, so a preset may set it for any table."""
    if "target" not in by_column:
        return by_column
    rest = {key: value for key, value in by_column.items() if key != "target"}
    return {target: by_column["target"], **rest} if target is not None else rest


def column_temperatures(schema, default, by_column):
    """The temperature of each column in schema order: its name's entry in `by_column`, else its kind's, else
    `default`; a UserError for a key that is neither a column nor a kind, or a value that is not a number >= 0.
    None without entries, or for code and tool records, which have no columns (so a preset may set them for any
    data)."""
    if not by_column or schema.record_type != "table":
        return None
    for key, value in by_column.items():
        if key not in schema.names and key not in KINDS:
            raise UserError(f"sample.column_temperature: '{key}' is neither a column ({', '.join(schema.names)}) "
                            f"nor a column kind ({', '.join(KINDS)})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise UserError(f"sample.column_temperature.{key} must be a number >= 0, got {value!r}")
    return [float(by_column.get(c.name, by_column.get(c.kind, default))) for c in schema.columns]


class ColumnTemperature:
    """Per-row temperatures for decoding table records: `start(rows, prompt_ids)`, then around each step `at(rows)`
    (the temperature of each row's next token: that of the column its text has reached) and `advance(rows, runs)`
    (the tokens each row read: the drawn one and the run the grammar forced)."""

    def __init__(self, temperatures, tokenizer):
        self.temperatures, self._text = temperatures, TokenTexts(tokenizer)

    def start(self, rows, prompt_ids):
        self.positions = [JsonPosition() for _ in range(rows)]
        prefix = self._text(prompt_ids)
        for position in self.positions:
            position.read(prefix)

    def at(self, rows):
        last = len(self.temperatures) - 1
        return [self.temperatures[min(self.positions[row].column, last)] for row in rows]

    def advance(self, rows, runs):
        for row, run in zip(rows, runs):
            self.positions[row].read(self._text(run))


def decoding_temperature(schema, tokenizer, temperature, column_temperature):
    """What generate_texts samples at: `temperature` alone, or with sample.column_temperature's entries for a table
    a ColumnTemperature that gives each of its columns its own."""
    temperatures = column_temperatures(schema, temperature, column_temperature)
    return temperature if temperatures is None else ColumnTemperature(temperatures, tokenizer)
