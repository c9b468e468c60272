"""SQL of reconciliation: our records for a day, the staging of bill lines, bulk item writes.

PostgreSQL streams: bill lines are COPYed into a TEMP table as they are parsed, then classified
straight into ``reconciliation_items`` by one set-based statement (:func:`classify_staged`), or,
with ``service.SET_BASED = False``, read back sorted by match key (``COLLATE "C"`` = Python
``str`` order) through a server-side cursor and written with COPY. SQLite (development) does the
latter with lists and ``executemany``.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Iterator
from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy import Connection, bindparam, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from reconciliation.lines import LineKind, LineRow, StatementLine, line_row
from reconciliation.matching import OurRecord, Outcome

ITEM_COLUMNS = (
    "run_id",
    "line_no",
    "outcome",
    "kind",
    "order_id",
    "external_id",
    "amount",
    "expected_amount",
    "fee",
    "expected_fee",
    "detail",
    "journal_entry_id",
    "exception_state",
)
STAGE_COLUMNS = (
    "key",
    "line_no",
    "external_id",
    "order_id",
    "amount",
    "fee",
    "booked_on",
    "kind",
    "refund_id",
)
log = logging.getLogger(__name__)
BATCH = 5_000
WORK_MEM = "256MB"
"""Server memory per sort/hash of the classification statement (default 4MB spills a
1,000,000-line sort to disk); server side, not in the worker's RSS."""

_RECORDS = """
WITH refunds_all AS (
    SELECT r.refund_id, r.amount, r.attempt_id, r.journal_entry_id, r.gateway_refund_id,
           COALESCE(SUM(r.amount) OVER (PARTITION BY r.attempt_id ORDER BY r.created_at, r.id
                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before
    FROM refunds r
    JOIN payment_attempts pa ON pa.id = r.attempt_id
    WHERE r.state = 'succeeded' AND pa.gateway = :gw
)
SELECT ('P:' || a.order_id) COLLATE "C" AS key, 'payment' AS kind, a.order_id AS ref, a.order_id,
       a.amount AS amount, je.business_date, a.gateway_txn_id, a.amount AS order_amount,
       0 AS before
FROM payment_attempts a JOIN journal_entries je ON je.id = a.journal_entry_id
WHERE a.gateway = :gw AND a.state IN ('succeeded', 'duplicate')
  AND je.business_date BETWEEN :d0 AND :d2
UNION ALL
SELECT ('R:' || r.refund_id) COLLATE "C", 'refund', r.refund_id, a.order_id, -r.amount,
       je.business_date, r.gateway_refund_id, a.amount, r.before
FROM refunds_all r JOIN payment_attempts a ON a.id = r.attempt_id
JOIN journal_entries je ON je.id = r.journal_entry_id
WHERE je.business_date BETWEEN :d0 AND :d2
"""


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _params(gateway: str, day: date) -> dict[str, object]:
    return {"gw": gateway, "d0": day - timedelta(1), "d2": day + timedelta(1)}


def records(session: Session, gateway: str, day: date) -> Iterator[OurRecord]:
    """Captured payments and succeeded refunds of ``gateway`` booked on ``day`` +-1 day, in key
    order on PostgreSQL (streamed), unordered on SQLite."""
    sql = (
        f'SELECT * FROM ({_RECORDS}) u ORDER BY key COLLATE "C"'
        if is_postgres(session)
        else _RECORDS
    )
    result = session.execute(text(sql).execution_options(yield_per=10_000), _params(gateway, day))
    for row in result:
        bd = row[5] if isinstance(row[5], date) else date.fromisoformat(str(row[5]))
        yield OurRecord(row[1], row[2], row[3], int(row[4]), bd, row[6], int(row[7]), int(row[8]))


def captured_order_ids(session: Session, gateway: str, order_ids: Iterable[str]) -> set[str]:
    """Which of ``order_ids`` already have money captured (any day)."""
    wanted = list(order_ids)
    found: set[str] = set()
    for i in range(0, len(wanted), 1_000):
        chunk = wanted[i : i + 1_000]
        rows = session.execute(
            text(
                "SELECT order_id FROM payment_attempts WHERE gateway = :gw AND "
                "state IN ('succeeded', 'duplicate') AND order_id IN :ids"
            ).bindparams(bindparam("ids", expanding=True)),
            {"gw": gateway, "ids": chunk},
        )
        found.update(r[0] for r in rows)
    return found


# staging (PostgreSQL) -----------------------------------------------------------------------


TEMP_BUFFERS = "256MB"
"""Buffers for the session's temporary tables (server default 8MB): the staged lines of a
1,000,000-line bill (about 130MB) stay in memory across the COPY, ANALYZE, the checks and the
classification instead of going through the kernel on every pass. Allocated as used, freed
when the connection closes."""


