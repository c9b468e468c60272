"""Properties of the ledger under random sequences of balanced entries (hypothesis, SQLite).

For any sequence of balanced entries over accounts of the chart, with random amounts split
between random accounts, plus reversals of some of them:

- every account's debits, credits and balance equal the sums computed independently here;
- so do the balances as of any business date;
- the trial balance nets to zero;
- posting the same entries again under the same idempotency keys changes nothing;
- sealing appends every entry to the chain and verification passes;
- the beancount export of it loads without errors and agrees to the fen.

Also the export's account-name mapping is injective (it has an exact inverse) and always valid
beancount, and its string quoting survives beancount's parser.
"""

from __future__ import annotations

import io
import shutil
import tempfile
from collections import defaultdict
from datetime import date, timedelta
from itertools import pairwise
from pathlib import Path

from beancount import loader
from beancount.core import account as bc_account
from beancount.core import data
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from clearing.db import make_engine, make_sessionmaker, transaction
from clearing.errors import Conflict
from clearing.ledger import chart
from clearing.ledger.core import AccountType, Direction, Entry, Posting
from clearing.ledger.export import account_code, account_name, export_beancount, quote
from clearing.ledger.models import JournalEntry
from clearing.ledger.repository import clear_account_cache
from clearing.ledger.service import LedgerService
from clearing.split import split_amount

QUALIFIERS = {
    "fiscal_bank": ["icbc-5101", "boc-5100"],
    "gateway_clearing": ["alipay", "wechatpay", "unionpay"],
    "treasury_payable": ["510100-city", "510000-province", "510104-jinjiang", "成都"],
    "gateway_fees": ["alipay", "wechatpay"],
    "equity": ["opening"],
}
# bare kinds too: ``fiscal_bank`` is the beancount parent of ``fiscal_bank:icbc-5101``
ACCOUNTS = sorted(f"{kind}:{q}" for kind, qs in QUALIFIERS.items() for q in qs) + sorted(
    chart.KINDS
)
START = date(2026, 11, 1)
SETTINGS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@st.composite
def shares(draw, n: int) -> list[int]:
    """``n`` basis-point shares, each >= 1, summing to 10000."""
    cuts = sorted(draw(st.sets(st.integers(1, 9_999), min_size=n - 1, max_size=n - 1)))
    bounds = [0, *cuts, 10_000]
    return [b - a for a, b in pairwise(bounds)]


@st.composite
def entry_specs(draw) -> tuple[int, list[tuple[str, str, int]]]:
    """(day offset, [(account, direction, fen)]): one balanced entry's legs."""
    total = draw(st.one_of(st.integers(1, 500), st.integers(1, 10**9)))
    legs = []
    for direction in ("D", "C"):
        accounts = draw(st.lists(st.sampled_from(ACCOUNTS), min_size=1, max_size=3))
        bp = draw(shares(len(accounts)))
        parts = split_amount(total, {f"{i}": b for i, b in enumerate(bp)})
        legs += [(accounts[int(i)], direction, fen) for i, fen in parts.items() if fen]
    return draw(st.integers(0, 5)), legs


def make_entries(specs) -> list[Entry]:
    return [
        Entry(
            f"e-{i}",
            START + timedelta(days=day),
            f"random entry {i} “随机”",
            tuple(Posting(a, Direction(d), fen) for a, d, fen in legs),
            metadata={"i": i},
            ref_type="test",
            ref_id=str(i),
        )
        for i, (day, legs) in enumerate(specs)
    ]


class Fresh:
    """A migrated SQLite database of its own for one hypothesis example."""

    def __init__(self, template: Path) -> None:
        self.dir = tempfile.TemporaryDirectory()
        path = Path(self.dir.name) / "feishui.db"
        shutil.copy(template, path)
        self.engine = make_engine(f"sqlite:///{path}")
        self.sessions = make_sessionmaker(self.engine)
        clear_account_cache()

    def __enter__(self) -> Fresh:
        return self

    def __exit__(self, *exc: object) -> None:
        self.engine.dispose()
        self.dir.cleanup()


def model(entries: list[Entry], as_of: date | None = None) -> dict[str, tuple[int, int]]:
    """account -> (debits, credits), computed here from the entries alone."""
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for e in entries:
        if as_of is None or e.business_date <= as_of:
            for p in e.postings:
                out[p.account][0 if p.direction is Direction.DEBIT else 1] += p.amount
    return {a: (d, c) for a, (d, c) in out.items()}


def ledger_totals(db, as_of: date | None = None) -> dict[str, tuple[int, int]]:
    with transaction(db.sessions) as s:
        return {
            b.code: (b.debits, b.credits)
            for b in LedgerService(s).balances(as_of=as_of)
            if b.debits or b.credits
        }


def entry_count(db) -> int:
    with transaction(db.sessions) as s:
        return s.scalar(select(func.count()).select_from(JournalEntry))


