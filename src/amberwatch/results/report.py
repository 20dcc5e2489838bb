"""Plain summaries of scans: what was covered, what failed, what was found."""

from __future__ import annotations

import sqlite3

from amberwatch.results.records import Scan
from amberwatch.results.store import detection_totals, failed_tiles, scans_with_totals


def scan_summary(conn: sqlite3.Connection, scan: Scan) -> dict:
    """A JSON-ready summary of one scan: tiles, km² scanned, failures, detections and hectares."""
    detections, hectares, max_prob = detection_totals(conn, scan.id)
    failed = failed_tiles(conn, scan.id)
    return {
        "scan_id": scan.id,
        "name": scan.name,
        "status": scan.status,
        "imagery": scan.imagery,
        "imagery_source_id": scan.imagery_source_id,
        "zoom": scan.zoom,
        "model_version": scan.model_version,
        "model_threshold": scan.model_threshold,
        "started_at": scan.started_at,
        "finished_at": scan.finished_at,
        "tiles_total": scan.tiles_total,
        "tiles_done": scan.tiles_done,
        "tiles_empty": scan.tiles_empty,
        "tiles_failed": scan.tiles_failed,
        "area_scanned_km2": round(float(scan.area_scanned_km2 or 0.0), 4),
        "detections": detections,
        "detections_area_ha": round(hectares, 4),
        "detections_max_prob": round(max_prob, 4),
        "failed_tiles_sample": failed,
        "cache_path": scan.params.cache_path,
        "warnings": dict(scan.params.warnings),  # typed warning class -> tile reads, over all runs
        "triage": dict(scan.params.triage) if scan.params.triage is not None else None,  # scan --triage-zoom
    }


def list_scans(conn: sqlite3.Connection) -> list[dict]:
    """Every scan with its headline counts, newest first."""
    return scans_with_totals(conn)
