"""Development secrets under concurrency: processes starting together (gunicorn workers) read
a whole file and agree on one generated value."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from clearing.config import Settings


def read_secrets(var_dir: str) -> tuple[str, str]:
    settings = Settings(var_dir=Path(var_dir), env="development")
    return settings.secret("secret_key"), settings.secret("pii_keys")


def test_concurrent_processes_agree_on_generated_secrets(tmp_path):
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        results = pool.map(read_secrets, [str(tmp_path)] * 12)
    assert len(set(results)) == 1
    assert (tmp_path / "dev-secrets.json").stat().st_mode & 0o777 == 0o600
