"""Alipay-style bill (``alipay``): GBK or UTF-8 CSV with ``#`` comments and a totals footer.

See docs/formats.md. Columns are mapped by header name; values lose their trailing tab. The
footer's counts and sums are checked against the rows once every row has been yielded, so a
caller that stores lines as they stream must roll back when the generator raises at the end.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from clearing.money import CNY, format_fen
from reconciliation.lines import LineKind, StatementLine
from reconciliation.parsers._common import (
    StatementError,
    bill_lines,
    csv_cells,
    iso_date,
    yuan_to_fen,
)

SOURCE = "alipay"

TRADE_NO = "支付宝交易号"
ORDER_NO = "商户订单号"
BIZ_TYPE = "业务类型"
PRODUCT = "商品名称"
FINISHED = "完成时间"
RECEIVED = "商家实收（元）"
REFUND_NO = "退款批次号/请求号"
FEE = "服务费（元）"
REMARK = "备注"
REQUIRED = (TRADE_NO, ORDER_NO, BIZ_TYPE, FINISHED, RECEIVED, REFUND_NO, FEE)

PAYMENT, REFUND = "交易", "退款"
_PAYMENT_TOTAL = re.compile(r"#交易合计[：:]\s*([0-9]+)笔[，,]\s*商家实收共[：:]\s*(\S+?)元")
_REFUND_TOTAL = re.compile(r"#退款合计[：:]\s*([0-9]+)笔[，,]\s*商家实收退款共[：:]\s*(\S+?)元")


def parse(data: bytes, filename: str | None = None) -> Iterator[StatementLine]:
    """Yield one :class:`StatementLine` per bill row; check the footer totals at the end."""
    lines = bill_lines(data, filename)
    line_no = 0
    columns: dict[str, int] | None = None
    width = 0
    counts = {PAYMENT: 0, REFUND: 0}
    sums = {PAYMENT: 0, REFUND: 0}
    footer: dict[str, tuple[int, int, int]] = {}  # kind -> (line_no, count, fen)
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if line.startswith("#"):
            for kind, pattern in ((PAYMENT, _PAYMENT_TOTAL), (REFUND, _REFUND_TOTAL)):
                match = pattern.match(line.strip())
                if match:
                    label = "商家实收共" if kind == PAYMENT else "商家实收退款共"
                    fen = yuan_to_fen(match.group(2), label, filename, line_no)
                    footer[kind] = (line_no, int(match.group(1)), fen)
            continue
        cells = [cell.strip() for cell in csv_cells(line, filename, line_no)]
        if columns is None:
            columns = {name: i for i, name in enumerate(cells)}
            missing = [name for name in REQUIRED if name not in columns]
            if missing:
                raise StatementError(
                    f"header lacks column {missing[0]} (is this an Alipay bill?)",
                    filename=filename,
                    line=line_no,
                )
            width = len(cells)
            continue
        if footer:
            raise StatementError(
                "data row after the footer totals", filename=filename, line=line_no
            )
        if len(cells) != width:
            raise StatementError(
                f"expected {width} cells as in the header, found {len(cells)}",
                filename=filename,
                line=line_no,
            )
        kind = cells[columns[BIZ_TYPE]]
        if kind not in counts:
            raise StatementError(
                f"column {BIZ_TYPE} is neither {PAYMENT} nor {REFUND}: {kind!r}",
                filename=filename,
                line=line_no,
            )
        amount = yuan_to_fen(cells[columns[RECEIVED]], RECEIVED, filename, line_no)
        fee = yuan_to_fen(cells[columns[FEE]], FEE, filename, line_no)
        booked_on = iso_date(cells[columns[FINISHED]], FINISHED, filename, line_no, with_time=True)
        external_id = cells[columns[TRADE_NO]]
        if not external_id:
            raise StatementError(f"column {TRADE_NO} is empty", filename=filename, line=line_no)
        refund_id: str | None = None
        if kind == PAYMENT and amount < 0:
            raise StatementError(
                f"a {PAYMENT} row with a negative {RECEIVED}: {format_fen(amount)}",
                filename=filename,
                line=line_no,
            )
        if kind == REFUND:
            if amount > 0:
                raise StatementError(
                    f"a {REFUND} row with a positive {RECEIVED}: {format_fen(amount)}",
                    filename=filename,
                    line=line_no,
                )
            refund_id = cells[columns[REFUND_NO]]
            if not refund_id:
                raise StatementError(
                    f"a {REFUND} row without {REFUND_NO}", filename=filename, line=line_no
                )
        counts[kind] += 1
        sums[kind] += amount
        reference = " ".join(
            cells[columns[name]]
            for name in (PRODUCT, REMARK)
            if name in columns and cells[columns[name]]
        )
        yield StatementLine(
            source=SOURCE,
            line_no=line_no,
            external_id=external_id,
            order_id=cells[columns[ORDER_NO]] or None,
            amount_fen=amount,
            fee_fen=-fee,
            currency=CNY,
            booked_on=booked_on,
            value_on=None,
            kind=LineKind.PAYMENT if kind == PAYMENT else LineKind.REFUND,
            reference=reference,
            refund_id=refund_id,
        )
    last = line_no
    if columns is None:
        raise StatementError(
            "no header row (empty or truncated bill)", filename=filename, line=last or None
        )
    for kind, label in ((PAYMENT, "交易合计"), (REFUND, "退款合计")):
        if kind not in footer:
            raise StatementError(
                f"footer #{label} is missing (truncated bill?)", filename=filename, line=last
            )
        footer_line, count, fen = footer[kind]
        if (count, fen) != (counts[kind], sums[kind]):
            raise StatementError(
                f"footer #{label} says {count} rows totalling {format_fen(fen)} but the bill has "
                f"{counts[kind]} rows totalling {format_fen(sums[kind])}",
                filename=filename,
                line=footer_line,
            )
