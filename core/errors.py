"""One exception root for babelwire.

BabelwireError
├── ConfigError        settings invalid at start (bad env var)
├── CatalogueError     a source, outlet, locale or OPML document is invalid
└── StorageError       the database is unreachable or not migrated

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
