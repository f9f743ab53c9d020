"""Whole columns of a `datasets.Dataset` as Python lists, read in one go.

Since datasets 4, `dataset["name"]` is a lazy `Column` whose iteration formats one row at a time
(~60 µs a row: seconds per task split); slicing the dataset reads the Arrow columns at once
(<1 ms for thousands of rows) and still honours an indices mapping left by `select`/`shuffle`.
"""

from __future__ import annotations

from datasets import Dataset


def column(data: Dataset, name: str) -> list:
    """Every value of column `name`, in row order."""
    return data.select_columns([name])[:][name]