def size_temp_buffers(conn: Connection) -> None:
    """Set ``temp_buffers`` on a connection that has not used a temporary table yet. PostgreSQL
    refuses the change once one has been used in the session: then the default stays (slower,
    same result)."""
    try:
        with conn.begin():
            conn.execute(text(f"SET temp_buffers = '{TEMP_BUFFERS}'"))
    except DBAPIError as exc:
        log.info("temp_buffers left at the server default: %s", exc.orig)


def create_stage(session: Session) -> None:
    session.execute(
        text(
            'CREATE TEMP TABLE IF NOT EXISTS recon_stage (key text COLLATE "C" NOT NULL, '
            "line_no integer, external_id text, order_id text, amount bigint, fee bigint, "
            "booked_on date, kind text, refund_id text)"
        )
    )
    session.execute(text("TRUNCATE recon_stage"))


COPY_ROWS = 10_000
"""Rows per ``COPY`` write: one call per chunk, not per row."""
_NULL = "\\N"


def copy_rows(session: Session, rows: Iterable[LineRow]) -> int:
    """COPY :data:`~reconciliation.lines.LineRow` tuples into ``recon_stage`` as they stream
    (COPY text formatted here, written in chunks); returns the number of rows."""
    cursor = session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
    days: dict[date, str] = {}
    out: list[str] = []
    count = 0
    with cursor.copy(f"COPY recon_stage ({', '.join(STAGE_COLUMNS)}) FROM STDIN") as copy:
        for _, no, ext, order, amount, fee, _, booked, _, kind, _, _, refund, _ in rows:
            key = "R:" + (refund or ext) if kind == LineKind.REFUND else "P:" + (order or ext)
            day = days.get(booked)
            if day is None:
                day = days[booked] = booked.isoformat()
            values = (key, no, ext, order, amount, fee, day, kind, refund)
            raw = key + ext + (order or "") + (refund or "")
            if "\t" in raw or "\\" in raw or "\n" in raw or "\r" in raw:
                out.append(_stage_text(values))
            else:  # nothing to escape: the usual case
                out.append(
                    f"{key}\t{no}\t{ext}\t{_NULL if order is None else order}\t{amount}\t"
                    f"{fee}\t{day}\t{kind}\t{_NULL if refund is None else refund}\n"
                )
            if len(out) >= COPY_ROWS:
                copy.write("".join(out))
                count += len(out)
                out.clear()
        copy.write("".join(out))
    return count + len(out)


def _stage_text(values: tuple[object, ...]) -> str:
    return "\t".join(map(_copy_text, values)) + "\n"


def copy_lines(session: Session, lines: Iterable[StatementLine]) -> Iterator[StatementLine]:
    """COPY ``lines`` into ``recon_stage``, then pass each one through (small inputs, tests: the
    service streams :func:`copy_rows`)."""
    kept = list(lines)
    copy_rows(session, map(line_row, kept))
    yield from kept


def staged_totals(session: Session) -> tuple[int, int, int]:
    """(payments, refunds as a positive number, fees) of the staged lines: the bill summary."""
    row = session.execute(
        text(
            "SELECT coalesce(sum(amount) FILTER (WHERE kind = 'payment'), 0), "
            "coalesce(-sum(amount) FILTER (WHERE kind = 'refund'), 0), "
            "coalesce(sum(fee), 0) FROM recon_stage"
        )
    ).one()
    return int(row[0]), int(row[1]), int(row[2])


def staged_missing_orders(session: Session, gateway: str, day: date) -> list[str]:
    """Order ids of payment lines booked on ``day`` that have no captured attempt."""
    session.execute(text(f"SET LOCAL work_mem = '{WORK_MEM}'"))
    rows = session.execute(
        text(
            "SELECT DISTINCT s.order_id FROM recon_stage s WHERE s.kind = 'payment' AND "
            "s.booked_on = :day AND s.order_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM "
            "payment_attempts a WHERE a.order_id = s.order_id AND a.gateway = :gw AND "
            "a.state IN ('succeeded', 'duplicate')) ORDER BY 1"
        ),
        {"day": day, "gw": gateway},
    )
    return [r[0] for r in rows]


def staged_lines(session: Session, source: str) -> Iterator[StatementLine]:
    """The staged lines in key order (then line number), streamed."""
    result = session.execute(
        text(
            f'SELECT {", ".join(STAGE_COLUMNS)} FROM recon_stage ORDER BY key COLLATE "C", line_no'
        ).execution_options(yield_per=10_000)
    )
    for key, line_no, ext, order_id, amount, fee, booked_on, kind, refund_id in result:
        del key
        yield StatementLine(
            source,
            line_no,
            ext,
            order_id,
            amount,
            fee,
            "CNY",
            booked_on,
            None,
            LineKind(kind),
            "",
            refund_id=refund_id,
        )


