"""Google Reader API benchmark: what a reader app's sync costs, next to ``/v1/feed`` in the same run.

On the bench corpus of ``bench_api`` (``--sqlite-stories``, 100k by default), entries written as
the API does at start, one reader key (``en``), one uvicorn process the way ``serve`` runs it, wrk
(``-c16``) drives:

* ``/v1/feed``: the mixed traffic of ``bench_api`` (its URL builder: 13 locales × cursor pages ×
  filters, no revalidation), the cursor pages of that mix alone, and the unfiltered English first
  page: the baselines;
* ``stream/items/contents`` (POST, as NetNewsWire sends it): 150 long-form ids a request, a random
  batch of the key's reading list each time (cold rows, not the same page again);
* ``stream/items/ids``: 1,000 refs a request, ``s=reading-list&xt=read`` (what NetNewsWire asks for
  unread ids), at a random continuation of the whole list;
* ``unread-count`` (per feed, per label, reading list).

Each run reports req/s and the server's CPU time per request (steadier than req/s when other work
shares the machine), both as ratios to the ``/v1/feed`` mix on the same server. The SQLite corpus
is made once and kept (``--sqlite-db``; writing 100k stories' entries takes many minutes under
load); ``--postgres`` copies its rows into a throwaway PostgreSQL by COPY instead of writing the
entries again. The response micro-cache is off (it never serves ``/greader`` anyway); nothing here
asserts a timing. The markdown section goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import bench_api  # noqa: E402
from bench_api import copy_to_postgres, prepare_sqlite, story_count  # noqa: E402

API = "/greader/reader/api/0"
READING_LIST = "user/-/state/com.google/reading-list"
READ = "user/-/state/com.google/read"

_SCRIPT = """
local targets = {}
for line in io.lines(os.getenv("BENCH_URLS")) do
  local method, path, body = line:match("([^\t]+)\t([^\t]+)\t?(.*)")
  targets[#targets + 1] = {method, path, body}
end
local auth = os.getenv("BENCH_AUTH")
local walk = os.getenv("BENCH_WALK") == "1"
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
local made = 0
function setup(thread)
  thread:set("part", made)
  made = made + 1
end
local at, share = 0, #targets
function init(args)
  share = math.floor(#targets / tonumber(os.getenv("BENCH_THREADS")))
  at = (part or 0) * share
end
request = function()
  local t
  if walk then  -- each target once: every thread walks its own share in order
    at = at + 1
    t = targets[(at - 1) % #targets + 1]
  else
    t = targets[math.random(#targets)]
  end
  local headers = {["Accept-Encoding"] = "gzip", ["Authorization"] = auth}
  if t[1] == "POST" then
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    return wrk.format("POST", t[2], headers, t[3])
  end
  return wrk.format("GET", t[2], headers)
end
"""


def log(message: str) -> None:
    print(f"[greader] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Target:
    method: str
    path: str
    body: str = ""


def wrk(
    name: str,
    srv: bench_api.Server,
    targets: Sequence[Target],
    auth: str,
    args: argparse.Namespace,
    walk: bool = False,
) -> bench_api.Run:
    """wrk over ``targets`` (a random one per request; ``walk``: each once, in order from a random
    start per thread, no warm-up), gzip on every request; the server's CPU time per request beside
    req/s, as ``bench_api.wrk`` measures it."""
    with tempfile.TemporaryDirectory(prefix="babelwire-wrk-") as tmp:
        urls = Path(tmp) / "targets.tsv"
        urls.write_text("".join(f"{t.method}\t{t.path}\t{t.body}\n" for t in targets))
        script = Path(tmp) / "greader.lua"
        script.write_text(_SCRIPT)
        env = {
            "BENCH_URLS": str(urls),
            "BENCH_AUTH": auth,
            "PATH": "/usr/bin:/bin",
            "BENCH_WALK": "01"[walk],
            "BENCH_THREADS": str(args.threads),
        }
        cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "--latency",
               "--timeout", "10s", "-s", str(script), srv.base]  # fmt: skip
        if not walk:
            subprocess.run([*cmd[:3], "-d2s", *cmd[5:]], capture_output=True, check=True, env=env)  # warm-up
        drain(srv.base, auth)
        return bench_api.run_wrk(name, srv, cmd, env, log)


def _request(url: str, *, auth: str = "", data: bytes | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": auth} if auth else {}
    if data is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    req = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(req, timeout=120) as r:
        return r.status, r.read()


def drain(base: str, auth: str, limit_s: float = 120.0) -> None:
    """Wait until the server answers a threadpool route at once: requests a previous run left
    queued (wrk stops, the server finishes them) must not count against the next run."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        t = time.perf_counter()
        _request(f"{base}{API}/user-info", auth=auth)
        if time.perf_counter() - t < 0.2:
            return
        time.sleep(1)


def reader_key(database_url: str) -> str:
    from sqlmodel import Session

    from aggregator.db import make_engine
    from aggregator.editorial import CLI
    from aggregator.editorial.keys import create_key
    from aggregator.settings import load_settings

    engine = make_engine(load_settings(database_url=database_url))
    with Session(engine) as s:
        key = create_key(s, CLI, "reader", "bench", "en")[1]
        s.commit()
    engine.dispose()
    return key


def reading_list(base: str, auth: str) -> tuple[list[int], list[str]]:
    """Every id of the key's reading list and the continuation of each 1,000-ref page."""
    ids: list[int] = []
    continuations: list[str] = []
    c = ""
    while True:
        query = {"s": READING_LIST, "n": "1000", "output": "json"} | ({"c": c} if c else {})
        status, body = _request(f"{base}{API}/stream/items/ids?{urllib.parse.urlencode(query)}", auth=auth)
        assert status == 200
        page = json.loads(body)
        ids += [int(r["id"]) for r in page["itemRefs"]]
        c = page.get("continuation", "")
        if not c:
            return ids, continuations
        continuations.append(c)


def measure(database_url: str, label: str, stories: int, key: str, args: argparse.Namespace) -> list[str]:
    rng = random.Random(11)
    with bench_api.server(database_url, 0) as srv:
        status, body = _request(
            f"{srv.base}/greader/accounts/ClientLogin",
            data=urllib.parse.urlencode({"Email": "bench", "Passwd": key}).encode(),
        )
        token = re.search(r"^Auth=(\S+)$", body.decode(), re.M)
        assert status == 200 and token, body[:200]
        auth = f"GoogleLogin auth={token.group(1)}"
        t = time.perf_counter()
        ids, continuations = reading_list(srv.base, auth)
        log(f"{label}: reading list of {len(ids):,} stories walked in {time.perf_counter() - t:.1f} s")

        def batch_target(batch: Sequence[int]) -> Target:
            form = "&".join(f"i=tag:google.com,2005:reader/item/{sid:016x}" for sid in batch) + "&T=x"
            return Target("POST", f"{API}/stream/items/contents?output=json", form)

        contents = [batch_target(rng.sample(ids, 150)) for _ in range(200)]
        fresh = [batch_target(rng.sample(ids, 150)) for _ in range(args.fresh_batches)]
        t = time.perf_counter()
        every = [batch_target(ids[i : i + 150]) for i in range(0, len(ids), 150)]
        for target in [*every, *contents]:  # a serving process renders an item once: not in the runs
            status, _ = _request(srv.base + target.path, auth=auth, data=target.body.encode())
            assert status == 200, status
        log(
            f"{label}: every item rendered once and the 200 contents batches posted once in "
            f"{time.perf_counter() - t:.1f} s"
        )
        refs = [
            Target(
                "GET",
                f"{API}/stream/items/ids?output=json&n=1000&s={READING_LIST}&xt={READ}"
                + (f"&c={c}" if c else ""),
            )
            for c in ["", *continuations]
        ]
        mix = [Target("GET", p) for p, _ in bench_api.targets(srv.base, args.pages, args.filter_pages)]
        later = [t for t in mix if "cursor=" in t.path]

        def run(name: str, targets: Sequence[Target], walk: bool = False) -> bench_api.Run:
            drain(srv.base, auth)
            return wrk(name, srv, targets, auth, args, walk)

        runs = [
            feed := run(f"/v1/feed mixed traffic, {len(mix)} URLs", mix),
            run(f"/v1/feed pages after the first (cursor), {len(later)} of those URLs", later),
            run("/v1/feed unfiltered first page (en)", [Target("GET", "/v1/feed?locale=en&limit=20")]),
            run("stream/items/contents, 150 random ids (POST), 200 batches asked again", contents),
            new := run("stream/items/contents, 150 random ids (POST), each batch new", fresh, walk=True),
            run(f"stream/items/ids, 1,000 unread refs at {len(refs)} positions", refs),
            run("unread-count", [Target("GET", f"{API}/unread-count?output=json")]),
        ]
        rss = srv.peak_rss_mb()
        sent = new.rps * args.duration
        log(f"{label}: about {sent:,.0f} requests of new batches sent, {len(fresh):,} batches made")
        if sent > len(fresh) * 0.95:
            raise SystemExit(
                f"too few new batches ({len(fresh):,}) for {sent:,.0f} requests: raise --fresh-batches"
            )
    lines = [f"| **{label}, {stories:,} stories ({len(ids):,} in the key's reading list)** | | | | | | | |"]
    paged = runs[1]
    for r in runs:
        lines.append(
            f"| {r.name} | {r.rps:,.0f} | {r.rps / feed.rps:.2f} | {r.rps / paged.rps:.2f} | {r.cpu_ms:.2f} | "
            f"{feed.cpu_ms / r.cpu_ms:.2f} | {r.p99_ms:.1f} | {r.bad} |"
        )
    lines.append(f"| peak RSS of the API process | {rss:.0f} MB | | | | | | |")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sqlite-stories", type=int, default=100_000)
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="also run on a throwaway PostgreSQL, filled with the SQLite corpus's rows (COPY)",
    )
    parser.add_argument(
        "--sqlite-db",
        type=Path,
        default=os.environ.get("BENCH_GREADER_SQLITE_DB") or None,
        help="where the prepared SQLite corpus is kept between runs (made there when missing; default: "
        "$BENCH_GREADER_SQLITE_DB, else babelwire-bench-greader-<stories>.sqlite in the temp directory)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--connections", type=int, default=16, help="wrk connections (a reader app syncs with a few)"
    )
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument(
        "--pages", type=int, default=6, help="cursor pages per locale of /v1/feed, unfiltered"
    )
    parser.add_argument("--filter-pages", type=int, default=3, help="cursor pages per locale and filter")
    parser.add_argument(
        "--fresh-batches",
        type=int,
        default=8000,
        help="contents batches never asked before (one run: more than it sends, or some are asked twice)",
    )
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print(
            "bench_greader: wrk not found (apt-get install -y wrk; make bench installs it)", file=sys.stderr
        )
        return 2

    from aggregator.db import make_engine
    from aggregator.migrate import upgrade
    from aggregator.settings import load_settings

    lines = [
        f"### Google Reader API: one `serve` process (uvicorn, httptools), wrk -t{args.threads} "
        f"-c{args.connections} -d{args.duration}s, gzip on every request, micro-cache off",
        "",
        "| run | req/s | × /v1/feed mixed | × /v1/feed cursor pages | server CPU ms/req "
        "| × /v1/feed mixed (CPU) | p99 ms | failed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    path = (
        args.sqlite_db
        or Path(tempfile.gettempdir()) / f"babelwire-bench-greader-{args.sqlite_stories}.sqlite"
    )
    notes = [prepare_sqlite(path, args.sqlite_stories)]
    url = f"sqlite:///{path}"
    stories = story_count(url)
    lines += measure(url, "SQLite", stories, reader_key(url), args)
    if args.postgres:
        from tests.pgserver import PostgresServer

        pg = PostgresServer()
        try:
            pg.start()
            pg_url = pg.create_database()
            engine = make_engine(load_settings(database_url=pg_url))
            upgrade(engine)
            engine.dispose()
            took = copy_to_postgres(path, pg_url)
            log(f"PostgreSQL: {stories:,} stories and their entries copied from SQLite in {took:.1f} s")
            notes.append(
                f"PostgreSQL: the same {stories:,} stories and entries, copied from the SQLite file (COPY) in "
                f"{took:.1f} s rather than written again."
            )
            lines += measure(pg_url, "PostgreSQL", stories, reader_key(pg_url), args)
        finally:
            pg.stop()
    load1, load5, load15 = os.getloadavg()
    lines += [
        "",
        "Ratios are to `/v1/feed` on the same server in the same run: its mixed traffic (`bench_api`'s URLs: a "
        "random one per request from 13 locales × cursor pages × filters, `limit=20`, first pages included, "
        "no revalidations) and the cursor pages of that mix alone. Server CPU ms/req is the API process's "
        "user + system time over a run divided by its requests; its ratio (the mix's CPU per request / the "
        "run's) is the speed ratio with the machine's other load taken out. `stream/items/contents`: 150 "
        "long-form ids drawn at random from the whole reading list, posted the way NetNewsWire does, every "
        "item of the list rendered once before the runs (a serving process renders an item once and keeps "
        "it): *asked again* draws each request from 200 batches each posted once before (an answer kept "
        "whole per key and batch: devices and retried syncs ask for the same batches), *each batch new* "
        "walks through batches never asked before (each wrk thread through its own share in order, no warm-up, never one "
        "twice: the kept items, not a kept answer). `stream/items/ids`: `n=1000`, `xt=read`, at a random "
        "continuation of the whole list. `unread-count`: per feed, per label (ticker) and the reading "
        "list. Before each run the bench waits until the server has finished what the previous run left "
        "queued. Target (issue 16): contents and ids ≥ 0.5× `/v1/feed`. A contents request carries 150 items "
        "against a feed page's 20: per item its CPU is 150/20 = 7.5× the per-request ratio. On PostgreSQL "
        "the CPU column counts the API process only, not the database server's own work.",
        f"- Load average when the runs ended: {load1:.2f} {load5:.2f} {load15:.2f} (2 cores, shared with other "
        "work: absolute req/s swing, the ratios measured in one run and the CPU per request are what count).",
        *(f"- {n}" for n in notes),
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
