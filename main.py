"""babelwire — the one entry point: builds settings, engine and clients, and dispatches the CLI.

python main.py migrate
python main.py serve [--demo] [--host H] [--port P] [--no-scheduler]
python main.py worker
python main.py poll --once [--all]
python main.py sources add URL --outlet O --locale L | add --catalogue [--outlet O] [--locale L]
python main.py sources list | import FILE.opml | export
python main.py stories export --format jsonl
python main.py keys create --role reader|editor|admin [--name N] [--locale L] | list | revoke ID
python main.py eval export-labels DIR
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import BabelwireError, StorageError
from core.locales import LOCALES

if TYPE_CHECKING:
    import sqlalchemy as sa

    from aggregator.settings import Settings

# Each command imports what it needs when it runs: a poll that finds every feed unchanged starts
# in the time its own imports take (`python -X importtime main.py poll --once`), not the API's,
# the migrations' or dedupe's.


@contextlib.contextmanager
def importing() -> Iterator[None]:
    """No garbage collections while modules load: imports make only objects that live as long as
    the process (modules, classes, functions), which every collection would scan in vain — a
    tenth of a second of a no-change poll's start. Collections resume after, as they were."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="main.py", description="babelwire: multilingual crypto news backend")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("migrate", help="upgrade the database to the newest schema")
    serve = sub.add_parser("serve", help="run the HTTP API (and the scheduler)")
    serve.add_argument("--demo", action="store_true", help="serve and poll the bundled offline demo outlets")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--no-scheduler", action="store_true", help="do not poll in this process")
    sub.add_parser("worker", help="run the scheduler and pollers only (no HTTP)")
    poll = sub.add_parser("poll", help="poll sources")
    poll.add_argument("--once", action="store_true", required=True, help="one round, then exit")
    poll.add_argument("--all", action="store_true", help="poll every enabled source, due or not")
    poll.add_argument("--quiet", action="store_true", help="no per-source progress lines")
    src = sub.add_parser("sources", help="manage sources").add_subparsers(dest="action", required=True)
    add = src.add_parser("add", help="add one feed, or the outlet catalogue's feeds (--catalogue)")
    add.add_argument("url", nargs="?")
    add.add_argument("--outlet", help="required with a URL; with --catalogue, only this outlet")
    add.add_argument("--locale", help=" ".join(LOCALES) + " (required with a URL)")
    add.add_argument("--catalogue", action="store_true", help="subscribe sources/outlets/*.toml's feeds")
    src.add_parser("list", help="list sources and their health")
    imp = src.add_parser("import", help="import an OPML 2.0 file (all or nothing)")
    imp.add_argument("file", type=Path)
    src.add_parser("export", help="print the sources as OPML 2.0")
    stories = sub.add_parser("stories", help="stories").add_subparsers(dest="action", required=True)
    exp = stories.add_parser("export", help="print every story")
    exp.add_argument("--format", choices=["jsonl"], default="jsonl")
    from aggregator.editorial import cli as editorial_cli

    editorial_cli.add_commands(sub)
    return p


def cmd_migrate(settings: Settings, engine: sa.Engine) -> int:
    import sqlalchemy as sa

    from aggregator.migrate import head_revision, upgrade

    try:
        upgrade(engine)
    except sa.exc.OperationalError as e:
        raise StorageError(f"database unreachable: {e.orig}") from None
    print(f"database at revision {head_revision()}")
    return 0


def cmd_poll(settings: Settings, engine: sa.Engine, args: argparse.Namespace) -> int:
    import asyncio
    import time

    with importing():
        from aggregator.migrate import require_migrated
        from aggregator.poll import poll_round, print_progress
        from aggregator.store import items_without_story

    require_migrated(engine)
    started = time.perf_counter()
    report = asyncio.run(
        poll_round(engine, settings, progress=None if args.quiet else print_progress, all_sources=args.all)
    )
    summary = "dedupe: nothing new"
    # Dedupe (and its heavy imports) only when there is something to assign; a round of 304s
    # stays as cheap as its fetches.
    if report.inserted or report.updated or items_without_story(engine):
        from aggregator.dedupe.run import run_dedupe

        dedupe = run_dedupe(engine)
        summary = (
            f"dedupe: {dedupe.items} items → {dedupe.new_stories} new stories, "
            f"{dedupe.merged} merged, {dedupe.related_links} related links"
        )
        if dedupe.new_stories and settings.websub_hub:
            from aggregator.websub import announce

            pinged = asyncio.run(announce(settings))
            summary += "; WebSub hub pinged" if pinged else "; WebSub hub ping failed"
    print(
        f"polled {report.polled} sources in {time.perf_counter() - started:.1f}s: "
        f"{report.inserted} new items, {report.updated} updated, {report.not_modified} not modified, "
        f"{report.errors} errors; {summary}"
    )
    return 0


