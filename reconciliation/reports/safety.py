"""Spreadsheet formula injection: a text cell that starts with ``= + - @``, a tab or a carriage
return is run as a formula by Excel and LibreOffice (``=HYPERLINK(...)``, ``@SUM(...)``). Such
text gets a leading single quote. Amounts are never passed through here: they are written as
plain numbers, so a negative amount stays ``-12.30``."""

from __future__ import annotations

DANGEROUS = ("=", "+", "-", "@", "\t", "\r")


def safe_text(value: str) -> str:
    """``value`` made inert for spreadsheets (see the module docstring)."""
    return "'" + value if value.startswith(DANGEROUS) else value
