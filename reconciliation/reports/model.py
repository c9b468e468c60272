"""A report independent of its format: a title, facts about it, and tables of typed cells.

A cell is text (``str``, escaped against formula injection by every writer), a count (``int``),
an :class:`Amount` (integer fen, rendered as yuan: a number in CSV and XLSX, never a float) or
``None`` (empty).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from clearing.money import format_fen


@dataclass(frozen=True, slots=True)
class Amount:
    fen: int

    def __post_init__(self) -> None:
        if isinstance(self.fen, bool) or not isinstance(self.fen, int):
            raise TypeError("Amount takes integer fen")

    @property
    def yuan(self) -> Decimal:
        """Exact yuan (``Decimal(fen) / 100`` is exact: two decimal places)."""
        return Decimal(self.fen) / 100

    def __str__(self) -> str:
        return format_fen(self.fen)


Cell = str | int | Amount | None


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    total: list[Cell] | None = None
    widths: list[int] | None = None
    """Relative column widths (characters); guessed from the content when None."""


@dataclass
class Report:
    title: str
    filename: str
    """Stem of the download's file name, ASCII (e.g. ``collections-2026-11-27``)."""
    facts: list[tuple[str, str]] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
