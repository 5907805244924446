"""Numbers as the book writes them: tolerances as 1e-7 (never 1e-07, 0.0 or 1.000000e-07), learning rates as 3e-4
or 0.01, and tables without NaN cells."""

from __future__ import annotations

import math

import pandas as pd

#: Columns of a table that hold solver tolerances.
TOLERANCE_COLUMNS = ("tol", "rtol", "atol")
#: What a table shows where a value does not apply or was not measured.
MISSING = "–"


def format_number(value: float, scientific_below: float = 0.01) -> str:
    """A tolerance or learning rate as a reader writes it: 1e-7, 3e-4, 0.01, 0.25 (never 1e-07, 0.0001 or 0.0);
    values under `scientific_below` in scientific notation."""
    if value != 0 and abs(value) < scientific_below:
        mantissa, exponent = f"{value:.6e}".split("e")
        return f"{float(mantissa):g}e{int(exponent)}"
    return f"{value:g}"


def format_tolerance(value: float) -> str:
    """A solver tolerance: 1e-1 ... 1e-7, as the suites name them."""
    return format_number(value, scientific_below=1.0)


def _tolerance_cell(value: object) -> object:
    """A tolerance cell: numbers as 1e-5, missing values as '–', text ('–', 'adaptive') unchanged."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return MISSING if value is None else value
    return MISSING if math.isnan(value) else format_tolerance(value)


def readable_table(frame: pd.DataFrame, columns: list[str] | None = None) -> pd.DataFrame:
    """`frame` (or its `columns`) for a page: tolerances written as 1e-5, and '–' where a value is missing."""
    table = frame[columns].copy() if columns is not None else frame.copy()
    for column in table.columns:
        if column in TOLERANCE_COLUMNS:
            table[column] = [_tolerance_cell(value) for value in table[column]]
        elif table[column].isna().any():
            values = table[column]
            if pd.api.types.is_float_dtype(values) and (values.dropna() % 1 == 0).all():  # counts NaN made floats
                values = values.astype("Int64")
            table[column] = values.astype(object).where(values.notna(), MISSING)
    return table
