"""Run Alembic migrations programmatically (``main.py migrate``) and check the head (``/readyz``).

Alembic (and Mako behind it) take a quarter of a second to import, so the check that every
command runs first reads the revision ids straight from ``migrations/versions/*.py`` and the
``alembic_version`` table; Alembic itself is imported only to migrate, or when the revision
files say something this reader does not understand.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from core.errors import StorageError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(engine: sa.Engine) -> None:
    """Upgrade the database behind ``engine`` to the newest revision."""
    from alembic import command

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    head_revision.cache_clear()


_REVISION_LINE = re.compile(r"^(revision|down_revision)\s*(?::[^=]*)?=\s*(.+?)\s*$", re.MULTILINE)


def _declared_head(versions: Path) -> str | None:
    """The one head of the revision files, or None when they need Alembic to be read.

    Each file assigns ``revision`` and ``down_revision`` to literals; the head is the revision
    no other one names as its ``down_revision``. Branches, merges and anything that is not a
    plain literal return None.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in versions.glob("*.py"):
        found: dict[str, object] = {}
        for name, value in _REVISION_LINE.findall(path.read_text(encoding="utf-8")):
            try:
                found.setdefault(name, ast.literal_eval(value))
            except (ValueError, SyntaxError):
                return None
        revision, down = found.get("revision"), found.get("down_revision")
        if not isinstance(revision, str) or not (down is None or isinstance(down, str)):
            return None
        revisions.add(revision)
        if down is not None:
            parents.add(down)
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 and parents <= revisions else None


@functools.cache
def head_revision() -> str | None:
    """The newest revision of ``migrations/``."""
    head = _declared_head(MIGRATIONS / "versions")
    if head is not None:
        return head
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(engine: sa.Engine) -> str | None:
    """The revision the database is at; None when it was never migrated."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        versions = [row[0] for row in conn.execute(sa.text("SELECT version_num FROM alembic_version"))]
    if len(versions) > 1:
        raise StorageError(f"database has several migration heads: {', '.join(sorted(versions))}")
    return versions[0] if versions else None


def require_migrated(engine: sa.Engine) -> None:
    """StorageError (one line) unless the database is reachable and at the newest revision."""
    try:
        current = current_revision(engine)
    except sa.exc.OperationalError as e:
        raise StorageError(f"database unreachable: {e.orig}") from None
    if current != head_revision():
        raise StorageError("database is not migrated: run `python main.py migrate` first")
