"""Bounded types of the routes' parameters and bodies: odd input is refused with a 422 before it reaches SQLite.

SQLite integers are signed 64-bit: a larger id would raise OverflowError deep in a query (a 500), so ids are
bounded here. Text must be valid Unicode (a lone surrogate such as ``"\\ud800"`` cannot be stored as UTF-8).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query
from pydantic import AfterValidator, Field

MAX_ID = 2**63 - 1  # the largest SQLite INTEGER
MAX_ZOOM = 30
MAX_TILE_INDEX = 2**MAX_ZOOM - 1


def valid_text(value: str) -> str:
    """The string when it can be stored as UTF-8, else ValueError (a lone surrogate)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"text holds an invalid character at position {exc.start} (a lone surrogate)") from None
    return value


Text = Annotated[str, AfterValidator(valid_text)]

IdPath = Annotated[int, Path(ge=0, le=MAX_ID)]
ZoomPath = Annotated[int, Path(ge=0, le=MAX_ZOOM)]
TileIndexPath = Annotated[int, Path(ge=0, le=MAX_TILE_INDEX)]
IdField = Annotated[int, Field(ge=0, le=MAX_ID)]


def id_query(description: str) -> object:
    """An optional id in the query string (0 .. 2^63-1)."""
    return Query(None, ge=0, le=MAX_ID, description=description)
