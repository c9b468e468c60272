"""The bank: a UnionPay-style gateway (signed form fields, amounts in fen)."""
