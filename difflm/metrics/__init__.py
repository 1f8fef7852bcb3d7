"""Pure metric functions over (schema, real table, synthetic table); used by callbacks and sample.py."""
