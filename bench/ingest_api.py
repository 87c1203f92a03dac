"""Ingest bench, the API's side: p99 of ``/v1/feed`` idle and while a dedupe round of every item runs
beside it on the same SQLite database (the API process never dedupes: ``serve``'s scheduler, or
here a separate process, does)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ingest_runs import BENCH_SCRIPT, BenchFailure, bench_env  # noqa: E402

from core.locales import LOCALES  # noqa: E402

IDLE_S = 20.0


@dataclass
class ApiLatency:
    background_nice: int
    items: int
    dedupe_s: float
    idle_requests: int
    idle_p50_ms: float
    idle_p99_ms: float
    busy_requests: int
    busy_p50_ms: float
    busy_p99_ms: float

    @property
    def ratio(self) -> float:
        return self.busy_p99_ms / self.idle_p99_ms if self.idle_p99_ms else 0.0


def dedupe_child(database_url: str) -> None:
    """In a fresh process: one ``run_dedupe`` at the priority ``serve``'s scheduler process runs it
    (``BABELWIRE_BACKGROUND_NICE``); prints JSON."""
    from aggregator.db import make_engine
    from aggregator.dedupe.run import run_dedupe
    from aggregator.scheduler import lower_cpu_priority
    from aggregator.settings import load_settings

    settings = load_settings(database_url=database_url)
    lower_cpu_priority(settings.background_nice)
    engine = make_engine(settings)
    started = time.perf_counter()
    report = run_dedupe(engine)
    print(json.dumps({"items": report.items, "seconds": time.perf_counter() - started}))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def _urls(base: str) -> list[str]:
    out = []
    for locale in LOCALES:
        out.append(f"{base}/v1/feed?locale={locale}&limit=20")
        out.append(f"{base}/v1/feed?locale={locale}&limit=20&tickers=BTC")
    return out


def _requests(
    client: httpx.Client, urls: list[str], until: float | None, done: subprocess.Popen[str] | None
) -> list[float]:
    """Requests one after another over ``urls`` (gzip asked) until ``until`` or ``done`` exits; ms each."""
    out: list[float] = []
    n = 0
    while True:
        if until is not None and time.monotonic() >= until:
            break
        if done is not None and done.poll() is not None:
            break
        started = time.perf_counter()
        r = client.get(urls[n % len(urls)], headers={"Accept-Encoding": "gzip"})
        out.append((time.perf_counter() - started) * 1000)
        if r.status_code != 200:
            raise BenchFailure(f"/v1/feed answered {r.status_code} during the latency run")
        n += 1
    return out


def api_latency_during_dedupe(
    tmp: Path, database_url: str, port: int, background_nice: int | None = None
) -> ApiLatency:
    """``database_url`` holds a polled and deduped round; its items are made storyless and their
    features dropped (a cold round of every item to come; the stories' entries stay served), then
    ``serve --no-scheduler`` answers ``/v1/feed`` idle for ``IDLE_S`` and while ``run_dedupe`` runs
    in another process, at ``background_nice`` (default: the setting's default, as ``serve``'s
    scheduler process runs it)."""
    from aggregator.settings import Settings

    nice = Settings().background_nice if background_nice is None else background_nice
    import sqlalchemy as sa

    engine = sa.create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM mergedecision"))
        conn.execute(sa.text("UPDATE item SET story_id = NULL, dedupe_features = NULL, dedupe_key = NULL"))
    engine.dispose()
    env = bench_env(database_url)
    log = (tmp / "api-latency.log").open("w")
    api = subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "serve", "--no-scheduler", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=log,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(timeout=60) as client:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if client.get(f"{base}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or api.poll() is not None:
                    raise BenchFailure("serve --no-scheduler did not start for the latency run")
                time.sleep(0.2)
            urls = _urls(base)
            _requests(client, urls, time.monotonic() + 3, None)  # warm-up
            idle = _requests(client, urls, time.monotonic() + IDLE_S, None)
            dedupe = subprocess.Popen(
                [sys.executable, str(BENCH_SCRIPT), "_dedupe", database_url],
                env=dict(env, BABELWIRE_BACKGROUND_NICE=str(nice)),
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            busy = _requests(client, urls, None, dedupe)
            out, _ = dedupe.communicate()
            if dedupe.returncode != 0:
                raise BenchFailure("the dedupe round beside the API failed")
            result = json.loads(out.strip().splitlines()[-1])
    finally:
        api.terminate()
        api.wait(30)
        log.close()
    return ApiLatency(
        background_nice=nice,
        items=result["items"],
        dedupe_s=result["seconds"],
        idle_requests=len(idle),
        idle_p50_ms=_percentile(idle, 0.5),
        idle_p99_ms=_percentile(idle, 0.99),
        busy_requests=len(busy),
        busy_p50_ms=_percentile(busy, 0.5),
        busy_p99_ms=_percentile(busy, 0.99),
    )


def latency_lines(lat: ApiLatency) -> list[str]:
    return [
        "",
        "| `/v1/feed` (SQLite, `serve --no-scheduler`, one client, gzip, 13 locales × 2 filters) | requests | p50 ms "
        "| p99 ms | **p99 ÷ idle** |",
        "|---|---:|---:|---:|---:|",
        f"| idle | {lat.idle_requests:,} | {lat.idle_p50_ms:.1f} | {lat.idle_p99_ms:.1f} | 1.00 |",
        f"| while `run_dedupe` assigns {lat.items:,} items (cold features) in another process at nice "
        f"{lat.background_nice}, {lat.dedupe_s:.0f} s "
        f"| {lat.busy_requests:,} | {lat.busy_p50_ms:.1f} | {lat.busy_p99_ms:.1f} | **{lat.ratio:.2f}** |",
        "",
        "Target (issue 14): p99 while dedupe runs within 2× of idle. The dedupe round is the one `serve`'s scheduler "
        "process would run, at its priority (`BABELWIRE_BACKGROUND_NICE`): the API process answers requests only.",
    ]
