"""Public receipt pages and verification (no authentication: the check code is the secret).

- ``GET /receipts/{number}?check=CODE``: the receipt as an HTML page (zh-CN with English);
- ``GET /receipts/{number}.pdf?check=CODE`` and ``.json``: the PDF and the signed JSON;
- ``POST /v1/receipts/verify``: verify a receipt JSON (as served by ``.json``);
- ``GET /.well-known/feishui-eseal.pem`` and ``/.well-known/feishui-eseal/{key_id}.pem``.

A wrong or missing check code is a 404 that does not say whether the number exists.
The session comes from :func:`api.deps.db_session` (``app.state.runtime``).
"""

from __future__ import annotations

from html import escape
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from api.deps import ReadSession, get_runtime
from clearing.errors import NotFound
from clearing.money import format_fen
from notices.codes import format_code
from notices.receipts import (
    ESeal,
    PublishedKeys,
    find_receipt,
    receipt_json,
    render_receipt_pdf,
    verify_published,
    verify_receipt,
    verify_url,
)

router = APIRouter(tags=["receipts"])
Check = Annotated[str | None, Query(max_length=16, description="The receipt's check code")]
NOT_FOUND_DETAIL = "no receipt with this number and check code"
PEM_TYPE = "application/x-pem-file"


def published_keys(request: Request) -> PublishedKeys:
    """The app's published e-seal keys (built once per app from the runtime's settings)."""
    keys = getattr(request.app.state, "eseal_keys", None)
    if keys is None:
        keys = PublishedKeys.from_settings(get_runtime(request).settings)
        request.app.state.eseal_keys = keys
    return keys


def _base_url(request: Request) -> str:
    return get_runtime(request).settings.public_base_url


def _problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse(
        {
            "type": "https://feishui.dev/problems/not-found",
            "title": "Not found",
            "status": status,
            "detail": detail,
        },
        status_code=status,
        media_type="application/problem+json",
    )


@router.get("/receipts/{number}.json", responses={404: {"description": "Not found"}})
def receipt_as_json(number: str, session: ReadSession, check: Check = None) -> Response:
    """The signed receipt: ``{"receipt": …, "signature": …, "key_id": …, "algorithm": …}``."""
    try:
        receipt = find_receipt(session, number, check)
    except NotFound:
        return _problem(404, NOT_FOUND_DETAIL)
    return JSONResponse(
        receipt_json(receipt),
        headers={"Content-Disposition": f'inline; filename="{receipt.number}.json"'},
    )


@router.get(
    "/receipts/{number}.pdf", responses={404: {"description": "Not found"}}, response_class=Response
)
def receipt_as_pdf(
    number: str, request: Request, session: ReadSession, check: Check = None
) -> Response:
    """The receipt as a PDF with the e-seal stamp and the QR code of its verification page."""
    try:
        receipt = find_receipt(session, number, check)
    except NotFound:
        return _problem(404, NOT_FOUND_DETAIL)
    pdf = render_receipt_pdf(receipt, verify_url(_base_url(request), receipt))
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{receipt.number}.pdf"'},
    )


@router.get(
    "/receipts/{number}", response_class=HTMLResponse, responses={404: {"description": "Not found"}}
)
def receipt_page(
    number: str, request: Request, session: ReadSession, check: Check = None
) -> HTMLResponse:
    """The receipt as a page, with the result of checking its e-seal."""
    try:
        receipt = find_receipt(session, number, check)
    except NotFound:
        return HTMLResponse(NOT_FOUND_PAGE, status_code=404)
    result = verify_receipt(receipt, published_keys(request))
    return HTMLResponse(
        render_page(
            receipt.payload,
            receipt.key_id,
            result.ok,
            result.reason,
            f"?check={receipt.check_code}",
        )
    )


@router.post("/v1/receipts/verify")
def verify(request: Request, body: Annotated[Any, Body()]) -> dict[str, Any]:
    """Verify a receipt JSON as served at ``/receipts/{number}.json``; never an error status."""
    result = verify_published(body, published_keys(request))
    return {
        "valid": result.ok,
        "reason": result.reason,
        "number": result.number,
        "issuer": result.issuer,
        "key_id": result.key_id,
    }


@router.get("/.well-known/feishui-eseal.pem", response_class=Response)
def current_key(request: Request) -> Response:
    """The current e-seal public key (SubjectPublicKeyInfo PEM)."""
    eseal = ESeal.from_settings(get_runtime(request).settings)
    return Response(eseal.public_pem(), media_type=PEM_TYPE, headers={"X-Key-Id": eseal.key_id})


@router.get(
    "/.well-known/feishui-eseal/{key_id}.pem",
    response_class=Response,
    responses={404: {"description": "Unknown key id"}},
)
def key_by_id(key_id: str, request: Request) -> Response:
    """A published e-seal public key by key id (current or retired)."""
    keys = published_keys(request)
    if key_id not in keys:
        return _problem(404, "no published e-seal key with this id")
    return Response(keys.pem(key_id), media_type=PEM_TYPE, headers={"X-Key-Id": key_id})


# --------------------------------------------------------------------------- HTML

