"""A DataFrame that shows its cells whole: storageUris and revision names are the point of a
release table, and pandas' default display cuts any cell past 50 characters with ``...``."""

from __future__ import annotations

from typing import Any

import pandas as pd


class Table(pd.DataFrame):  # type: ignore[misc]  # pandas ships no type information
    """A ``pandas.DataFrame`` whose repr and HTML never truncate a cell.

    Everything else is a DataFrame's (frames derived from it, e.g. ``.tail(4)[cols]``, are Tables
    too), so code that reads it as a frame keeps working.
    """

    @property
    def _constructor(self) -> Any:
        return Table

    def _repr_html_(self) -> str | None:
        with pd.option_context("display.max_colwidth", None):
            html: str | None = super()._repr_html_()
            return html

    def __repr__(self) -> str:
        with pd.option_context("display.max_colwidth", None):
            text: str = super().__repr__()
            return text
