"""``feishui serve``: the HTTP API, portal and (outside production) the gateway simulators.

One worker runs uvicorn in this process (development, the embedded default). ``--workers N``
runs gunicorn with N uvicorn workers (production; see api/serving.py for why not
``uvicorn --workers``).
"""

from __future__ import annotations

import argparse

from clearing import migrate
from clearing.config import get_settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the API and the portal (and the simulators in dev)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--workers", type=int, default=1, help="N > 1: gunicorn with N uvicorn workers (production)"
    )
    p.add_argument(
        "--no-migrate",
        action="store_true",
        help="do not run database migrations first (production runs them apart)",
    )
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    settings = get_settings()
    if not args.no_migrate:
        migrate.upgrade(settings.effective_database_url())
    if args.workers > 1:
        from api.serving import serve

        return serve(args.host, args.port, args.workers)
    import uvicorn

    print(
        f"feishui on http://{args.host}:{args.port}/pay  (API docs: /docs; "
        f"database: {settings.effective_database_url()})",
        flush=True,
    )
    uvicorn.run("api.asgi:app", host=args.host, port=args.port, proxy_headers=True)
    return 0