@SETTINGS
@given(
    specs=st.lists(entry_specs(), min_size=1, max_size=12),
    to_reverse=st.lists(st.integers(0, 1_000), max_size=4),
)
def test_random_ledgers(sqlite_template, specs, to_reverse):
    entries = make_entries(specs)
    with Fresh(sqlite_template) as db:
        ids = []
        for e in entries:
            with transaction(db.sessions) as s:
                ids.append(LedgerService(s).post(e).id)
        reversed_ = []  # reversals, including reversals of reversals
        for pick in to_reverse:
            target = pick % (len(ids) + len(reversed_))
            target_id = ids[target] if target < len(ids) else reversed_[target - len(ids)][0]
            try:
                with transaction(db.sessions) as s:
                    rev = LedgerService(s).reverse(
                        target_id,
                        idempotency_key=f"rev-{target_id}",
                        business_date=START + timedelta(days=6),
                    )
            except Conflict:  # already reversed: refused, and nothing was posted
                continue
            if rev.replayed:  # the same reversal retried: nothing new was posted
                continue
            reversed_.append((rev.id, rev.entry))
        everything = entries + [e for _, e in reversed_]

        # balances are the independent sums, now and as of every business date
        expected = model(everything)
        assert ledger_totals(db) == expected
        for day in range(7):
            as_of = START + timedelta(days=day)
            assert ledger_totals(db, as_of) == model(everything, as_of)
        with transaction(db.sessions) as s:
            ledger = LedgerService(s)
            for b in ledger.balances():
                d, c = expected.get(b.code, (0, 0))
                normal = d - c if chart.classify(b.code)[0].debit_normal else c - d
                assert b.balance == normal == ledger.balance(b.code)
            tb = ledger.trial_balance()
        assert tb.balanced
        assert sum(d - c for d, c in expected.values()) == 0
        debit_side, credit_side = tb.totals()["CNY"]
        assert debit_side == credit_side == sum(max(d - c, 0) for d, c in expected.values())

        # the same entries again under the same keys: replayed, nothing changes.
        # (Reversals are not re-posted: see test_retried_reversal_is_idempotent.)
        count = entry_count(db)
        for e, entry_id in zip(entries, ids, strict=True):
            with transaction(db.sessions) as s:
                again = LedgerService(s).post(e)
            assert again.replayed and again.id == entry_id
        assert entry_count(db) == count == len(everything)
        assert ledger_totals(db) == expected

        # seal everything; the chain and every entry verify
        with transaction(db.sessions) as s:
            assert LedgerService(s).seal() == count
        with transaction(db.sessions) as s:
            report = LedgerService(s).verify()
        assert report.ok, report.failures
        assert (report.entries, report.sealed, report.unsealed) == (count, count, 0)

        # beancount agrees
        buf = io.StringIO()
        with transaction(db.sessions) as s:
            export_beancount(s, buf)
        loaded, errors, _ = loader.load_string(buf.getvalue())
        assert errors == []
        assert sum(isinstance(x, data.Transaction) for x in loaded) == count


def test_retried_reversal_is_idempotent(sqlite):
    e = Entry(
        "p",
        START,
        "payment",
        (
            Posting.debit("gateway_clearing:alipay", 100),
            Posting.credit("treasury_payable:510100-city", 100),
        ),
    )
    with transaction(sqlite.sessions) as s:
        entry_id = LedgerService(s).post(e).id
    with transaction(sqlite.sessions) as s:
        first = LedgerService(s).reverse(entry_id, idempotency_key="rev-p", business_date=START)
    with transaction(sqlite.sessions) as s:  # the client retries after a lost response
        again = LedgerService(s).reverse(entry_id, idempotency_key="rev-p", business_date=START)
    assert again.replayed and again.id == first.id


# the export's building blocks ---------------------------------------------------------------

codes = st.one_of(
    st.sampled_from(ACCOUNTS),
    st.text(min_size=0, max_size=20).filter(lambda s: "\x00" not in s),
    st.lists(st.text(alphabet="abcxyz019_-AZ: .", max_size=6), min_size=1, max_size=4).map(
        ":".join
    ),
)


@SETTINGS
@given(code=codes, other=codes, account_type=st.sampled_from(list(AccountType)))
def test_account_names_are_valid_and_injective(code, other, account_type):
    name = account_name(code, account_type)
    assert bc_account.is_valid(name)
    _, errors, _ = loader.load_string(f"2026-01-01 open {name} CNY\n")
    assert errors == []
    assert account_code(name) == code  # an exact inverse: injective
    assert account_name(code, account_type) == name  # deterministic
    if other != code:
        assert account_name(other, account_type) != name


def test_account_names_of_the_chart():
    assert account_name("gateway_clearing:alipay", "asset") == "Assets:GatewayClearing:Alipay"
    assert (
        account_name("treasury_payable:510100-city", "liability")
        == "Liabilities:TreasuryPayable:510100-City"
    )
    assert account_name("gateway_fees:alipay", "expense") == "Expenses:GatewayFees:Alipay"
    assert account_name("suspense", "liability") == "Liabilities:Suspense"
    assert account_name("x:y", "revenue") == "Income:X:Y"
    assert account_name("equity:opening", "equity") == "Equity:Equity:Opening"
    # not representable plainly: escaped, and distinct from the look-alikes
    assert account_name("fiscal_bank:ICBC 5101", "asset") == "Assets:FiscalBank:X-xICBC-20-5101"
    assert account_name("fiscal_bank:成都", "asset") == "Assets:FiscalBank:X-x-6210--90FD-"
    assert account_name("a_1", "asset") != account_name("a1", "asset")
    assert account_name("a-b", "asset") != account_name("a_b", "asset")


@SETTINGS
@given(text=st.text(max_size=40).filter(lambda s: "\x00" not in s))
def test_quoted_strings_survive_beancount(text):
    src = (
        f"2026-01-01 open Assets:A CNY\n2026-01-01 open Assets:B CNY\n"
        f"2026-01-02 * {quote(text)}\n  key: {quote(text)}\n"
        f"  Assets:A  1.00 CNY\n  Assets:B  -1.00 CNY\n"
    )
    entries, errors, _ = loader.load_string(src)
    assert errors == []
    (txn,) = [e for e in entries if isinstance(e, data.Transaction)]
    assert txn.narration == text
    assert txn.meta["key"] == text
