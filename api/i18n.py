"""The portal's words in Chinese (default) and English."""

from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "title": {"zh": "非税缴款", "en": "Non-tax payments"},
    "enter_code": {"zh": "请输入缴款码", "en": "Enter your payment code"},
    "code_hint": {"zh": "20 位数字，见缴款通知书或短信", "en": "20 digits, on your notice or SMS"},
    "look_up": {"zh": "查询", "en": "Look up"},
    "department": {"zh": "执收单位", "en": "Department"},
    "payer": {"zh": "缴款人", "en": "Payer"},
    "items": {"zh": "缴款项目", "en": "Items"},
    "principal": {"zh": "应缴金额", "en": "Amount"},
    "late_fee": {"zh": "加处罚款（滞纳金）", "en": "Late fee"},
    "days_overdue": {"zh": "逾期天数", "en": "Days overdue"},
    "total_today": {"zh": "今日应缴合计", "en": "Total due today"},
    "due_date": {"zh": "缴款期限", "en": "Pay by"},
    "pay_with": {"zh": "选择缴款方式", "en": "Choose how to pay"},
    "wallet": {"zh": "手机钱包（支付宝 / 微信支付）", "en": "Mobile wallet (Alipay / WeChat Pay)"},
    "bank": {"zh": "银行卡（银联网银）", "en": "Bank card (UnionPay)"},
    "continue": {"zh": "前往支付", "en": "Continue to payment"},
    "redirecting": {"zh": "正在跳转到支付页面…", "en": "Taking you to the payment page…"},
    "status_paid": {"zh": "该缴款通知书已缴清。", "en": "This notice has been paid."},
    "status_cancelled": {
        "zh": "该缴款通知书已撤销，无需缴款。",
        "en": "This notice was cancelled; nothing is due.",
    },
    "status_expired": {
        "zh": "该缴款通知书已过期，请联系执收单位。",
        "en": "This notice has expired; please contact the department.",
    },
    "status_refunded": {"zh": "该缴款通知书已全额退款。", "en": "This notice was refunded."},
    "bad_code": {"zh": "缴款码有误：", "en": "The payment code is not right: "},
    "unknown_code": {
        "zh": "未找到该缴款码对应的通知书，请核对后重试。",
        "en": "No notice has this payment code. Please check it and try again.",
    },
    "too_many": {"zh": "查询过于频繁，请稍后再试。", "en": "Too many look-ups; please wait."},
    "pending": {
        "zh": "正在确认支付结果，页面将自动刷新…",
        "en": "Confirming your payment; this page refreshes by itself…",
    },
    "paid": {"zh": "支付成功，谢谢！", "en": "Payment received. Thank you!"},
    "failed": {
        "zh": "支付未完成。您可以返回重新缴款。",
        "en": "The payment did not go through. You can go back and try again.",
    },
    "receipt": {"zh": "查看电子缴款凭证", "en": "View your e-receipt"},
    "back": {"zh": "返回", "en": "Back"},
    "attempt": {"zh": "支付单号", "en": "Payment id"},
    "amount_paid": {"zh": "支付金额", "en": "Amount"},
    "csrf": {"zh": "页面已过期，请刷新后重试。", "en": "The page expired; reload and try again."},
    "no_gateway": {
        "zh": "暂无可用的支付渠道，请稍后再试。",
        "en": "No payment channel is available right now; please try later.",
    },
    "switch": {"zh": "English", "en": "中文"},
}


def texts(lang: str) -> dict[str, str]:
    """All words in ``lang`` ("zh" or "en"; anything else is Chinese)."""
    lang = lang if lang in ("zh", "en") else "zh"
    return {key: value[lang] for key, value in TEXTS.items()}
