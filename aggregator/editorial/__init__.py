"""The editorial side as plain functions over a session: keys, audit, stories, sources,
disclaimers, the review queue. The admin API (``api.admin``), the dashboard and the CLI call
them; none of them knows HTTP.

Every action takes the ``Actor`` who does it and writes one ``auditlog`` row in the caller's
transaction, so the action and its record commit together or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("reader", "editor", "admin")
"""Each role may do what the ones before it may: reader (read-only views), editor (stories,
disclaimers, the review queue), admin (sources, keys)."""


@dataclass(frozen=True)
class Actor:
    """Who does an action: an API key (its name and id), or the command line."""

    name: str
    role: str = "admin"
    key_id: int | None = None

    def may(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


CLI = Actor("cli", "admin")