def drop_stage(session: Session) -> None:
    session.execute(text("DROP TABLE IF EXISTS recon_stage"))


# items --------------------------------------------------------------------------------------


def item_row(run_id: int, o: Outcome, journal_entry_id: int | None) -> tuple:  # type: ignore[type-arg]
    return (
        run_id,
        o.line_no,
        o.outcome,
        o.kind,
        o.order_id,
        o.external_id,
        o.amount,
        o.expected_amount,
        o.fee,
        o.expected_fee,
        o.detail[:500],
        journal_entry_id,
        "open" if o.is_exception else None,
    )


def _copy_text(value: object) -> str:
    if value is None:
        return "\\N"
    return (
        str(value)
        .replace("\\", "\\\\")
        .replace("\t", "\\t")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
    )


class ItemWriter:
    """Writes item rows in bulk. PostgreSQL: rows are spooled (memory, then a temp file) in COPY
    text format while the two sorted streams are still being read on the connection, then COPYed
    in one go at the end (a connection cannot FETCH while in COPY). SQLite: executemany."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.pg = is_postgres(session)
        self.batch: list[tuple] = []  # type: ignore[type-arg]
        self.spool = tempfile.SpooledTemporaryFile(max_size=32 << 20, mode="w+b")  # noqa: SIM115
        self.count = 0

    def write(self, row: tuple) -> None:  # type: ignore[type-arg]
        self.count += 1
        if self.pg:
            self.spool.write(("\t".join(map(_copy_text, row)) + "\n").encode())
            return
        self.batch.append(row)
        if len(self.batch) >= BATCH:
            self._flush_batch()

    def _flush_batch(self) -> None:
        if self.batch:
            cols = ", ".join(ITEM_COLUMNS)
            marks = ", ".join(f":{c}" for c in ITEM_COLUMNS)
            self.session.execute(
                text(f"INSERT INTO reconciliation_items ({cols}) VALUES ({marks})"),
                [dict(zip(ITEM_COLUMNS, r, strict=True)) for r in self.batch],
            )
            self.batch.clear()

    def close(self) -> None:
        """Write what is left (call once, after the input streams are exhausted)."""
        if not self.pg:
            self._flush_batch()
            return
        self.spool.seek(0)
        cursor = self.session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(
            f"COPY reconciliation_items ({', '.join(ITEM_COLUMNS)}) FROM STDIN"
        ) as copy:
            while chunk := self.spool.read(1 << 20):
                copy.write(chunk)
        self.spool.close()


# set-based classification (PostgreSQL) -------------------------------------------------------

_CLASSIFY = """
WITH ins AS (
INSERT INTO reconciliation_items (run_id, line_no, outcome, kind, order_id, external_id, amount,
                                  expected_amount, fee, expected_fee, detail, journal_entry_id,
                                  exception_state)
WITH recs AS ({records}),
recs_fee AS (
    SELECT recs.*, CAST(CASE WHEN kind = 'payment' THEN
            (2 * amount * CAST(:num AS bigint) + CAST(:den AS bigint))
            / (2 * CAST(:den AS bigint))
        ELSE -(round(round(order_amount * CAST(:rate AS numeric)) * (before - amount)
                     / order_amount)
               - round(round(order_amount * CAST(:rate AS numeric)) * before / order_amount))
        END AS bigint) AS efee
    FROM recs),
lines AS (
    SELECT s.*, row_number() OVER w AS rn, first_value(s.line_no) OVER w AS first_line
    FROM recon_stage s WINDOW w AS (PARTITION BY s.key ORDER BY s.line_no)),
cls AS (
    SELECT l.line_no,
           CASE WHEN l.key IS NULL THEN r.kind ELSE l.kind END AS kind,
           CASE WHEN l.key IS NULL THEN r.order_id ELSE l.order_id END AS order_id,
           CASE WHEN l.key IS NULL THEN r.gateway_txn_id ELSE l.external_id END AS external_id,
           CASE WHEN l.key IS NULL THEN r.amount ELSE l.amount END AS amount,
           CASE WHEN l.key IS NULL THEN 0 ELSE l.fee END AS fee,
           r.amount AS eamt,
           CASE WHEN l.key IS NULL THEN NULL ELSE r.efee END AS efee,
           CASE WHEN l.key IS NULL THEN 'missing_external'
                WHEN l.rn > 1 THEN 'duplicate'
                WHEN l.booked_on <> :day THEN 'cutoff'
                WHEN r.key IS NULL THEN 'missing_internal'
                WHEN r.business_date <> :day THEN 'cutoff'
                WHEN l.amount <> r.amount THEN 'amount_mismatch'
                WHEN l.fee <> r.efee THEN 'fee_mismatch'
                ELSE 'matched' END AS outcome,
           CASE WHEN l.key IS NULL THEN 'captured by us; not in the bill'
                WHEN l.rn > 1
                     THEN 'repeats line ' || l.first_line || ' (' || substr(l.key, 3) || ')'
                WHEN l.booked_on <> :day
                     THEN 'booked on ' || to_char(l.booked_on, 'YYYY-MM-DD') || ', not '
                          || :daystr
                WHEN r.key IS NULL THEN 'paid at the gateway; no capture'
                WHEN r.business_date <> :day
                     THEN 'we booked it on ' || to_char(r.business_date, 'YYYY-MM-DD')
                WHEN l.amount <> r.amount
                     THEN 'bill ' || l.amount || ' fen, ours ' || r.amount || ' fen'
                WHEN l.fee <> r.efee
                     THEN 'fee ' || l.fee || ' fen, expected ' || r.efee || ' fen at rate '
                          || :ratestr
                ELSE '' END AS detail
    FROM lines l FULL JOIN recs_fee r ON r.key = l.key
    WHERE l.key IS NOT NULL OR r.business_date = :day),
{answered}
SELECT :run, line_no, outcome, kind, order_id, external_id, amount, eamt, fee, efee, detail,
       entry, CASE WHEN outcome = 'matched' THEN NULL ELSE 'open' END
FROM answered
RETURNING outcome, line_no, amount, fee)
SELECT outcome, count(*), count(line_no), coalesce(sum(amount), 0), coalesce(sum(fee), 0)
FROM ins GROUP BY outcome ORDER BY outcome
"""
_UNANSWERED = "answered AS (SELECT cls.*, CAST(NULL AS bigint) AS entry FROM cls)"
_ANSWERED = """answered AS (
    SELECT c.line_no, c.kind, c.order_id, c.external_id, c.amount, c.fee, c.eamt, c.efee,
           CASE WHEN a.order_id IS NULL THEN c.outcome ELSE 'missing_internal' END AS outcome,
           CASE WHEN a.order_id IS NULL THEN c.detail ELSE a.detail END AS detail,
           a.entry
    FROM cls c LEFT JOIN recon_answers a
      ON a.order_id = c.order_id AND c.kind = 'payment' AND c.line_no IS NOT NULL
     AND c.outcome IN ('matched', 'missing_internal'))"""
"""Lines missing on our side get what the gateway query said; those captured by this run
(after the query) become ``missing_internal`` with the capture's detail and journal entry."""


