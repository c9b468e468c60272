#!/usr/bin/env python
"""Audit the locked dependencies (``requirements.lock``) for known vulnerabilities and yanks.

Why not ``pip-audit`` itself: it asks PyPI's per-release JSON endpoint
(``/pypi/<name>/<version>/json``) or osv.dev, and on the build machines only the package
registries are reachable, where the per-release endpoint answers 404. What is reachable is the
per-project endpoint ``/pypi/<name>/json``: its ``vulnerabilities`` (PyPI's copy of the OSV
advisories) are those of the project's **latest** release, and its ``releases`` say which files
are yanked. So, for each locked package:

- locked version is the latest release: its advisories are exact. Any advisory fails the audit;
- locked version was yanked: fails the audit;
- locked version is older than the latest: PyPI cannot say here whether an advisory fixed since
  applies, so the package is listed as **not audited** (a warning, not a failure); refresh the
  lock (``make lock``) or run ``pip-audit -r requirements.lock`` where osv.dev is reachable.

Exit status: 0 clean, 1 a vulnerability or a yank, 2 the index could not be read.

    .venv/bin/python .ci/audit_deps.py [requirements.lock] [--index https://pypi.org/pypi]
"""

from __future__ import annotations

import argparse
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


@dataclass
class Finding:
    name: str
    locked: str
    latest: str = ""
    advisories: list[str] = field(default_factory=list)
    yanked: bool = False
    error: str = ""

    @property
    def behind(self) -> bool:
        try:
            return Version(self.locked) < Version(self.latest)
        except InvalidVersion:
            return self.locked != self.latest


def read_lock(path: Path) -> list[tuple[str, str]]:
    pins = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = PIN.match(line)
        if not match:
            raise SystemExit(f"{path}:{number}: not a 'name==version' pin: {line!r}")
        pins.append((canonicalize_name(match[1]), match[2]))
    return pins


def audit_one(client: httpx.Client, index: str, name: str, locked: str) -> Finding:
    finding = Finding(name, locked)
    try:
        answer = client.get(f"{index}/{name}/json")
        answer.raise_for_status()
        data = answer.json()
    except (httpx.HTTPError, ValueError) as exc:
        finding.error = f"{type(exc).__name__}: {exc}"
        return finding
    finding.latest = data["info"]["version"]
    files = data.get("releases", {}).get(locked, [])
    finding.yanked = bool(files) and all(f.get("yanked") for f in files)
    if not finding.behind:
        finding.advisories = [
            f"{v['id']} (fixed in {', '.join(v.get('fixed_in') or []) or 'no release yet'})"
            for v in data.get("vulnerabilities", [])
            if not v.get("withdrawn")
        ]
    return finding


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("lock", nargs="?", default="requirements.lock", type=Path)
    ap.add_argument("--index", default="https://pypi.org/pypi")
    args = ap.parse_args()
    pins = read_lock(args.lock)
    with httpx.Client(timeout=20, follow_redirects=True) as client, ThreadPoolExecutor(8) as pool:
        findings = list(pool.map(lambda p: audit_one(client, args.index, *p), pins))

    errors = [f for f in findings if f.error]
    bad = [f for f in findings if f.advisories or f.yanked]
    behind = [f for f in findings if not f.error and f.behind]
    for f in bad:
        what = "; ".join(f.advisories + (["yanked"] if f.yanked else []))
        print(f"VULNERABLE {f.name}=={f.locked}: {what}")
    for f in errors:
        print(f"UNREADABLE {f.name}=={f.locked}: {f.error}")
    if behind:
        print(
            f"not audited ({len(behind)}, older than their latest release; `make lock` refreshes): "
            + ", ".join(f"{f.name}=={f.locked} (latest {f.latest})" for f in behind)
        )
    audited = len(findings) - len(errors) - len(behind)
    print(
        f"{args.lock}: {len(findings)} pins, {audited} audited at their latest release, "
        f"{len(bad)} vulnerable or yanked, {len(behind)} not audited, {len(errors)} unreadable"
    )
    if errors:
        return 2
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
