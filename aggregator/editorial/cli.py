"""The editorial commands of ``main.py``: ``keys create|list|revoke``, ``sources add --catalogue``,
``eval export-labels``. ``main.py`` only registers them (``add_commands``) and hands them over
(``run``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import sqlalchemy as sa

from aggregator.db import session_scope
from aggregator.editorial import CLI, ROLES
from core.errors import BabelwireError

COMMANDS = ("keys", "eval")


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="API keys of the admin API and dashboard").add_subparsers(
        dest="action", required=True
    )
    create = keys.add_parser("create", help="create a key and print it once (last line of stdout)")
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument(
        "--name", default=None, help="who holds it (shown in the audit log; the Google Reader login)"
    )
    create.add_argument(
        "--locale", default="en", help="the reader's locale, what /greader serves this key (default en)"
    )
    keys.add_parser("list", help="list keys (never the keys themselves)")
    revoke = keys.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("id", type=int)
    evaluation = sub.add_parser("eval", help="labelled data for dedupe evaluation").add_subparsers(
        dest="action", required=True
    )
    labels = evaluation.add_parser(
        "export-labels", help="write editors' reviewed stories as eval/ corpus files into DIR"
    )
    labels.add_argument("dir", type=Path)


def run(engine: sa.Engine, args: argparse.Namespace) -> int:
    from aggregator.migrate import require_migrated

    require_migrated(engine)
    if args.command == "keys":
        return _keys(engine, args)
    if args.command == "eval":
        from aggregator.editorial.review import export_labels

        try:
            with session_scope(engine) as session:
                written = export_labels(session, args.dir)
        except OSError as e:
            raise BabelwireError(f"{args.dir}: {e.strerror}") from None
        print(f"wrote {written} labelled events to {args.dir}")
        return 0
    return 2


def add_sources(engine: sa.Engine, args: argparse.Namespace) -> int:
    """``sources add --catalogue [--outlet O] [--locale L]``; a URL without them is an error."""
    from aggregator.editorial.sources import subscribe_catalogue

    if not args.catalogue:
        raise BabelwireError("sources add: give URL --outlet O --locale L, or --catalogue")
    if args.url:
        raise BabelwireError("sources add: --catalogue takes no URL")
    with session_scope(engine) as session:
        added, present = subscribe_catalogue(session, CLI, args.outlet, args.locale)
    print(f"subscribed {added} catalogue feeds ({present} already present)")
    return 0


def _keys(engine: sa.Engine, args: argparse.Namespace) -> int:
    from aggregator.editorial import keys

    with session_scope(engine) as session:
        if args.action == "create":
            row, key = keys.create_key(session, CLI, args.role, args.name, args.locale)
            print(f"created key {row.id} ({row.name}, {row.role}, {row.locale}); it is shown only once:")
            print(key)
        elif args.action == "list":
            rows = keys.list_keys(session)
            for k in rows:
                state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}Z" if k.revoked_at else "active"
                print(
                    f"{k.id}\t{k.name}\t{k.role}\t{k.locale}\t{k.prefix}…\tcreated {k.created_at:%Y-%m-%d %H:%M}Z\t{state}"
                )
            print(f"{len(rows)} keys", file=sys.stderr)
        elif args.action == "revoke":
            row = keys.revoke_key(session, CLI, args.id)
            print(f"revoked key {row.id} ({row.name})")
    return 0
