"""The web app over a project DB that another process keeps write-locked: writes answer 503 soon, reads at once."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from amberwatch.errors import DatabaseBusyError
from amberwatch.web.app import create_app
from amberwatch.web.guard import WRITE_QUEUE_S, WRITE_SLOTS
from tests.web.conftest import LiveServer, build_project

HOLD_LOCK = (
    "import sqlite3, sys\n"
    "conn = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
    "conn.execute('BEGIN IMMEDIATE')\n"
    "print('locked', flush=True)\n"
    "sys.stdin.read()\n"
)


@contextmanager
def write_locked(db_path: Path) -> Iterator[None]:
    """Another process holds a write transaction on the DB until the block ends."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(db_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        yield
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)


def test_a_flag_on_a_write_locked_db_is_a_503_with_retry_after_within_seconds(tmp_path):
    project = build_project(tmp_path)
    did = project.detection_ids[0]
    with TestClient(create_app(project.db_path, project.cache_path)) as client, write_locked(project.db_path):
        started = time.monotonic()
        r = client.post(f"/api/detections/{did}/feedback", json={"verdict": "confirmed"})
        waited_s = time.monotonic() - started
    assert r.status_code == 503 and waited_s < 10
    assert r.json()["status"] == 503 and "locked" in r.json()["error"] and str(tmp_path) not in r.text
    assert int(r.headers["retry-after"]) > 0
    with TestClient(create_app(project.db_path, project.cache_path)) as client:  # the lock gone, the retry works
        assert client.post(f"/api/detections/{did}/feedback", json={"verdict": "confirmed"}).status_code == 201


@pytest.mark.slow
def test_waiting_writers_on_a_locked_db_never_hold_up_reads(tmp_path):
    """50 flags sent to a locked DB: the map and scans still load at once; flags beyond the write slots wait
    WRITE_QUEUE_S for one, then are 503s."""
    project = build_project(tmp_path)
    did = project.detection_ids[0]
    answers: list[tuple[int, str | None]] = []
    reads = ("/", "/api/scans", f"/api/detections/{did}")
    with LiveServer(create_app(project.db_path, project.cache_path)) as live:
        with httpx.Client(base_url=live.url, timeout=30) as http:
            assert all(http.get(path).status_code == 200 for path in reads)  # warm: the gazetteer loads once
        with write_locked(project.db_path):
            writers = [threading.Thread(target=_flag, args=(live.url, did, answers)) for _ in range(50)]
            for t in writers:
                t.start()
            time.sleep(0.5)  # the writers are in, waiting on the lock
            with httpx.Client(base_url=live.url, timeout=5) as http:
                for path in reads:
                    started = time.monotonic()
                    assert http.get(path).status_code == 200
                    assert time.monotonic() - started < 1.5, path
            time.sleep(WRITE_QUEUE_S + 0.5)  # the writers beyond the slots have given up waiting for one
            busy_now = [status for status, _ in answers].count(503)
        for t in writers:  # the lock released: the writers that held a slot go through
            t.join(30)
    assert busy_now >= 50 - WRITE_SLOTS and len(answers) == 50
    assert set(answers) <= {(201, None), (503, str(DatabaseBusyError.retry_after_s))}


def _flag(url: str, detection_id: int, answers: list[tuple[int, str | None]]) -> None:
    """POST one reader's flag; append the answer's status and Retry-After."""
    with httpx.Client(base_url=url, timeout=60) as http:
        r = http.post(f"/api/detections/{detection_id}/feedback", json={"verdict": "confirmed"})
    answers.append((r.status_code, r.headers.get("retry-after")))


@pytest.mark.slow
def test_a_burst_of_flags_queues_for_the_write_slots_rather_than_failing(tmp_path):
    """50 readers flag at once on a free DB (a story on a front page): all are stored, none is a 503."""
    project = build_project(tmp_path)
    answers: list[tuple[int, str | None]] = []
    with LiveServer(create_app(project.db_path, project.cache_path)) as live:
        ids = project.detection_ids
        writers = [threading.Thread(target=_flag, args=(live.url, ids[i % len(ids)], answers)) for i in range(50)]
        for t in writers:
            t.start()
        for t in writers:
            t.join(30)
    assert [status for status, _ in answers] == [201] * 50
