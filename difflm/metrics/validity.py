"""Validity: how many generated texts parse into records that the schema accepts, and why the rest do not."""

from collections import Counter

from difflm.datamodules.schema import InvalidRecord


def parse_valid(schema, texts):
    """(the records of the valid texts, in order; Counter of the failure kinds of the others)."""
    records, failures = [], Counter()
    for text in texts:
        try:
            records.append(schema.parse(text))
        except InvalidRecord as error:
            failures[error.kind] += 1
    return records, failures


def validity(schema, texts):
    """{"rate": share of texts that parse into valid records, "failures": {reason: count}}."""
    records, failures = parse_valid(schema, texts)
    return {"rate": len(records) / len(texts) if texts else None, "failures": dict(failures)}
