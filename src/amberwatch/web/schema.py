"""The web app's settings (``web_settings``): the per-database salt of client hashes.

Its tables are created with the readers' flags by ``review.schema`` (migration component ``web``).
"""

from __future__ import annotations

import sqlite3


def client_salt(conn: sqlite3.Connection) -> str:
    """The per-database secret salt used to hash client identities."""
    return str(conn.execute("SELECT value FROM web_settings WHERE key = 'client_salt'").fetchone()[0])
