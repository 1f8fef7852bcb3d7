"""Validity: how many generated texts parse into records that the schema accepts, and why the rest do not."""

from collections import Counter

from difflm.datamodules.schema import InvalidRecord


def validity(schema, texts):
    """{"rate": share of texts that parse into valid records, "failures": {reason: count}}."""
    failures = Counter()
    for text in texts:
        try:
            schema.parse(text)
        except InvalidRecord as error:
            failures[error.kind] += 1
    return {"rate": 1 - sum(failures.values()) / len(texts) if texts else None, "failures": dict(failures)}