def cmd_sources(settings: Settings, engine: sa.Engine, args: argparse.Namespace) -> int:
    from aggregator.editorial import cli as editorial_cli
    from aggregator.migrate import require_migrated
    from aggregator.registry import add_sources, list_sources, source_specs
    from sources.opml import SourceSpec, export_opml, parse_opml

    require_migrated(engine)
    if args.action == "add" and (args.catalogue or not (args.url and args.outlet and args.locale)):
        return editorial_cli.add_sources(engine, args)
    if args.action == "add":
        report = add_sources(
            engine, [SourceSpec(url=args.url, outlet=args.outlet, locale=args.locale, title=None)]
        )
        print("added" if report.added else "already present", args.url)
    elif args.action == "import":
        try:
            data = args.file.read_bytes()
        except OSError as e:
            raise BabelwireError(f"{args.file}: {e.strerror}") from None
        report = add_sources(engine, parse_opml(data))
        print(f"imported {report.added} sources ({report.existing} already present)")
    elif args.action == "list":
        rows = list_sources(engine)
        for s in rows:
            health = (
                "disabled"
                if not s.enabled
                else (f"errors={s.error_count} ({s.last_error})" if s.error_count else "ok")
            )
            if s.skipped_entries:
                health += f" skipped={s.skipped_entries}"
            print(
                f"{s.id}\t{s.outlet_id}\t{s.locale}\t{s.url}\tnext={s.next_check_at:%Y-%m-%d %H:%M}Z\t{health}"
            )
        print(f"{len(rows)} sources", file=sys.stderr)
    elif args.action == "export":
        sys.stdout.write(export_opml(source_specs(engine)).decode("utf-8"))
        sys.stdout.write("\n")
    return 0


def cmd_stories(settings: Settings, engine: sa.Engine, args: argparse.Namespace) -> int:
    from aggregator.export import export_jsonl
    from aggregator.migrate import require_migrated

    require_migrated(engine)
    out = sys.stdout
    for line in export_jsonl(engine):
        out.write(line)
        out.write("\n")
    return 0


def cmd_serve(settings: Settings, engine: sa.Engine, args: argparse.Namespace) -> int:
    from aggregator.db import make_engine
    from app.serve import serve

    if not args.no_scheduler:
        # The scheduler dedupes: without the compiled kernels, stop here with one line, not at
        # startup. Looked up, not imported: dedupe runs in the scheduler's process, never here.
        import importlib.util

        for kernel in ("aggregator.dedupe._index", "aggregator.dedupe._pairs"):
            if importlib.util.find_spec(kernel) is None:
                raise BabelwireError(
                    f"dedupe's compiled kernels are not built (no {kernel}): run `make venv` "
                    "(or `.venv/bin/pip install --no-build-isolation -e .`)"
                )

    if args.demo:
        settings = settings.model_copy(update={"allow_private_feeds": True})
    host = args.host or settings.host
    port = settings.port if args.port is None else args.port
    settings = settings.model_copy(update={"host": host, "port": port})  # WebSub topics name this port
    # The API's own engine bounds each statement, so a request never hangs on a stuck database;
    # the scheduler's (dedupe runs, long transactions) keeps the unbounded one.
    api_engine = (
        engine
        if settings.is_sqlite
        else make_engine(settings, statement_timeout_s=settings.db_statement_timeout_s)
    )
    return serve(
        settings,
        engine,
        host=host,
        port=port,
        demo=args.demo,
        scheduler=not args.no_scheduler,
        api_engine=api_engine,
    )


def cmd_worker(settings: Settings, engine: sa.Engine) -> int:
    import asyncio
    import contextlib
    import faulthandler
    import signal

    from aggregator.memory import exec_with_system_malloc

    exec_with_system_malloc()  # returns only once Python allocates through glibc (or trimming is off)
    from aggregator.migrate import require_migrated
    from aggregator.scheduler import lower_cpu_priority, run_worker

    lower_cpu_priority(settings.background_nice)  # before any thread or pool: they inherit it
    require_migrated(engine)
    # `kill -USR1 <pid>` prints every thread's stack on stderr: how to see where a worker hangs.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_worker(engine, settings))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    import logging

    with importing():
        args = build_parser().parse_args(argv)  # the editorial commands' module: SQLAlchemy
        import sqlalchemy as sa

        from aggregator.db import make_engine
        from aggregator.settings import load_settings
    level = logging.INFO if args.command in ("serve", "worker") else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("alembic", "httpx", "apscheduler.executors.default"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    try:
        settings = load_settings()
        engine = make_engine(settings)
        if args.command in ("poll", "serve", "worker"):
            from sources.catalogue import load_catalogue

            load_catalogue()  # dedupe reads outlet names from it: a broken outlet file stops the start
        if args.command == "migrate":
            return cmd_migrate(settings, engine)
        if args.command == "poll":
            return cmd_poll(settings, engine, args)
        if args.command == "sources":
            return cmd_sources(settings, engine, args)
        if args.command == "stories":
            return cmd_stories(settings, engine, args)
        if args.command == "serve":
            return cmd_serve(settings, engine, args)
        if args.command == "worker":
            return cmd_worker(settings, engine)
        from aggregator.editorial import cli as editorial_cli

        if args.command in editorial_cli.COMMANDS:
            return editorial_cli.run(engine, args)
    except BabelwireError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except sa.exc.OperationalError as e:
        print(f"error: database: {e.orig}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
