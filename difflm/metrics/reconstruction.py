"""Reconstruction: how much of a record comes back when it is encoded and decoded again."""

from difflm.datamodules.schema import InvalidRecord


def _same(decoded, expected):
    return decoded == expected and isinstance(decoded, bool) == isinstance(expected, bool)  # True is not 1


def field_accuracy(schema, originals, texts):
    """{"field_accuracy": share of (record, column) pairs whose decoded value equals the original's,
    "row_accuracy": share of records decoded entirely right}. A text that is not JSON of the schema's shape
    (keys, or number of values) counts every field of its record as wrong; values are compared as the record's own JSON text has them."""
    fields = rows = 0
    for record, text in zip(originals, texts, strict=True):
        expected = schema.fields(schema.to_text(record))
        try:
            decoded = schema.fields(text)
        except InvalidRecord:
            decoded = {}
        right = sum(name in decoded and _same(decoded[name], value) for name, value in expected.items())
        fields += right
        rows += right == len(expected)
    n = len(originals)
    return {"field_accuracy": fields / (n * len(schema.names)) if n else None,
            "row_accuracy": rows / n if n else None}
