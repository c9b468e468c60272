"""Finance reports: builders (``builders.py``) make a format-free :class:`~.model.Report` from
the database; one module per format renders any report (``csv_format``, ``xlsx_format``,
``pdf_format``). :func:`render` picks the format."""

from __future__ import annotations

from reconciliation.reports.model import Report

MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pdf": "application/pdf",
}


def render(report: Report, fmt: str) -> bytes:
    """The report as ``csv``, ``xlsx`` or ``pdf`` bytes."""
    if fmt == "csv":
        from reconciliation.reports.csv_format import render_csv

        return render_csv(report)
    if fmt == "xlsx":
        from reconciliation.reports.xlsx_format import render_xlsx

        return render_xlsx(report)
    if fmt == "pdf":
        from reconciliation.reports.pdf_format import render_pdf

        return render_pdf(report)
    raise ValueError(f"unknown report format {fmt!r}")
