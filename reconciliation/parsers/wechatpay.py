"""WeChat Pay-style bill (``wechatpay``): UTF-8 CSV whose cells start with a backtick.

See docs/formats.md. A header row, data rows, a summary header and one summary row, which is
checked against the rows after they have all been yielded. Fees have five decimals: kept exactly
in ``fee_exact`` and rounded half-up to the fen in ``fee_fen``.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

from clearing.money import format_fen
from reconciliation.lines import LineKind, StatementLine
from reconciliation.parsers._common import (
    StatementError,
    bill_lines,
    csv_cells,
    exact_decimal,
    integer_fen,
    iso_date,
    round_fen,
    yuan_to_fen,
)

SOURCE = "wechatpay"

TIME = "交易时间"
WX_ORDER = "微信订单号"
ORDER = "商户订单号"
STATUS = "交易状态"
CURRENCY = "货币种类"
SETTLE_AMOUNT = "应结订单金额"
REFUND_NO = "商户退款单号"
REFUND_AMOUNT = "退款金额"
PRODUCT = "商品名称"
FEE = "手续费"
REQUIRED = (TIME, WX_ORDER, ORDER, STATUS, SETTLE_AMOUNT, REFUND_NO, REFUND_AMOUNT, FEE)

SUMMARY_COUNT = "总交易单数"
SUMMARY_SETTLE = "应结订单总金额"
SUMMARY_REFUND = "退款总金额"
SUMMARY_FEE = "手续费总金额"
SUMMARY_REQUIRED = (SUMMARY_COUNT, SUMMARY_SETTLE, SUMMARY_REFUND, SUMMARY_FEE)

SUCCESS, REFUND = "SUCCESS", "REFUND"


def _unquote(cells: list[str], filename: str | None, line_no: int) -> list[str]:
    values = []
    for i, cell in enumerate(cells, start=1):
        cell = cell.strip()
        if not cell.startswith("`"):
            raise StatementError(
                f"cell {i} does not start with a backtick: {cell[:20]!r}",
                filename=filename,
                line=line_no,
            )
        values.append(cell[1:].strip())
    return values


def parse(data: bytes, filename: str | None = None) -> Iterator[StatementLine]:
    """Yield one :class:`StatementLine` per data row; check the summary row at the end."""
    lines = bill_lines(data, filename, allow_gbk=False)
    line_no = 0
    columns: dict[str, int] | None = None
    summary_columns: dict[str, int] | None = None
    summary: tuple[int, list[str]] | None = None
    rows = 0
    settled = refunded = 0
    fees = Decimal(0)
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if summary is not None:
            raise StatementError("text after the summary row", filename=filename, line=line_no)
        if columns is None:
            names = [cell.strip() for cell in csv_cells(line, filename, line_no)]
            columns = {name: i for i, name in enumerate(names)}
            missing = [name for name in REQUIRED if name not in columns]
            if missing:
                raise StatementError(
                    f"header lacks column {missing[0]} (is this a WeChat Pay bill?)",
                    filename=filename,
                    line=line_no,
                )
            continue
        if summary_columns is not None:
            summary = (line_no, _unquote(csv_cells(line, filename, line_no), filename, line_no))
            continue
        if line.startswith(SUMMARY_COUNT):
            names = [cell.strip() for cell in csv_cells(line, filename, line_no)]
            summary_columns = {name: i for i, name in enumerate(names)}
            missing = [name for name in SUMMARY_REQUIRED if name not in summary_columns]
            if missing:
                raise StatementError(
                    f"summary header lacks column {missing[0]}", filename=filename, line=line_no
                )
            continue
        cells = _unquote(csv_cells(line, filename, line_no), filename, line_no)
        if len(cells) != len(columns):
            raise StatementError(
                f"expected {len(columns)} cells as in the header, found {len(cells)}",
                filename=filename,
                line=line_no,
            )
        status = cells[columns[STATUS]]
        fee_exact = exact_decimal(cells[columns[FEE]], FEE, filename, line_no)
        booked_on = iso_date(cells[columns[TIME]], TIME, filename, line_no, with_time=True)
        external_id = cells[columns[WX_ORDER]]
        if not external_id:
            raise StatementError(f"column {WX_ORDER} is empty", filename=filename, line=line_no)
        refund_id: str | None = None
        if status == SUCCESS:
            amount = yuan_to_fen(cells[columns[SETTLE_AMOUNT]], SETTLE_AMOUNT, filename, line_no)
            if amount < 0:
                raise StatementError(
                    f"column {SETTLE_AMOUNT} is negative", filename=filename, line=line_no
                )
            settled += amount
            kind = LineKind.PAYMENT
        elif status == REFUND:
            refund = yuan_to_fen(cells[columns[REFUND_AMOUNT]], REFUND_AMOUNT, filename, line_no)
            if refund < 0:
                raise StatementError(
                    f"column {REFUND_AMOUNT} is negative", filename=filename, line=line_no
                )
            refund_id = cells[columns[REFUND_NO]]
            if not refund_id or refund_id == "0":
                raise StatementError(
                    f"a refund row without {REFUND_NO}", filename=filename, line=line_no
                )
            refunded += refund
            amount = -refund
            kind = LineKind.REFUND
        else:
            raise StatementError(
                f"column {STATUS} is neither {SUCCESS} nor {REFUND}: {status!r}",
                filename=filename,
                line=line_no,
            )
        rows += 1
        fees += fee_exact
        currency = cells[columns[CURRENCY]] if CURRENCY in columns else "CNY"
        yield StatementLine(
            source=SOURCE,
            line_no=line_no,
            external_id=external_id,
            order_id=cells[columns[ORDER]] or None,
            amount_fen=amount,
            fee_fen=round_fen(fee_exact),
            currency=currency or "CNY",
            booked_on=booked_on,
            value_on=None,
            kind=kind,
            reference=cells[columns[PRODUCT]] if PRODUCT in columns else "",
            fee_exact=fee_exact,
            refund_id=refund_id,
        )
    last = line_no or None
    if columns is None:
        raise StatementError("no header row (empty bill)", filename=filename, line=last)
    if summary is None or summary_columns is None:
        raise StatementError(
            "summary row is missing (truncated bill?)", filename=filename, line=last
        )
    _check_summary(summary, summary_columns, (rows, settled, refunded, fees), filename)


def _check_summary(
    summary: tuple[int, list[str]],
    columns: dict[str, int],
    actual: tuple[int, int, int, Decimal],
    filename: str | None,
) -> None:
    line_no, cells = summary
    if len(cells) != len(columns):
        raise StatementError(
            f"summary row has {len(cells)} cells, its header {len(columns)}",
            filename=filename,
            line=line_no,
        )
    rows, settled, refunded, fees = actual
    count = integer_fen(
        cells[columns[SUMMARY_COUNT]], SUMMARY_COUNT, filename, line_no, noun="a count"
    )
    expected = {
        SUMMARY_COUNT: (count, rows, str),
        SUMMARY_SETTLE: (
            yuan_to_fen(cells[columns[SUMMARY_SETTLE]], SUMMARY_SETTLE, filename, line_no),
            settled,
            format_fen,
        ),
        SUMMARY_REFUND: (
            yuan_to_fen(cells[columns[SUMMARY_REFUND]], SUMMARY_REFUND, filename, line_no),
            refunded,
            format_fen,
        ),
        SUMMARY_FEE: (
            exact_decimal(cells[columns[SUMMARY_FEE]], SUMMARY_FEE, filename, line_no),
            fees,
            str,
        ),
    }
    for name, (said, found, show) in expected.items():
        if said != found:
            raise StatementError(
                f"summary {name} is {show(said)} but the rows give {show(found)}",
                filename=filename,
                line=line_no,
            )
