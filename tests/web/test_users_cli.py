"""Reviewer tokens: revoke and rotate from the CLI, refused at once over HTTP; 'users add' needs an existing DB."""

from __future__ import annotations

from click.testing import CliRunner
from fastapi.testclient import TestClient

from amberwatch.cli import main
from amberwatch.db import connect
from amberwatch.review.schema import ensure_schema
from amberwatch.web.app import create_app


def _users(*args: str):
    return CliRunner().invoke(main, ["users", *args])


def test_users_add_refuses_a_missing_database(tmp_path):
    """A mistyped --db is an error naming the path, not a new empty project."""
    db = tmp_path / "typo.db"
    result = _users("add", "olena", "--reviewer", "--db", str(db))
    assert result.exit_code == 1 and "does not exist" in result.output and str(db) in result.output
    assert not db.exists()


def test_revoke_and_rotate_take_effect_at_once(tmp_path):
    """After 'users revoke' the token gets 401; 'users rotate' prints a new token that works, the old stays dead."""
    db = tmp_path / "p.db"
    conn = connect(db)
    ensure_schema(conn)
    conn.close()
    token = _users("add", "olena", "--reviewer", "--db", str(db)).output.strip()
    client = TestClient(create_app(str(db), None))

    def status(tok: str) -> int:
        return client.get("/api/me", headers={"Authorization": f"Bearer {tok}"}).status_code

    assert status(token) == 200
    revoked = _users("revoke", "olena", "--db", str(db))
    assert revoked.exit_code == 0, revoked.output
    assert status(token) == 401
    assert _users("list", "--db", str(db)).output.split() == ["olena", "reviewer", "revoked"]
    rotated = _users("rotate", "olena", "--db", str(db))
    assert rotated.exit_code == 0, rotated.output
    new_token = rotated.output.strip()
    assert new_token != token and len(new_token) >= 32
    assert status(new_token) == 200 and status(token) == 401
    assert token.encode() not in db.read_bytes() and new_token.encode() not in db.read_bytes()
    missing = _users("revoke", "nobody", "--db", str(db))
    assert missing.exit_code == 1 and "user 'nobody' does not exist (users: olena)" in missing.output
