"""Plain summaries of scans: what was covered, what failed, what was found."""

from __future__ import annotations

import json
import sqlite3

from amberwatch.results.schema import ensure_schema


def scan_summary(conn: sqlite3.Connection, scan: sqlite3.Row) -> dict:
    """A JSON-ready summary of one scan row: tiles, km² scanned, failures, detections and hectares."""
    det = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(area_ha), 0), COALESCE(MAX(max_prob), 0) FROM detections WHERE scan_id = ?",
        (scan["id"],),
    ).fetchone()
    failed = [
        {"z": r["z"], "x": r["x"], "y": r["y"], "attempts": r["attempts"], "error": r["error"]}
        for r in conn.execute(
            "SELECT z, x, y, attempts, error FROM scan_tiles WHERE scan_id = ? AND status = 'failed'"
            " ORDER BY z, y, x LIMIT 20",
            (scan["id"],),
        )
    ]
    params = json.loads(scan["params_json"] or "{}")
    return {
        "scan_id": scan["id"],
        "name": scan["name"],
        "status": scan["status"],
        "imagery": scan["imagery"],
        "imagery_source_id": scan["imagery_source_id"],
        "zoom": scan["zoom"],
        "model_version": scan["model_version"],
        "model_threshold": scan["model_threshold"],
        "started_at": scan["started_at"],
        "finished_at": scan["finished_at"],
        "tiles_total": scan["tiles_total"],
        "tiles_done": scan["tiles_done"],
        "tiles_empty": scan["tiles_empty"],
        "tiles_failed": scan["tiles_failed"],
        "area_scanned_km2": round(float(scan["area_scanned_km2"] or 0.0), 4),
        "detections": int(det[0]),
        "detections_area_ha": round(float(det[1]), 4),
        "detections_max_prob": round(float(det[2]), 4),
        "failed_tiles_sample": failed,
        "cache_path": params.get("cache_path"),
    }


def list_scans(conn: sqlite3.Connection) -> list[dict]:
    """Every scan with its headline counts, newest first."""
    ensure_schema(conn)
    rows = conn.execute(
        "SELECT s.id, s.name, s.status, s.imagery, s.zoom, s.model_version, s.started_at, s.finished_at,"
        " s.tiles_total, s.tiles_done, s.tiles_empty, s.tiles_failed, s.area_scanned_km2,"
        " (SELECT COUNT(*) FROM detections d WHERE d.scan_id = s.id) AS detections,"
        " (SELECT COALESCE(SUM(area_ha), 0) FROM detections d WHERE d.scan_id = s.id) AS detections_area_ha"
        " FROM scans s ORDER BY s.id DESC"
    )
    return [dict(r) for r in rows]
