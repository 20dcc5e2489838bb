"""Web users (reviewers) and their bearer tokens: only a sha256 of each token is stored."""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
from dataclasses import dataclass

from amberwatch.db import utc_now_iso
from amberwatch.errors import AuthError, ConflictError, InvalidInputError, NotFoundError, PermissionDeniedError

ROLES = ("reviewer", "reader")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


@dataclass(frozen=True)
class User:
    """A web user: name and role."""

    id: int
    name: str
    role: str
    revoked: bool = False

    @property
    def is_reviewer(self) -> bool:
        """True when the user may review flags and label chips."""
        return self.role == "reviewer"


def hash_token(token: str) -> str:
    """sha256 hex of a bearer token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def add_user(conn: sqlite3.Connection, name: str, *, reviewer: bool) -> str:
    """Create a user and return its new bearer token (shown once; only its hash is kept)."""
    if not _NAME_RE.match(name or ""):
        raise InvalidInputError(f"user name {name!r} must be 1-64 letters, digits or _.@-")
    token = secrets.token_urlsafe(32)
    role = "reviewer" if reviewer else "reader"
    if conn.execute("SELECT 1 FROM web_users WHERE name = ?", (name,)).fetchone():
        raise ConflictError(f"user {name!r} already exists")
    conn.execute(
        "INSERT INTO web_users (name, role, token_sha256, created_at) VALUES (?, ?, ?, ?)",
        (name, role, hash_token(token), utc_now_iso()),
    )
    return token


_REVOKED = "revoked:"  # prefix of the stored hash of a revoked user: no token hashes to it


def list_users(conn: sqlite3.Connection) -> list[User]:
    """All users ordered by name."""
    return [
        User(int(r["id"]), r["name"], r["role"], revoked=r["token_sha256"].startswith(_REVOKED))
        for r in conn.execute("SELECT id, name, role, token_sha256 FROM web_users ORDER BY name")
    ]


def rotate_token(conn: sqlite3.Connection, name: str) -> str:
    """Give a user a new bearer token (the old one stops working at once, a revoked user is restored); return it."""
    token = secrets.token_urlsafe(32)
    _set_token_hash(conn, name, hash_token(token))
    return token


def revoke_user(conn: sqlite3.Connection, name: str) -> None:
    """Revoke a user's token: every request with it is refused; 'users rotate' issues a new one."""
    _set_token_hash(conn, name, _REVOKED + secrets.token_hex(16))


def _set_token_hash(conn: sqlite3.Connection, name: str, token_sha256: str) -> None:
    cur = conn.execute("UPDATE web_users SET token_sha256 = ? WHERE name = ?", (token_sha256, name))
    if cur.rowcount == 0:
        known = ", ".join(u.name for u in list_users(conn)) or "none"
        raise NotFoundError(f"user {name!r} does not exist (users: {known})")


def user_for_authorization(conn: sqlite3.Connection, authorization: str | None) -> User:
    """The user of an ``Authorization: Bearer TOKEN`` header, or AuthError."""
    if not authorization:
        raise AuthError("this endpoint needs a reviewer token: send 'Authorization: Bearer TOKEN'")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError(f"Authorization scheme {scheme!r} is not supported: send 'Authorization: Bearer TOKEN'")
    row = conn.execute(
        "SELECT id, name, role FROM web_users WHERE token_sha256 = ?", (hash_token(token.strip()),)
    ).fetchone()
    if row is None:
        raise AuthError("unknown or revoked token")
    return User(int(row["id"]), row["name"], row["role"])


def require_reviewer(conn: sqlite3.Connection, authorization: str | None) -> User:
    """The reviewer behind the Authorization header.

    AuthError without a valid token, PermissionDeniedError for a non-reviewer.
    """
    user = user_for_authorization(conn, authorization)
    if not user.is_reviewer:
        raise PermissionDeniedError(f"user {user.name!r} is not a reviewer")
    return user
