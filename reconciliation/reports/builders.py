"""Builders: the database -> a format-free :class:`~reconciliation.reports.model.Report`.

- :func:`run_report`: one reconciliation run, its summary by outcome and every exception;
- :func:`collections_report`: a business day's collections by department, item, channel and
  treasury (from captures: attempts ``succeeded`` and ``duplicate``, split over notice items);
- :func:`trial_balance_report`: the trial balance as of a business date.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable
from datetime import date

from sqlalchemy.orm import Session

from clearing.ledger.service import LedgerService
from reconciliation.collected import CollectedLine, collected_lines
from reconciliation.queries import run_summary
from reconciliation.reports.model import Amount, Cell, Report, Table

OUTCOME_LABELS = {
    "matched": "已匹配 matched",
    "missing_internal": "我方缺失 missing internal",
    "missing_external": "对方缺失 missing external",
    "amount_mismatch": "金额不符 amount mismatch",
    "duplicate": "重复 duplicate",
    "fee_mismatch": "手续费不符 fee mismatch",
    "cutoff": "跨日 outside cut-off",
    "settled": "已结算 settled",
    "unexplained_credit": "不明来账 unexplained credit",
    "shortfall": "到账不足 shortfall",
    "excess": "到账超额 excess",
    "other": "其他 other",
}


def _iso(moment: object) -> str:
    return moment.isoformat() if moment is not None else ""  # type: ignore[attr-defined]


def run_report(session: Session, run_id: int) -> Report:
    summary = run_summary(session, run_id)
    run = summary.run
    facts = [
        ("来源 Source", run.source),
        ("类型 Kind", run.kind),
        ("业务日期 Business date", run.business_date.isoformat()),
        ("文件 File", run.file_name),
        ("SHA-256", run.file_sha256),
        ("格式 Format", run.file_format),
        ("状态 State", run.state),
        ("发起人 Started by", run.started_by),
        ("开始 Started at", _iso(run.started_at)),
        ("结束 Finished at", _iso(run.finished_at)),
        ("行数 Lines", str(run.line_count)),
        ("未结差异 Open exceptions", str(summary.open_exceptions)),
    ]
    if run.error:
        facts.append(("错误 Error", run.error))
    outcomes = Table(
        "按结果汇总 Summary by outcome",
        ["结果 Outcome", "笔数 Lines", "金额 Amount", "手续费 Fees"],
        [
            [OUTCOME_LABELS.get(o.outcome, o.outcome), o.count, Amount(o.amount), Amount(o.fee)]
            for o in summary.outcomes
        ],
        [
            "合计 Total",
            sum(o.count for o in summary.outcomes),
            Amount(sum(o.amount for o in summary.outcomes)),
            Amount(sum(o.fee for o in summary.outcomes)),
        ],
        widths=[40, 12, 18, 18],
    )
    exceptions = Table(
        "差异明细 Exceptions",
        [
            "#",
            "行 Line",
            "结果 Outcome",
            "类别 Kind",
            "订单号 Order",
            "外部流水 External id",
            "金额 Amount",
            "应为 Expected",
            "手续费 Fee",
            "应收手续费 Expected fee",
            "说明 Detail",
            "处理 State",
            "提议 Proposed by",
            "批准 Resolved by",
            "备注 Note",
        ],
        [_exception_row(i) for i in summary.exceptions],
        widths=[6, 6, 16, 9, 16, 16, 11, 11, 9, 9, 30, 9, 10, 10, 22],
    )
    return Report(
        f"对账报告 Reconciliation report #{run.id}",
        f"reconciliation-run-{run.id}",
        facts,
        [outcomes, exceptions],
    )


def _exception_row(item) -> list[Cell]:  # type: ignore[no-untyped-def]
    def opt(fen: int | None) -> Cell:
        return Amount(fen) if fen is not None else None

    return [
        item.id,
        item.line_no,
        OUTCOME_LABELS.get(item.outcome, item.outcome),
        item.kind,
        item.order_id,
        item.external_id,
        Amount(item.amount),
        opt(item.expected_amount),
        Amount(item.fee),
        opt(item.expected_fee),
        item.detail,
        item.exception_state,
        item.proposed_by,
        item.resolved_by,
        item.resolution_note,
    ]


def _group(
    lines: list[CollectedLine], key: Callable[[CollectedLine], Hashable]
) -> list[tuple[Hashable, int, int]]:
    """(key, distinct payments, fen) per key, sorted by key."""
    orders: dict[Hashable, set[str]] = defaultdict(set)
    fen: dict[Hashable, int] = defaultdict(int)
    for line in lines:
        orders[key(line)].add(line.order_id)
        fen[key(line)] += line.amount
    return [(k, len(orders[k]), fen[k]) for k in sorted(fen, key=str)]


def _grouped_table(
    title: str,
    columns: list[str],
    lines: list[CollectedLine],
    key: Callable[[CollectedLine], tuple[str, ...]],
    widths: list[int],
) -> Table:
    rows: list[list[Cell]] = [
        [*k, n, Amount(fen)]  # type: ignore[misc]
        for k, n, fen in _group(lines, key)
    ]
    total_orders = len({line.order_id for line in lines})
    total: list[Cell] = [
        "合计 Total",
        *[None] * (len(columns) - 3),
        total_orders,
        Amount(sum(line.amount for line in lines)),
    ]
    return Table(title, columns, rows, total, widths)


def collections_report(session: Session, day: date) -> Report:
    lines = collected_lines(session, day)
    orders = {line.order_id for line in lines}
    duplicates = {line.order_id for line in lines if line.attempt_state == "duplicate"}
    facts = [
        ("业务日期 Business date", day.isoformat()),
        ("缴款笔数 Payments", str(len(orders))),
        ("其中重复缴款 of which duplicates", str(len(duplicates))),
        ("合计金额 Total (yuan)", str(Amount(sum(line.amount for line in lines)))),
        (
            "口径 Basis",
            "captured on this business date: attempts succeeded and duplicate; "
            "split over notice items and treasuries as posted",
        ),
    ]
    pay, amt = "笔数 Payments", "金额 Amount"
    tables = [
        _grouped_table(
            "按执收单位 By department",
            ["执收单位 Department", pay, amt],
            lines,
            lambda x: (x.department,),
            [50, 12, 18],
        ),
        _grouped_table(
            "按项目 By item",
            [
                "项目代码 Item",
                "项目名称 Name",
                "收入分类 Revenue code",
                "预算级次 Budget level",
                pay,
                amt,
            ],
            lines,
            lambda x: (x.item_code, x.item_name, x.revenue_code, x.budget_level),
            [16, 30, 16, 14, 10, 16],
        ),
        _grouped_table(
            "按渠道 By channel",
            ["渠道 Channel", "支付机构 Gateway", pay, amt],
            lines,
            lambda x: (x.channel, x.gateway),
            [16, 20, 10, 16],
        ),
        _grouped_table(
            "按国库 By treasury",
            ["国库账户 Treasury", pay, amt],
            lines,
            lambda x: (x.treasury,),
            [40, 12, 18],
        ),
    ]
    return Report(
        f"每日收缴报表 Daily collections {day.isoformat()}",
        f"collections-{day.isoformat()}",
        facts,
        tables,
    )


def trial_balance_report(session: Session, as_of: date | None) -> Report:
    tb = LedgerService(session).trial_balance(as_of=as_of)
    rows: list[list[Cell]] = []
    for r in tb.rows:
        net = r.debits - r.credits
        rows.append(
            [
                r.code,
                r.type.value,
                r.currency,
                Amount(r.debits),
                Amount(r.credits),
                Amount(max(net, 0)),
                Amount(max(-net, 0)),
            ]
        )
    totals = tb.totals()
    total: list[Cell] | None = None
    if len(totals) == 1:
        ((cur, (debit, credit)),) = totals.items()
        total = [
            "合计 Total",
            None,
            cur,
            Amount(sum(r.debits for r in tb.rows)),
            Amount(sum(r.credits for r in tb.rows)),
            Amount(debit),
            Amount(credit),
        ]
    else:
        rows += [
            [f"合计 Total {cur}", None, cur, None, None, Amount(d), Amount(c)]
            for cur, (d, c) in totals.items()
        ]
    label = as_of.isoformat() if as_of else "all"
    facts = [
        ("截至 As of", as_of.isoformat() if as_of else "全部 all entries"),
        ("平衡 Balanced", "是 yes" if tb.balanced else "否 NO"),
    ]
    table = Table(
        "试算平衡表 Trial balance",
        [
            "科目 Account",
            "类型 Type",
            "币种 Currency",
            "借方发生 Debits",
            "贷方发生 Credits",
            "借方余额 Debit balance",
            "贷方余额 Credit balance",
        ],
        rows,
        total,
        [36, 10, 8, 16, 16, 16, 16],
    )
    return Report(
        f"试算平衡表 Trial balance (as of {label})", f"trial-balance-{label}", facts, [table]
    )
