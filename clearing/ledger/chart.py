"""The chart of accounts: which account codes exist and what type each is.

Codes are ``<kind>`` or ``<kind>:<qualifier>``; the kind fixes the type, so accounts for a new
gateway or treasury open themselves on first use with the right type.
"""

from __future__ import annotations

from clearing.errors import ValidationError
from clearing.ledger.core import AccountType

KINDS: dict[str, tuple[AccountType, str]] = {
    "fiscal_bank": (AccountType.ASSET, "Fiscal special account at {q}"),
    "gateway_clearing": (AccountType.ASSET, "Clearing receivable from gateway {q}"),
    "treasury_payable": (AccountType.LIABILITY, "Payable to treasury {q}"),
    "refunds_payable": (AccountType.LIABILITY, "Refunds payable to payers"),
    "suspense": (AccountType.LIABILITY, "Suspense: received, not yet explained"),
    "gateway_fees": (AccountType.EXPENSE, "Fees charged by gateway {q}"),
    "equity": (AccountType.EQUITY, "Equity {q}"),
}


def classify(code: str) -> tuple[AccountType, str]:
    """Type and default name of an account code, or a ValidationError for an unknown kind."""
    kind, _, qualifier = code.partition(":")
    if kind not in KINDS or (":" in code and not qualifier) or len(code) > 128:
        raise ValidationError(
            f"unknown account code {code!r}; kinds are {', '.join(KINDS)}", field="account"
        )
    account_type, name = KINDS[kind]
    return account_type, name.format(q=qualifier or "").strip()
