"""One exception root for babelwire.

BabelwireError
├── ConfigError        settings invalid at start (bad env var)
│   └── LocaleDataError  the locale registry's data files (core.locales)
├── CatalogueError     a source, outlet, locale or OPML document is invalid
├── StorageError       the database is unreachable or not migrated
└── EditorialError     an editor's action cannot be done (bad input → 400)
    ├── NotFoundError  no such story, member, source, key … (404)
    └── ConflictError  the action contradicts the current state (409)

Expected HTTP failures of feeds are never exceptions: see ``aggregator.fetch.FetchResult``.
"""


class BabelwireError(Exception):
    """Root of every error babelwire raises on purpose."""


class ConfigError(BabelwireError):
    """A setting is missing or invalid."""


class CatalogueError(BabelwireError):
    """A source, outlet, locale or OPML outline is invalid."""


class StorageError(BabelwireError):
    """The database cannot be used (unreachable, not migrated)."""


class EditorialError(BabelwireError):
    """An editor's or admin's action is invalid as asked."""

    status = 400
    code = "bad_request"


class NotFoundError(EditorialError):
    """The story, member, source, key or queue entry named does not exist."""

    status = 404
    code = "not_found"


class ConflictError(EditorialError):
    """The action contradicts the current state (a member that already stands alone …)."""

    status = 409
    code = "conflict"
