"""The tables of migration component ``web`` in the project DB: readers' flags and missed-site reports, and the web
app's settings, users, labelling log and queue.

The component keeps its historical name and its scripts unchanged (an existing DB records them applied as "web"
v1..v4). Version 1 creates the flags' table (``web_feedback``, owned by ``review.feedback``) with the web app's
tables (owned by ``web.schema``, ``web.users`` and ``web.labelling``), so the one list lives here, below them all.

Feedback keeps a copy of the detection's scan and centroid and has no foreign key to
``detections``: the scan rebuilds detections, and a reader's flag must survive (and must not block) that.
"""

from __future__ import annotations

import sqlite3

from amberwatch.labels.store import SCHEMA as LABELS_SCHEMA
from amberwatch.project import Component, migrate_component
from amberwatch.results.store import SCHEMA as RESULTS_SCHEMA

MIGRATIONS: list[str] = [
    """
    CREATE TABLE web_settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    INSERT INTO web_settings (key, value) VALUES ('client_salt', lower(hex(randomblob(32))));
    CREATE TABLE web_users (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL,                 -- reviewer | reader
        token_sha256 TEXT NOT NULL UNIQUE,  -- sha256 of the bearer token; the token itself is never stored
        created_at TEXT NOT NULL
    );
    CREATE TABLE web_feedback (
        id INTEGER PRIMARY KEY,
        detection_id INTEGER NOT NULL,
        scan_id INTEGER,
        lon REAL,
        lat REAL,
        verdict TEXT NOT NULL,              -- not_mining | confirmed
        category TEXT,
        comment TEXT,
        client_hash TEXT NOT NULL,          -- salted sha256 of client IP + User-Agent
        created_at TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',  -- pending | accepted | rejected
        reviewed_by TEXT,
        reviewed_at TEXT,
        example_id INTEGER
    );
    CREATE INDEX web_feedback_status ON web_feedback (status, id);
    CREATE INDEX web_feedback_client ON web_feedback (client_hash, created_at);
    CREATE INDEX web_feedback_detection ON web_feedback (detection_id, status);
    CREATE TABLE web_label_actions (
        id INTEGER PRIMARY KEY,
        item_key TEXT NOT NULL,             -- d<detection id> | c<scan>/<z>/<x>/<y>/<row>/<col>
        scan_id INTEGER,
        label TEXT NOT NULL,                -- mining | not_mining | skip
        example_id INTEGER,
        created_example INTEGER NOT NULL DEFAULT 0,
        user_name TEXT NOT NULL,
        created_at TEXT NOT NULL,
        undone_at TEXT
    );
    CREATE INDEX web_label_actions_item ON web_label_actions (item_key, undone_at);
    """,
    # v2: tiles reviewers send to the labelling queue (e.g. the places a similarity search found).
    """
    CREATE TABLE web_label_queue (
        id INTEGER PRIMARY KEY,
        item_key TEXT NOT NULL UNIQUE,      -- t<scan>/<z>/<x>/<y>
        scan_id INTEGER NOT NULL,
        source TEXT NOT NULL,               -- where it came from, e.g. similar
        added_by TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX web_label_queue_scan ON web_label_queue (scan_id, id);
    """,
    # v3: the global cap on pending flags per hour counts them by status and time. (From v3 on, client_hash
    # hashes the client address alone: a User-Agent is the client's to choose.)
    """
    CREATE INDEX web_feedback_pending ON web_feedback (status, created_at);
    """,
    # v4: one live flag per reader and site. A reader's new flag on a site supersedes their pending one (status
    # 'superseded', superseded_by the new id); older flags keep their client hash as the reader, and every flag
    # already pending stays pending.
    """
    ALTER TABLE web_feedback ADD COLUMN reader_hash TEXT;
    ALTER TABLE web_feedback ADD COLUMN superseded_by INTEGER;
    UPDATE web_feedback SET reader_hash = client_hash;
    CREATE INDEX web_feedback_reader ON web_feedback (detection_id, reader_hash, status);
    """,
    # v5: the imagery date of the map layer a reader looked at when flagging (NULL: undated, or flagged before v5).
    """
    ALTER TABLE web_feedback ADD COLUMN imagery_date TEXT;
    """,
    # v6: readers are persons (a cookie's id, hashed, in reader_hash), each rate limited by reader_hash; the address
    # (client_hash) keeps only a coarse cap. Flags from before keep their address as the reader.
    """
    CREATE INDEX web_feedback_reader_time ON web_feedback (reader_hash, created_at);
    """,
    # v7: readers' reports of mining the map missed (a point on a scan's layer), owned by review.feedback. A reader's
    # new report within REPORT_REPLACE_M of their pending one supersedes it, as flags do on a site.
    """
    CREATE TABLE web_reports (
        id INTEGER PRIMARY KEY,
        scan_id INTEGER NOT NULL,
        lon REAL NOT NULL,
        lat REAL NOT NULL,
        imagery_date TEXT,                  -- the date of the layer the reader looked at (NULL: undated)
        note TEXT,
        client_hash TEXT NOT NULL,
        reader_hash TEXT NOT NULL,
        created_at TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',  -- pending | accepted | rejected | superseded
        superseded_by INTEGER,
        reviewed_by TEXT,
        reviewed_at TEXT,
        example_id INTEGER
    );
    CREATE INDEX web_reports_status ON web_reports (status, created_at);
    CREATE INDEX web_reports_reader ON web_reports (reader_hash, created_at);
    CREATE INDEX web_reports_client ON web_reports (client_hash, created_at);
    """,
]


SCHEMA = Component("web", MIGRATIONS, requires=(RESULTS_SCHEMA, LABELS_SCHEMA))


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create or upgrade the tables reviews and the web app read (results, labels) and keep (component web), on a
    bare connection (a Project: ``migrate(SCHEMA)``)."""
    migrate_component(conn, SCHEMA)
