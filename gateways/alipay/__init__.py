"""Wallet A: an Alipay-style gateway (RSA2 signed form parameters)."""
