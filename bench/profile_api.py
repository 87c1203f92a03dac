"""In-process profile of the read routes: raw ASGI calls (no sockets, no client) into the app.

Builds (once, kept under ``--db``) the bench corpus of ``bench_api`` on SQLite, then times, per
route, the mean in-process cost of a request (micro-cache off), wall and CPU time (CPU time is the
steadier figure on a loaded machine) and, with ``--profile NAME``, prints
the cProfile of that route's requests. A tool for finding where time goes; the bench is
``bench_api.py``.

    .venv/bin/python bench/profile_api.py --db /tmp/profile.sqlite [--profile feed]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


async def call(
    app: Any, path: str, headers: Sequence[tuple[bytes, bytes]] = ()
) -> tuple[int, bytes, dict[bytes, bytes]]:
    """One GET through the whole ASGI app; (status, body, headers)."""
    target, _, query = path.partition("?")
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": target, "raw_path": target.encode(), "query_string": query.encode(),
        "root_path": "", "headers": [(b"host", b"bench"), *headers], "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }  # fmt: skip
    out: dict[str, Any] = {"body": b""}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
            out["headers"] = dict(message.get("headers", []))
        else:
            out["body"] += message.get("body", b"")

    await app(scope, receive, send)
    return out["status"], out["body"], out["headers"]


ROUTES = {
    "ceiling": "/bench/ceiling",
    "feed": "/v1/feed?locale={locale}&limit=20",
    "feed_ticker": "/v1/feed?locale={locale}&limit=20&tickers=BTC",
    "rss": "/v1/feed.rss?locale={locale}&limit=20",
    "atom": "/v1/feed.atom?locale={locale}&limit=20",
    "json": "/v1/feed.json?locale={locale}&limit=20",
}
GZIP = [(b"accept-encoding", b"gzip")]


async def run(args: argparse.Namespace) -> None:
    import bench_api

    from aggregator.db import make_engine
    from aggregator.migrate import upgrade
    from aggregator.settings import load_settings
    from api.app import create_app
    from core.locales import LOCALES

    url = f"sqlite:///{args.db}"
    if not Path(args.db).exists():
        engine = make_engine(load_settings(database_url=url))
        upgrade(engine)
        engine.dispose()
        bench_api.load(url, args.stories)
        bench_api.write_entries(url)
    os.environ["BABELWIRE_DATABASE_URL"] = url
    settings = load_settings()
    app = create_app(settings, make_engine(settings), response_cache_s=0)
    async with app.router.lifespan_context(app):
        for name, template in ROUTES.items():
            if args.only and name not in args.only:
                continue
            paths = [template.format(locale=loc) for loc in LOCALES]
            etags = []
            for p in paths:
                status, _, headers = await call(app, p, GZIP)
                assert status == 200, (p, status)
                etags.append(headers[b"etag"])
            for revalidate in (False, True):
                n = args.requests
                prof = cProfile.Profile() if args.profile == name and not revalidate else None
                t = time.perf_counter()
                cpu = time.process_time()
                if prof:
                    prof.enable()
                for i in range(n):
                    k = i % len(paths)
                    extra = [(b"if-none-match", etags[k])] if revalidate else []
                    await call(app, paths[k], GZIP + extra)
                if prof:
                    prof.disable()
                took = (time.perf_counter() - t) / n * 1000
                used = (time.process_time() - cpu) / n * 1000
                print(f"{name:12s} {'304' if revalidate else '200'} {took:.3f} ms/request, {used:.3f} ms CPU")
                if prof:
                    pstats.Stats(prof).sort_stats(args.sort).print_stats(args.lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--db", default="/tmp/babelwire-profile.sqlite")
    parser.add_argument("--stories", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--profile", choices=sorted(ROUTES), default=None)
    parser.add_argument("--sort", default="cumulative")
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--lines", type=int, default=45)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
