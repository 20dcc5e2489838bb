"""The web CLI.

'users add' prints a token whose hash alone is stored; 'amberwatch serve' serves the map in a real process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from click.testing import CliRunner

from amberwatch.cli import main
from amberwatch.db import connect
from amberwatch.review.feedback import DEFAULT_LIMIT_PER_HOUR
from amberwatch.web.users import hash_token
from tests.web.conftest import Project, free_port


def test_users_add_prints_token_and_stores_only_its_hash(tmp_path):
    db = tmp_path / "p.db"
    connect(db).close()  # an existing project ('users add' refuses a missing DB: tests/web/test_users_cli.py)
    result = CliRunner().invoke(main, ["users", "add", "olena", "--reviewer", "--db", str(db)])
    assert result.exit_code == 0, result.output
    token = result.output.strip()
    assert len(token) >= 32
    rows = connect(db).execute("SELECT name, role, token_sha256 FROM web_users").fetchall()
    assert [tuple(r) for r in rows] == [("olena", "reviewer", hash_token(token))]
    assert token.encode() not in db.read_bytes()
    again = CliRunner().invoke(main, ["users", "add", "olena", "--db", str(db)])
    assert again.exit_code == 1 and "'olena' already exists" in again.output
    bad = CliRunner().invoke(main, ["users", "add", "bad name!", "--db", str(db)])
    assert bad.exit_code == 1 and "'bad name!'" in bad.output
    listed = CliRunner().invoke(main, ["users", "list", "--db", str(db)])
    assert listed.output.split() == ["olena", "reviewer"]


def test_serve_refuses_missing_database(tmp_path):
    result = CliRunner().invoke(main, ["serve", "--db", str(tmp_path / "missing.db")])
    assert result.exit_code == 1 and "missing.db" in result.output and "does not exist" in result.output
    assert not (tmp_path / "missing.db").exists()


def test_serve_bad_port_is_usage_error(tmp_path):
    result = CliRunner().invoke(main, ["serve", "--db", str(tmp_path / "p.db"), "--port", "70000"])
    assert result.exit_code == 2


@contextmanager
def serving(project: Project, *options: str) -> Iterator[str]:
    """'amberwatch serve' over the project in a real process; its URL once it answers."""
    port = free_port()
    exe = Path(sys.executable).with_name("amberwatch")
    cmd = [str(exe), "serve", "--db", str(project.db_path), "--port", str(port), "--cache", str(project.cache_path)]
    proc = subprocess.Popen(
        [*cmd, *options], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "NO_PROXY": "*"}
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/api/scans", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read().decode()
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_amberwatch_serve_in_subprocess(project):
    with serving(project) as url:
        r = httpx.get(f"{url}/", timeout=30)
        assert r.status_code == 200 and "leaflet.js" in r.text
        fc = httpx.get(f"{url}/api/detections?scan={project.scan_id}", timeout=30).json()
        assert len(fc["features"]) == 5


def test_serve_trusts_no_forwarded_address_by_default(project):
    """A client on 127.0.0.1 naming a new X-Forwarded-For each time still meets its per-client limit."""
    with serving(project) as url, httpx.Client(base_url=url, timeout=10) as http:
        codes = [
            http.post(
                f"/api/detections/{project.detection_ids[k % 5]}/feedback",
                json={"verdict": "confirmed"},
                headers={"X-Forwarded-For": f"198.51.100.{k}"},
            ).status_code
            for k in range(DEFAULT_LIMIT_PER_HOUR + 1)
        ]
    assert codes == [201] * DEFAULT_LIMIT_PER_HOUR + [429]


def test_serve_refuses_a_trusted_proxy_that_is_not_an_ip(tmp_path):
    result = CliRunner().invoke(main, ["serve", "--db", str(tmp_path / "p.db"), "--trusted-proxy", "proxy.local"])
    assert result.exit_code == 2 and "'proxy.local' is not an IP address or network" in result.output
