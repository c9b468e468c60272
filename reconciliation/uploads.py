"""Settlement files uploaded by finance officers: store the bytes, then reconcile in the
background on the ``reconciliation`` queue (in-process at once when there is no Redis). The job
is ``reconciliation.tasks.reconcile_file_job`` once that lands, else :func:`reconcile_upload`
here (same arguments), which calls ``reconciliation.service`` lazily.

The same bytes uploaded again (for the same source and date, when given) name the run that
already exists and enqueue nothing. The job takes the file's SHA-256 (the content-addressed
store, :mod:`reconciliation.filestore`), never the bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from clearing.config import Settings
from clearing.db import transaction
from clearing.errors import FeishuiError, ValidationError
from clearing.jobs import enqueue
from reconciliation import filestore
from reconciliation.models import ReconciliationRun

MAX_BYTES = 200 * 1024 * 1024


@dataclass(frozen=True)
class Submitted:
    file_sha256: str
    run_id: int | None
    """The run, when it exists already (a re-upload, or the job ran inline)."""
    existing: bool
    job_id: str | None = None
    error: str | None = None
    """Why the run failed, when it ran in-process and failed (the run records it too)."""


def find_run(
    session: Session, sha: str, source: str | None = None, business_date: date | None = None
) -> ReconciliationRun | None:
    """The newest finished run (succeeded or superseded) of these bytes, narrowed by source and
    date when given. A failed or abandoned (``running``) run is not reused: the job re-runs it."""
    query = (
        select(ReconciliationRun)
        .where(
            ReconciliationRun.file_sha256 == sha,
            ReconciliationRun.state.in_(("succeeded", "superseded")),
        )
        .order_by(ReconciliationRun.id.desc())
        .limit(1)
    )
    if source:
        query = query.where(ReconciliationRun.source == source)
    if business_date:
        query = query.where(ReconciliationRun.business_date == business_date)
    return session.scalar(query)


def submit(
    settings: Settings,
    sessions: sessionmaker[Session],
    *,
    data: bytes,
    filename: str,
    started_by: str,
    source: str | None = None,
    business_date: date | None = None,
) -> Submitted:
    """Store ``data`` and reconcile it once (see the module docstring)."""
    if not data:
        raise ValidationError("the file is empty", field="file")
    if len(data) > MAX_BYTES:
        raise ValidationError(f"the file is larger than {MAX_BYTES // 2**20} MiB", field="file")
    sha = filestore.store(settings, data)
    with transaction(sessions) as session:
        run = find_run(session, sha, source, business_date)
        if run is not None:
            return Submitted(sha, run.id, True)
    try:
        job_id = enqueue(
            _job(),
            sha,
            filename,
            started_by,
            source,
            business_date.isoformat() if business_date else None,
            queue="reconciliation",
        )
    except FeishuiError as exc:  # in-process, and the file was broken: the run says so
        run_id = getattr(exc, "run_id", None)
        if run_id is None:  # not even a run (an unknown format): the upload itself is wrong
            raise
        return Submitted(sha, run_id, False, None, exc.detail)
    with transaction(sessions) as session:
        run = _latest_run(session, sha)
    return Submitted(sha, run.id if run else None, False, job_id)


def _latest_run(session: Session, sha: str) -> ReconciliationRun | None:
    return session.scalar(
        select(ReconciliationRun)
        .where(ReconciliationRun.file_sha256 == sha)
        .order_by(ReconciliationRun.id.desc())
        .limit(1)
    )


def _job():  # type: ignore[no-untyped-def]
    """``reconciliation.tasks.reconcile_file_job`` when it exists, else :func:`reconcile_upload`
    (the same arguments). Imported lazily: the job module pulls in the whole service."""
    from reconciliation import tasks

    return getattr(tasks, "reconcile_file_job", reconcile_upload)


def reconcile_upload(
    sha: str, filename: str, started_by: str, source: str | None, business_date_iso: str | None
) -> int:
    """The job: reconcile a stored file by its SHA-256; returns the run id.

    A bank statement (OFX, camt.053) is reconciled for the fiscal account ``source`` when that
    names one (``fiscal_bank:<account>``), else the default account; a gateway bill for
    ``source`` (default: its format) and ``business_date`` (default: from the file).
    """
    from clearing.payments.wiring import get_payment_context
    from clearing.runtime import get_runtime
    from reconciliation import service
    from reconciliation.parsers import detect_format

    runtime = get_runtime()
    data = filestore.open_file(runtime.settings, sha)
    if detect_format(data, filename) in service.STATEMENT_FORMATS:
        account = source if (source or "").startswith("fiscal_bank:") else service.DEFAULT_ACCOUNT
        return service.reconcile_statement(
            runtime.sessions, data=data, filename=filename, started_by=started_by, account=account
        )
    day = date.fromisoformat(business_date_iso) if business_date_iso else None
    return service.reconcile_bill(
        runtime.sessions,
        get_payment_context(),
        data=data,
        filename=filename,
        started_by=started_by,
        source=source,
        business_date=day,
    )