_STYLE = """
body{font-family:"Noto Sans SC","PingFang SC","Microsoft YaHei",system-ui,sans-serif;
color:#212529;background:#f4f4f4;margin:0;padding:24px}
main{max-width:760px;margin:auto;background:#fff;padding:28px 32px;border-top:6px solid #b01e23}
h1{color:#b01e23;text-align:center;margin:.2em 0 0;letter-spacing:.15em}
.sub{text-align:center;color:#6c757d;margin:0 0 1em}
.dept{text-align:center;margin:0}
table{width:100%;border-collapse:collapse;margin:1em 0}
th,td{padding:6px 8px;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
th{background:#f2f2f2;color:#6c757d;font-weight:normal;width:34%}
td.n,th.n{text-align:right}
.total td{font-weight:bold;font-size:1.15em}
.ok{color:#146c2e;border:2px solid #146c2e;padding:8px 12px;font-weight:bold}
.bad{color:#b01e23;border:2px solid #b01e23;padding:8px 12px;font-weight:bold}
.muted{color:#6c757d;font-size:.9em}
a{color:#0b5ed7}
td{overflow-wrap:anywhere} td.n{overflow-wrap:normal;white-space:nowrap}
@media (max-width:480px){
body{padding:8px} main{padding:16px 12px} h1{font-size:1.6em;letter-spacing:.05em}}
"""

NOT_FOUND_PAGE = f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>未找到凭证 / Receipt not found</title><style>{_STYLE}</style></head>
<body><main><h1>未找到凭证</h1><p class="sub">Receipt not found</p>
<p>没有与该票据号码和校验码相符的电子缴款凭证。请核对票据号码和校验码（校验码见凭证右上角）。</p>
<p class="muted">No receipt matches this number and check code. Check both
(the check code is printed at the top right of the receipt).</p></main></body></html>
"""


def _row(zh: str, en: str, value: str) -> str:
    return f"<tr><th>{zh} <span class='muted'>{en}</span></th><td>{escape(value)}</td></tr>"


def render_page(doc: dict[str, Any], key_id: str, valid: bool, reason: str, query: str) -> str:
    """The receipt page (self-contained HTML; every value escaped)."""
    payment = doc["payment"]
    number = escape(doc["number"])
    rows = "".join(
        [
            _row("票据号码", "Receipt No.", doc["number"]),
            _row("校验码", "Check code", doc["check_code"]),
            _row("开票单位", "Issuer", doc["issuer"]["platform"]),
            _row("执收单位", "Department", doc["issuer"]["department"]),
            _row("缴款人", "Payer", doc["payer"]["name_masked"]),
            _row("缴款码", "Payment code", format_code(doc["payment_code"])),
            _row("业务类型", "Kind", f"{doc['kind']['name_zh']} / {doc['kind']['name_en']}"),
            _row("缴款时间", "Paid at", doc["paid_at"]),
            _row("支付方式", "Paid via", f"{payment['gateway']} · {payment['channel']}"),
            _row("交易流水号", "Transaction", payment["gateway_txn_id"] or "—"),
            _row("订单号", "Order", payment["order_id"]),
            _row("开具时间", "Issued at", doc["issued_at"]),
        ]
    )
    items = "".join(
        f"<tr><td>{item['line_no']}</td><td>{escape(item['code'])}</td>"
        f"<td>{escape(item['name_zh'])}<br><span class='muted'>{escape(item['name_en'])}"
        f"</span></td><td class='n'>{item['quantity']}</td>"
        f"<td class='n'>{format_fen(item['amount']['fen'])}</td></tr>"
        for item in doc["items"]
    )
    totals = "".join(
        f"<tr class='{cls}'><td colspan='4' class='n'>{label}</td>"
        f"<td class='n'>¥ {format_fen(doc[key]['fen'])}</td></tr>"
        for key, label, cls in (
            ("principal", "本金 Principal", ""),
            ("late_fee", "滞纳金 Late fee", ""),
            ("total", "实缴金额合计 Total paid", "total"),
        )
    )
    status = (
        "<p class='ok'>✓ 电子签章有效 / e-seal valid</p>"
        if valid
        else f"<p class='bad'>✗ 电子签章无效 / e-seal INVALID: {escape(reason)}</p>"
    )
    q = escape(query)
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="robots" content="noindex">
<title>非税收入电子缴款凭证 {number} / Electronic Receipt</title>
<style>{_STYLE}</style></head>
<body><main>
<p class="dept">{escape(doc["issuer"]["department"])}</p>
<h1>非税收入电子缴款凭证</h1><p class="sub">Electronic Receipt</p>
{status}
<table>{rows}</table>
<h2>缴款项目 <span class="muted">Items</span></h2>
<table><tr><th>#</th><th>编码 Code</th><th>项目 Item</th><th class="n">数量 Qty</th>
<th class="n">金额（元）Amount (CNY)</th></tr>{items}{totals}</table>
<p>下载 Download: <a href="{number}.pdf{q}">PDF</a> ·
<a href="{number}.json{q}">JSON（含签名 signed）</a></p>
<p class="muted">签章密钥 Key id <code>{escape(key_id)}</code> · Ed25519 ·
<a href="/.well-known/feishui-eseal/{escape(key_id)}.pem">公钥 public key</a></p>
</main></body></html>
"""
