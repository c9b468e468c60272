"""Wallet B: a WeChat Pay API v3-style gateway (signed JSON, AES-256-GCM notifies)."""
