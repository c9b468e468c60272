"""Re-encrypt personal data under the primary PII key after a rotation (docs/operations.md).

Rotation: put the new key first in ``FEISHUI_PII_KEYS`` (``k2:<new>,k1:<old>``) and restart;
new data is sealed under k2 and old tokens still open under k1. Then run
``feishui db reencrypt-pii`` (or enqueue :func:`reencrypt_notices`) until it reports 0; only
then remove k1 from the ring.

Department webhook secrets, sealed with the same ring, are re-encrypted first (one pass).
Only tokens under another key than the primary are touched: the query selects them by their
``v1.<key id>.`` prefix, so a finished rotation costs one indexed-free scan that returns no rows
and a re-run changes nothing (idempotent). Each batch is its own transaction; rows are locked
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL) so two runs never rewrite the same row.
"""

from __future__ import annotations

import logging

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, lazyload, sessionmaker

from clearing.pii import TOKEN_VERSION, KeyRing

log = logging.getLogger(__name__)

#: The sealed payer columns of a notice, and the name each is sealed under (its aad).
NOTICE_COLUMNS = {
    "payer_name_enc": "payer_name",
    "payer_id_number_enc": "payer_id_number",
    "payer_phone_enc": "payer_phone",
}
DEFAULT_BATCH = 500


def reencrypt_notice_batch(
    session: Session, keyring: KeyRing, batch: int = DEFAULT_BATCH, after_id: int = 0
) -> tuple[int, int | None]:
    """Re-encrypt, under the primary key, the sealed payer fields of up to ``batch`` notices
    with id > ``after_id`` that have a token under another key. Returns how many notices
    changed and the last id looked at (None when there were none)."""
    from notices.models import Notice

    primary = keyring.primary.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%")
    current = f"{TOKEN_VERSION}.{primary}.%"
    stale = [
        and_(getattr(Notice, col).is_not(None), getattr(Notice, col).not_like(current, escape="\\"))
        for col in NOTICE_COLUMNS
    ]
    query = (
        select(Notice)
        .options(lazyload("*"))
        .where(Notice.id > after_id, or_(*stale))
        .order_by(Notice.id)
        .limit(batch)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=Notice)
    notices = list(session.scalars(query))
    for notice in notices:
        _reencrypt(notice, keyring)
    session.flush()
    return len(notices), (notices[-1].id if notices else None)


def _reencrypt(notice, keyring: KeyRing) -> None:  # type: ignore[no-untyped-def]
    for column, name in NOTICE_COLUMNS.items():
        token = getattr(notice, column)
        if token and keyring.needs_rotation(token):
            aad = f"notice:{notice.payment_code}:{name}".encode("ascii")
            setattr(notice, column, keyring.reencrypt(token, aad=aad))


def reencrypt_webhook_secrets(session: Session, keyring: KeyRing) -> int:
    """Re-encrypt, under the primary key, every department webhook secret sealed under another
    key (there is one per department: a single pass). Returns how many changed."""
    from notices.event_models import DepartmentWebhook

    query = select(DepartmentWebhook).options(lazyload("*")).order_by(DepartmentWebhook.id)
    changed = 0
    for hook in session.scalars(query):
        if keyring.needs_rotation(hook.secret_enc):
            aad = f"department_webhook:{hook.department_id}:secret".encode("ascii")
            hook.secret_enc = keyring.reencrypt(hook.secret_enc, aad=aad)
            changed += 1
    session.flush()
    return changed


def reencrypt_all(
    sessions: sessionmaker[Session], keyring: KeyRing, batch: int = DEFAULT_BATCH
) -> int:
    """Re-encrypt every department webhook secret, then every notice with a stale token, one
    transaction per batch. Returns the number of notices changed."""
    from clearing.db import transaction

    with transaction(sessions) as session:
        hooks = reencrypt_webhook_secrets(session, keyring)
    if hooks:
        log.info("re-encrypted %d webhook secrets", hooks)
    total, after = 0, 0
    while True:
        with transaction(sessions) as session:
            changed, last = reencrypt_notice_batch(session, keyring, batch, after)
        if last is None:
            return total
        total, after = total + changed, last
        log.info("re-encrypted %d notices so far (up to id %d)", total, after)


def reencrypt_notices(batch: int = DEFAULT_BATCH) -> int:
    """The job: re-encrypt every notice's payer fields still under a non-primary key, with the
    process's settings. Idempotent; returns how many notices changed."""
    from clearing.runtime import get_runtime

    runtime = get_runtime()
    keyring = KeyRing.from_setting(runtime.settings.secret("pii_keys"))
    total = reencrypt_all(runtime.sessions, keyring, batch)
    log.info("PII rotation done: %d notices re-encrypted under %s", total, keyring.primary)
    return total
