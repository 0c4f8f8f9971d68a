"""Operators: ``operators.base`` (the batch lifecycle driver) and ``operators.batch`` (generic batches)."""
