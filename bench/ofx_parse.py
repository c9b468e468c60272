"""OFX parsing: ofxparse called directly vs feishui's OFX path, at 10,000 and 100,000 transactions.

Usage: ``.venv/bin/python bench/ofx_parse.py [--sizes 10000,100000] [--timeout 120] [--runs 1]``

Every measurement runs in its own subprocess (fresh interpreter, same Python) with a time limit,
so the quadratic baseline cannot hang the benchmark: a run that exceeds it is reported as
``> 120 s``. Statements are OFX 1.x SGML (the quadratic case) and OFX 2.x XML, ASCII only so
that ofxparse alone can read them. Prints a markdown table: wall-clock seconds (and the child's
CPU seconds, steadier on a shared machine), medians of ``--runs``.

- ``ofxparse``: ``OfxParser.parse`` on the file as is.
- ``feishui soup``: feishui's linear pre-pass, then the whole pre-closed document through
  ``OfxParser.parse`` (``reconciliation.parsers.ofx.parse(..., strategy="soup")``).
- ``feishui``: the default path (pre-pass, envelope through ``OfxParser.parse``, each
  transaction through ``OfxParser.parseTransaction``).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = {
    "ofxparse": (
        "import io, sys, time\n"
        "from ofxparse import OfxParser\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "t, c = time.perf_counter(), time.process_time()\n"
        "ofx = OfxParser.parse(io.BytesIO(data))\n"
        "n = len(ofx.account.statement.transactions)\n"
        "print(time.perf_counter() - t, time.process_time() - c, n)\n"
    ),
    "feishui soup": (
        "import sys, time\n"
        "from reconciliation.parsers import ofx\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "t, c = time.perf_counter(), time.process_time()\n"
        "n = sum(1 for _ in ofx.parse(data, 'bench.ofx', strategy='soup'))\n"
        "print(time.perf_counter() - t, time.process_time() - c, n)\n"
    ),
    "feishui": (
        "import sys, time\n"
        "from reconciliation.parsers import parse\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "t, c = time.perf_counter(), time.process_time()\n"
        "n = sum(1 for _ in parse(data, filename='bench.ofx'))\n"
        "print(time.perf_counter() - t, time.process_time() - c, n)\n"
    ),
}


def sgml(n: int) -> bytes:
    head = (
        "OFXHEADER:100\r\nDATA:OFXSGML\r\nVERSION:102\r\nSECURITY:NONE\r\nENCODING:USASCII\r\n"
        "CHARSET:1252\r\nCOMPRESSION:NONE\r\nOLDFILEUID:NONE\r\nNEWFILEUID:NONE\r\n\r\n"
        "<OFX><SIGNONMSGSRSV1><SONRS><STATUS><CODE>0<SEVERITY>INFO</STATUS>"
        "<DTSERVER>20261128090000<LANGUAGE>CHI</SONRS></SIGNONMSGSRSV1><BANKMSGSRSV1><STMTTRNRS>"
        "<TRNUID>1<STATUS><CODE>0<SEVERITY>INFO</STATUS><STMTRS><CURDEF>CNY<BANKACCTFROM>"
        "<BANKID>102100099996<ACCTID>6222020200012345678<ACCTTYPE>CHECKING</BANKACCTFROM>"
        "<BANKTRANLIST><DTSTART>20261127<DTEND>20261128\r\n"
    )
    txns = "".join(
        f"<STMTTRN>\r\n<TRNTYPE>CREDIT\r\n<DTPOSTED>20261127100000[+8:CST]\r\n"
        f"<TRNAMT>{i}.{i % 100:02d}\r\n<FITID>F{i:09d}\r\n<NAME>Payer {i}\r\n"
        f"<MEMO>SETTLE ALIPAY 20261126\r\n</STMTTRN>\r\n"
        for i in range(n)
    )
    tail = (
        "</BANKTRANLIST><LEDGERBAL><BALAMT>0.00<DTASOF>20261128</LEDGERBAL></STMTRS>"
        "</STMTTRNRS></BANKMSGSRSV1></OFX>\r\n"
    )
    return (head + txns + tail).encode("ascii")


def xml(n: int) -> bytes:
    head = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<?OFX OFXHEADER="200" VERSION="220" SECURITY="NONE" OLDFILEUID="NONE" '
        'NEWFILEUID="NONE"?>\n'
        "<OFX><SIGNONMSGSRSV1><SONRS><STATUS><CODE>0</CODE><SEVERITY>INFO</SEVERITY></STATUS>"
        "<DTSERVER>20261128090000</DTSERVER><LANGUAGE>CHI</LANGUAGE></SONRS></SIGNONMSGSRSV1>"
        "<BANKMSGSRSV1><STMTTRNRS><TRNUID>1</TRNUID><STATUS><CODE>0</CODE>"
        "<SEVERITY>INFO</SEVERITY></STATUS><STMTRS><CURDEF>CNY</CURDEF><BANKACCTFROM>"
        "<BANKID>102100099996</BANKID><ACCTID>6222020200012345678</ACCTID>"
        "<ACCTTYPE>CHECKING</ACCTTYPE></BANKACCTFROM><BANKTRANLIST><DTSTART>20261127</DTSTART>"
        "<DTEND>20261128</DTEND>\n"
    )
    txns = "".join(
        f"<STMTTRN><TRNTYPE>CREDIT</TRNTYPE><DTPOSTED>20261127100000</DTPOSTED>"
        f"<TRNAMT>{i}.{i % 100:02d}</TRNAMT><FITID>F{i:09d}</FITID><NAME>Payer {i}</NAME>"
        f"<MEMO>SETTLE ALIPAY 20261126</MEMO></STMTTRN>\n"
        for i in range(n)
    )
    tail = (
        "</BANKTRANLIST><LEDGERBAL><BALAMT>0.00</BALAMT><DTASOF>20261128</DTASOF>"
        "</LEDGERBAL></STMTRS></STMTTRNRS></BANKMSGSRSV1></OFX>\n"
    )
    return (head + txns + tail).encode("ascii")


def measure(variant: str, path: Path, expected: int, timeout: float) -> tuple[float, float] | None:
    """Wall and CPU seconds of one parse in a fresh interpreter, or None past ``timeout``."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", CHILD[variant], str(path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
    except subprocess.TimeoutExpired:
        return None
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"{variant} on {path.name} failed:\n{exc.stderr}") from None
    wall, cpu, count = done.stdout.split()
    if int(count) != expected:
        raise SystemExit(f"{variant} on {path.name}: {count} transactions, expected {expected}")
    return float(wall), float(cpu)  # timings, not money


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--variants", default=",".join(CHILD))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    variants = args.variants.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind, make in (("OFX 1 SGML", sgml), ("OFX 2 XML", xml)):
            for n in sizes:
                path = Path(tmp) / f"bench_{kind[4]}_{n}.ofx"
                path.write_bytes(make(n))
                cells = []
                for variant in variants:
                    times: list[tuple[float, float]] = []
                    for _ in range(args.runs):
                        seconds = measure(variant, path, n, args.timeout)
                        if seconds is None:
                            times = []
                            break
                        times.append(seconds)
                    if times:
                        wall = statistics.median(t[0] for t in times)
                        cpu = statistics.median(t[1] for t in times)
                        cells.append(f"{wall:.2f} s ({cpu:.2f} s CPU)")
                    else:
                        cells.append(f"> {args.timeout:.0f} s")
                    print(f"  {kind} {n:>7,} {variant}: {cells[-1]}", file=sys.stderr)
                rows.append((kind, n, cells))
    print(f"| statement | transactions | {' | '.join(variants)} |")
    print("|---|---:|" + "---:|" * len(variants))
    for kind, n, cells in rows:
        print(f"| {kind} | {n:,} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