def classify_staged(
    session: Session,
    run_id: int,
    gateway: str,
    day: date,
    rate: object,
    captures: dict[str, tuple[str, int | None]] | None = None,
) -> list[tuple[str, int, int, int, int]]:
    """The rules of :func:`reconciliation.matching.classify`, set-based, from ``recon_stage``
    straight into ``reconciliation_items`` (tests check that both agree), with the gateway's
    answers for the lines missing on our side (``captures``: order id -> (detail, journal entry
    id)) applied in the same statement. Returns (outcome, items, lines, sum of amounts, sum of
    fees) per outcome, from the rows inserted (no second pass over the items).

    Nested loops are switched off for this statement: the planner underestimates the day's
    records (a join through one capture entry per day looks like one row) and would otherwise
    pick a nested-loop anti-join, quadratic in the file size."""
    num, den = Decimal(str(rate)).as_integer_ratio()
    if captures:
        _stage_answers(session, captures)
    session.execute(text("SET LOCAL enable_nestloop = off"))
    session.execute(text(f"SET LOCAL work_mem = '{WORK_MEM}'"))
    rows = session.execute(
        text(_CLASSIFY.format(records=_RECORDS, answered=_ANSWERED if captures else _UNANSWERED)),
        {
            **_params(gateway, day),
            "day": day,
            "daystr": day.isoformat(),
            "rate": str(rate),
            "ratestr": str(rate),
            "run": run_id,
            "num": num,
            "den": den,
        },
    ).all()
    session.execute(text("SET LOCAL enable_nestloop = on"))
    session.execute(text("SET LOCAL work_mem = DEFAULT"))
    return [(r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows]


def _stage_answers(session: Session, captures: dict[str, tuple[str, int | None]]) -> None:
    session.execute(
        text(
            "CREATE TEMP TABLE IF NOT EXISTS recon_answers (order_id text PRIMARY KEY, "
            "detail text, entry bigint) ON COMMIT DROP"
        )
    )
    cursor = session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy("COPY recon_answers (order_id, detail, entry) FROM STDIN") as copy:
        for order_id, (detail, entry) in captures.items():
            copy.write_row((order_id, detail[:500], entry))
    session.execute(text("ANALYZE recon_answers"))
